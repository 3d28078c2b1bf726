"""Evaluation of a method on a split, and its cost (parameters, MACs, time per image)."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from defectseg.datasets.transforms import to_float
from defectseg.methods import Method
from defectseg.methods.losses import hard_labels

from defectseg.benchmarks.engine.metrics import SegmentationMeter
from defectseg.benchmarks.engine.per_image import DEFAULT_PREDICTION, PixelCounts, protocol_metrics


@dataclass(frozen=True)
class EvalSettings:
    """How predictions are computed for scoring: images per batch, precision, memory format, normalization."""

    batch_size: int = 32
    precision: str = "fp32"
    channels_last: bool = False
    normalization: str = "half"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast when ``precision == "bf16"``, else a no-op."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_images(images_u8: Tensor, device: torch.device, channels_last: bool, normalization: str = "half") -> Tensor:
    """uint8 images (or augmented floats in [0, 255]) -> normalised float32 on ``device``.

    Reordered to channels-last before the conversion (for uint8: 4x less to move).
    """
    images = images_u8.to(device, non_blocking=True)
    return to_float(images.contiguous(memory_format=torch.channels_last) if channels_last else images, normalization)


@torch.inference_mode()
def prediction_counts(
    method: Method,
    images_u8: Tensor,
    masks_u8: Tensor,
    num_classes: int,
    device: torch.device,
    settings: EvalSettings = EvalSettings(),
    variants: bool = False,
) -> dict[str, PixelCounts]:
    """Per-image TP/FP/FN counts of ``method.predict`` (``"default"``) and, with ``variants``, of each ``predict_variants`` entry."""
    was_training = method.training
    method.eval()
    meters: dict[str, SegmentationMeter] = {}
    try:
        for start in range(0, len(images_u8), settings.batch_size):
            images = prepare_images(images_u8[start : start + settings.batch_size], device, settings.channels_last, settings.normalization)
            masks = masks_u8[start : start + settings.batch_size].long()
            with autocast(device, settings.precision):
                outputs = {DEFAULT_PREDICTION: method.predict(images)}
                if variants:
                    outputs.update(method.predict_variants(images))
            for name, logits in outputs.items():
                meter = meters.setdefault(name, SegmentationMeter(num_classes))
                meter.update(hard_labels(logits).cpu(), masks)
    finally:
        method.train(was_training)
    return {name: meter.counts() for name, meter in meters.items()}


def metrics_from_counts(counts: dict[str, PixelCounts], class_names: list[str] | tuple[str, ...]) -> dict:
    """Both protocols of the default prediction, and of each variant under ``"variants"``."""
    result = protocol_metrics(counts[DEFAULT_PREDICTION], class_names)
    others = {name: protocol_metrics(value, class_names) for name, value in counts.items() if name != DEFAULT_PREDICTION}
    if others:
        result["variants"] = others
    return result


def evaluate(
    method: Method,
    images_u8: Tensor,
    masks_u8: Tensor,
    class_names: list[str] | tuple[str, ...],
    device: torch.device,
    settings: EvalSettings = EvalSettings(),
    variants: bool = False,
) -> dict:
    """Metrics of ``method.predict`` (and, with ``variants``, of each ``predict_variants`` entry)."""
    counts = prediction_counts(method, images_u8, masks_u8, len(class_names), device, settings, variants)
    return metrics_from_counts(counts, class_names)


def count_macs(fn: Callable[[Tensor], Tensor], example: Tensor) -> int:
    """Multiply-accumulates of ``fn(example)`` (FLOPs / 2, from torch.utils.flop_counter)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn(example)
    return counter.get_total_flops() // 2


@torch.inference_mode()
def time_per_image(fn: Callable[[Tensor], Tensor], example: Tensor, repeats: int = 5) -> float:
    """Median milliseconds per image of ``fn`` on a batch (after one warm-up call)."""
    fn(example)
    if example.device.type == "cuda":
        torch.cuda.synchronize(example.device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(example)
        if example.device.type == "cuda":
            torch.cuda.synchronize(example.device)
        times.append(time.perf_counter() - start)
    return 1000.0 * sorted(times)[len(times) // 2] / example.shape[0]
