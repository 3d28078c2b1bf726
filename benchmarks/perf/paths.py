"""The training paths the performance benchmark compares, and the probes it measures them with.

* ``ReferencePath``: the original scripts' way: a DataLoader decoding files per sample
  (``benchmarks.perf.data``), float32, default memory format, evaluation one image at a time
  under ``torch.no_grad``; on CUDA with cuDNN deterministic and not benchmarking (SSL4MIS's
  default ``--deterministic 1``).
* ``FastPath``: the runner's own code (``setup_training``, ``sample_batch``, ``optimizer_step``):
  uint8 arrays in memory, batched tensor augmentation, the configured precision and memory
  format; batched evaluation under ``torch.inference_mode``. Variants measure candidates the
  runner does not use (yet): ``torch.compile``, the arrays kept on the GPU, cuDNN benchmarking.

Both run the method's own ``training_step``, so each forwards its batches as the method does
(UAPS: the labelled batch, then the unlabelled batch, as its released code does).
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from defectseg.datasets.transforms import to_float
from defectseg.methods import LabeledBatch, Method

from defectseg.benchmarks.engine.evaluate import autocast, prepare_images
from defectseg.benchmarks.engine.run import TrainSettings
from defectseg.benchmarks.perf.data import PerfImages, reference_loader
from defectseg.benchmarks.engine.trainer import EpochSampler, optimizer_step, sample_batch, setup_training

Batch = tuple[LabeledBatch, Tensor]


@dataclass(frozen=True)
class PerfConfig:
    """Image side and images per step (labelled + unlabelled)."""

    size: int
    labeled: int
    unlabeled: int

    @property
    def name(self) -> str:
        return f"{self.size}px {self.labeled}+{self.unlabeled}"

    @property
    def images_per_step(self) -> int:
        return self.labeled + self.unlabeled


@dataclass(frozen=True)
class FastVariant:
    """Settings of a fast path; ``spec`` is its name in tables ("" for the project defaults)."""

    precision: str
    channels_last: bool
    compile: bool = False
    data_on_device: bool = False  # keep the uint8 training arrays on the device (the runner keeps them on the host)
    cudnn_benchmark: bool = False  # let cuDNN time its algorithms per shape (CUDA only)
    spec: str = ""

    @property
    def name(self) -> str:
        return f"fast[{self.spec}]" if self.spec else "fast"


VARIANT_TOKENS = "fp32 | bf16 | cl | nocl | compile | device-data | cudnn-bench"


def parse_variant(spec: str, train: dict[str, Any]) -> FastVariant:
    """``"bf16+cl"``, ``"fp32+nocl+compile"``, ... on top of the ``train`` settings; "" = defaults."""
    precision, channels_last = train["precision"], train["channels_last"]
    compiled = on_device = cudnn_benchmark = False
    for token in filter(None, spec.split("+")):
        if token in ("fp32", "bf16"):
            precision = token
        elif token in ("cl", "nocl"):
            channels_last = token == "cl"
        elif token == "compile":
            compiled = True
        elif token == "device-data":
            on_device = True
        elif token == "cudnn-bench":
            cudnn_benchmark = True
        else:
            raise ValueError(f"fast variant {spec!r}: unknown setting {token!r}; expected '+'-joined tokens of: {VARIANT_TOKENS}")
    return FastVariant(precision, bool(channels_last), compiled, on_device, cudnn_benchmark, spec)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def cudnn_settings(benchmark: bool, deterministic: bool) -> Iterator[None]:
    """cuDNN's ``benchmark`` and ``deterministic`` flags inside the block (no effect on the CPU)."""
    cudnn = torch.backends.cudnn
    saved = cudnn.benchmark, cudnn.deterministic
    cudnn.benchmark, cudnn.deterministic = benchmark, deterministic
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic = saved


def compile_method(method: Method) -> None:
    """``torch.compile`` every sub-network of ``method`` in place (state-dict keys unchanged)."""
    for module in method.children():
        module.compile()


class ReferencePath:
    """Files decoded per sample by DataLoader workers; float32, default memory format."""

    name = "reference"
    precision = "fp32"

    def __init__(
        self, method: Method, images: PerfImages, config: PerfConfig, train: dict[str, Any],
        device: torch.device, batches: int, workers: int, seed: int = 0,
    ) -> None:
        self.method, self.config, self.device = method, config, device
        self.optimizer = setup_training(method, device, TrainSettings.of({**train, "channels_last": False}))
        loader = reference_loader(
            images, config.size, config.labeled, config.unlabeled, batches, workers, device.type == "cuda", seed
        )
        self._batches = iter(loader)

    def next_batch(self) -> Batch:
        images, masks = next(self._batches)
        images = images.to(self.device, non_blocking=True)
        labeled = self.config.labeled
        return LabeledBatch(images[:labeled], masks[:labeled].to(self.device, non_blocking=True)), images[labeled:]

    def train_step(self, batch: Batch, step: int, total: int) -> dict[str, Tensor]:
        with cudnn_settings(benchmark=False, deterministic=True):
            return optimizer_step(self.method, self.optimizer, batch[0], batch[1], step, total, self.device, "fp32")

    def predict(self, images_u8: Tensor, variants: bool) -> None:
        """One image at a time, as the original test scripts do."""
        predict = self.method.predict_variants if variants else self.method.predict
        with torch.no_grad(), cudnn_settings(benchmark=False, deterministic=True):
            for index in range(len(images_u8)):
                predict(to_float(images_u8[index : index + 1]).to(self.device))

    def close(self) -> None:
        self._batches = None  # ends the worker processes


class FastPath:
    """The runner's training loop pieces with the settings of one ``FastVariant``."""

    def __init__(
        self, method: Method, variant: FastVariant, arrays: tuple[Tensor, Tensor, Tensor], config: PerfConfig,
        train: dict[str, Any], device: torch.device, seed: int = 0,
    ) -> None:
        self.method, self.variant, self.device = method, variant, device
        self.name, self.precision = variant.name, variant.precision
        self.train = TrainSettings.of({**train, "precision": variant.precision, "channels_last": variant.channels_last})
        self.optimizer = setup_training(method, device, self.train)
        if variant.compile:
            compile_method(method)
        home = device if variant.data_on_device else torch.device("cpu")
        self.labeled_images, self.labeled_masks, self.unlabeled_images = (array.to(home) for array in arrays)
        self.labeled_sampler = EpochSampler(len(self.labeled_images), config.labeled, seed * 1000 + 1)
        self.unlabeled_sampler = EpochSampler(len(self.unlabeled_images), config.unlabeled, seed * 1000 + 2)
        self.generator = torch.Generator().manual_seed(seed * 1000 + 3)

    def next_batch(self) -> Batch:
        images, masks = sample_batch(self.labeled_images, self.labeled_masks, self.labeled_sampler, self.generator, self.device, self.train)
        unlabeled, _ = sample_batch(self.unlabeled_images, None, self.unlabeled_sampler, self.generator, self.device, self.train)
        return LabeledBatch(images, masks), unlabeled

    def _cudnn(self) -> contextlib.AbstractContextManager:
        if self.variant.cudnn_benchmark:
            return cudnn_settings(benchmark=True, deterministic=False)
        return contextlib.nullcontext()

    def train_step(self, batch: Batch, step: int, total: int) -> dict[str, Tensor]:
        with self._cudnn():
            return optimizer_step(self.method, self.optimizer, batch[0], batch[1], step, total, self.device, self.precision)

    def predict(self, images_u8: Tensor, variants: bool) -> None:
        """The whole batch at once, as ``benchmarks.engine.evaluate.evaluate`` does."""
        predict = self.method.predict_variants if variants else self.method.predict
        with torch.inference_mode(), autocast(self.device, self.precision), self._cudnn():
            predict(prepare_images(images_u8, self.device, self.variant.channels_last))

    def close(self) -> None:
        pass


TrainingPath = ReferencePath | FastPath


@dataclass
class StepTiming:
    step_s: float  # wall time per step
    data_s: float  # of which the loop waited for or prepared the batch


def timed_steps(path: TrainingPath, first_step: int, count: int, total: int, device: torch.device) -> tuple[StepTiming, dict[str, Tensor]]:
    """``count`` consecutive steps of ``path``, timed as one block; per-step means and the last losses.

    The device is synchronised only around the block, as the runner never synchronises inside
    its loop; on CUDA the data time is the host time spent getting batches (the GPU may still be
    busy with earlier steps meanwhile). On the CPU use blocks of one step.
    """
    synchronize(device)
    data_s = 0.0
    start = time.perf_counter()
    for step in range(first_step, first_step + count):
        fetch = time.perf_counter()
        batch = path.next_batch()
        data_s += time.perf_counter() - fetch
        losses = path.train_step(batch, step, total)
    synchronize(device)
    return StepTiming((time.perf_counter() - start) / count, data_s / count), losses


def timed_call(fn: Callable[[], Any], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def step_flops(method: Method, batch: Batch, total: int) -> int:
    """FLOPs of one training step's forward and backward (``FlopCounterMode``; optimizer excluded)."""
    with FlopCounterMode(display=False) as counter:
        losses = method.training_step(batch[0], batch[1], 0, total)
        losses["loss"].backward()
    method.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def eval_flops(method: Method, images: Tensor) -> dict[str, int]:
    """FLOPs per image of ``predict`` ("main") and ``predict_variants`` ("variants"; 0 when it returns nothing) in eval mode."""
    counts = {}
    was_training = method.training
    method.eval()
    try:
        for kind, predict in (("main", method.predict), ("variants", method.predict_variants)):
            with torch.inference_mode(), FlopCounterMode(display=False) as counter:
                produced = predict(images)
            counts[kind] = counter.get_total_flops() // len(images) if len(produced) else 0
    finally:
        method.train(was_training)
    return counts


# --- memory -----------------------------------------------------------------------------------

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def release_freed_memory_to_os() -> bool:
    """Make glibc return freed tensors to the OS (fixed 64 KiB mmap threshold), so RSS tracks live memory.

    Changes allocation for the rest of the process (large blocks are mmapped), so call it only
    after every timing is done. False where glibc's ``mallopt`` is unavailable.
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 128 * 1024))


def _trim_heap() -> None:
    """Hand free heap pages back to the OS (``malloc_trim``), so reusing them shows up in RSS again."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def release_unused_memory() -> None:
    """Collect garbage and return free heap pages to the OS before the next measurement.

    glibc keeps the pages of freed tensors, and the reference path forks DataLoader workers: a
    worker forked from a process holding 14 GB of such pages shares them copy-on-write, and the
    parent's next steps, writing into them, duplicate them. Measuring every method at 256px
    16+16 in one process ran out of 24 GB that way (killed at the third method).
    """
    gc.collect()
    _trim_heap()


class PeakMemory:
    """Peak memory above the level at entry while the block runs, in MiB.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the process RSS sampled every millisecond by a
    thread (psutil; torch ops release the GIL, so the sampler runs during them), after returning
    free heap pages to the OS; accurate once ``release_freed_memory_to_os`` has been called.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mib = float("nan")
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            import psutil

            _trim_heap()
            process = psutil.Process()
            self._base = self._peak = process.memory_info().rss
            self._thread = threading.Thread(target=self._sample, args=(process,), daemon=True)
            self._thread.start()
        return self

    def _sample(self, process: Any) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, process.memory_info().rss)
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            peak = self._peak
        self.peak_mib = (peak - self._base) / 2**20
