"""What a reader needs to trust and rerun a result: versions, device, CPU model, git commit."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from defectseg.datasets.atomic import write_once
from defectseg.methods import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


def git_output(args: list[str], root: Path = REPO_ROOT) -> str | None:
    """What ``git <args>`` prints in ``root`` (stripped), or None outside a git checkout or without git."""
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def read_git_commit(root: Path) -> str | None:
    """The commit checked out at ``root`` now, or None outside a git checkout."""
    return git_output(["rev-parse", "HEAD"], root) or None


_LOADED_COMMIT = read_git_commit(REPO_ROOT)


def git_commit() -> str | None:
    """The commit whose code this process runs: read once, when this module is imported, so that a
    checkout moved on while a long grid runs does not relabel the runs its process goes on training."""
    return _LOADED_COMMIT


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


def precision_probe_path() -> Path:
    """Where this machine's bf16-against-float32 measurement is kept: one file per CPU model and torch
    version under ``$DEFECTSEG_CACHE_HOME`` (default ``$XDG_CACHE_HOME/defectseg``, else ``~/.cache/defectseg``)."""
    root = os.environ.get("DEFECTSEG_CACHE_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "defectseg"
    key = hashlib.sha256(f"{cpu_model()}|torch {torch.__version__}".encode()).hexdigest()[:16]
    return Path(root) / f"cpu-bf16-probe-{key}.json"


def measure_cpu_bf16(size: int = 512, rounds: int = 7) -> dict[str, Any]:
    """bf16 and float32 matrix-product rates on this CPU (TFLOP/s, best of ``rounds`` interleaved
    pairs, so that load from other processes hits both alike), ~0.2 s."""
    cpu = torch.device("cpu")
    pairs = [(matmul_tflops(cpu, torch.bfloat16, size, repeats=1), matmul_tflops(cpu, torch.float32, size, repeats=1)) for _ in range(rounds)]
    bf16, fp32 = max(pair[0] for pair in pairs), max(pair[1] for pair in pairs)
    return {"cpu": cpu_model(), "torch": torch.__version__, "size": size, "bf16_tflops": bf16, "fp32_tflops": fp32,
            "bf16_faster": bf16 > fp32, "measured": datetime.now(timezone.utc).isoformat(timespec="seconds")}


@functools.cache
def cpu_bf16_beats_fp32() -> bool:
    """Whether a bfloat16 matrix product runs faster than a float32 one on this CPU. Not every CPU that
    reports AVX-512 BF16 does: on a 2-core Xeon VM without AMX, bf16 ran at half the float32 rate and
    UAPS steps 1.4x slower (docs/performance.md).

    Measured once per machine and kept (``precision_probe_path``): a timing taken under load could
    otherwise flip between processes, and with it the precision, and so the results, of one seeded
    run. The first process to write the file decides for all; delete it to measure again."""
    path = precision_probe_path()
    if path.exists():
        try:
            return bool(json.loads(path.read_text())["bf16_faster"])
        except (ValueError, KeyError, TypeError) as error:
            print(f"warning: {path} is not a precision probe ({type(error).__name__}: {error}); measuring again", file=sys.stderr)
            path.unlink(missing_ok=True)
    data = json.dumps(measure_cpu_bf16(), indent=2).encode()
    try:
        data = write_once(path, data)
    except OSError as error:
        print(f"warning: cannot keep the precision probe in {path} ({error}); it holds for this process only", file=sys.stderr)
    return bool(json.loads(data)["bf16_faster"])


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` has fast bfloat16 matrix hardware: CUDA compute capability 8.0+ (Ampere and
    later), or a CPU with AVX-512 BF16 or AMX where a bf16 matrix product measures faster than a
    float32 one (``cpu_bf16_beats_fp32``; speed-ups per machine in docs/performance.md). Elsewhere
    bf16 is emulated or slow and float32 is faster."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return cpu_has_bf16_units() and cpu_bf16_beats_fp32()
    return False


def cpu_has_bf16_units() -> bool:
    """Whether this CPU has bf16 instructions (AVX-512 BF16 or AMX); without them bf16 is emulated."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(precision: str, device: torch.device) -> str:
    """``train.precision`` for ``device``: "auto" is "bf16" where ``native_bf16``, else "fp32"."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def slow_bf16_warning(precision: str, device: torch.device) -> str | None:
    """A warning when ``precision`` is a pinned "bf16" on a CPU where bf16 runs slower than float32
    (``native_bf16`` is false), else None. Profiles pin bf16 so that their runs match the committed
    ones; on such a CPU that costs up to an order of magnitude in speed (docs/performance.md)."""
    if precision != "bf16" or device.type != "cpu" or native_bf16(device):
        return None
    if cpu_has_bf16_units():
        why = "measures bf16 matrix products slower than float32 ones"
    else:
        why = "has neither AVX-512 BF16 nor AMX, so bf16 is emulated"
    return (f"warning: train.precision is bf16, but this CPU ({cpu_model()}) {why}: training is slower than in "
            "float32 here (a UAPS step at 64 px took 8.5x as long on a Zen 1 EPYC; docs/performance.md). "
            "--set train.precision=auto trains at the faster precision, as a different configuration.")


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
