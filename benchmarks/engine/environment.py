"""What a reader needs to trust and rerun a result: versions, device, CPU model, git commit."""
from __future__ import annotations

import functools
import platform
import statistics
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from methods import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU ({torch.get_num_threads()} threads)"


def cpu_model() -> str:
    """The CPU's name with its family and model (``AMD EPYC (family 26, model 2)``): virtual machines often
    report a bare "AMD EPYC", and the family tells CPU generations apart (e.g. 25: Zen 3/4, 26: Zen 5)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition(":")
        if not line.strip():
            break  # the first processor is enough
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        return f"{name} (family {fields['cpu family']}, model {fields['model']})"
    return name


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment(device: torch.device) -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "segmentation_models_pytorch": _package_version("segmentation-models-pytorch"),
        "platform": platform.platform(),
        "device": device_name(device),
        "cpu": cpu_model(),
        "git_commit": git_commit(),
    }


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 5) -> float:
    """Measured rate of a ``size``-square matrix product on ``device`` in ``dtype`` (TFLOP/s, median)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)

    def seconds() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    seconds()  # warm-up
    return 2 * size**3 / statistics.median(seconds() for _ in range(repeats)) / 1e12


@functools.cache
def cpu_bf16_beats_fp32(size: int = 512) -> bool:
    """Whether a bfloat16 matrix product runs faster than a float32 one on this CPU (measured once
    per process, ~0.1 s). Not every CPU that reports AVX-512 BF16 is: on a 2-core Xeon VM without
    AMX, bf16 ran at half the float32 rate and UAPS steps 1.4x slower (docs/performance.md)."""
    cpu = torch.device("cpu")
    return matmul_tflops(cpu, torch.bfloat16, size) > matmul_tflops(cpu, torch.float32, size)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` has fast bfloat16 matrix hardware: CUDA compute capability 8.0+ (Ampere and
    later), or a CPU with AVX-512 BF16 or AMX where a bf16 matrix product measures faster than a
    float32 one (``cpu_bf16_beats_fp32``; speed-ups per machine in docs/performance.md). Elsewhere
    bf16 is emulated or slow and float32 is faster."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        flags = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return bool(flags) and cpu_bf16_beats_fp32()
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``train.precision`` for ``device``: "auto" is "bf16" where ``native_bf16``, else "fp32"."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def resolved_train_settings(train: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A copy of the ``train`` settings with ``precision`` resolved for ``device`` (see ``resolve_precision``)."""
    return {**train, "precision": resolve_precision(train["precision"], device)}


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; a ConfigError for a device this machine lacks."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from error
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not supported: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here: use --device cpu (or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} GPU(s)")
    return device
