"""Per-image records of a run's test predictions, and both mIoU protocols computed from them.

For every test image and class, a run keeps the true-positive, false-positive and false-negative
pixel counts of its default prediction and of each variant (``per_image.npz`` beside
``metrics.json``, written first). Every protocol is a function of these counts, so both protocols
of ``benchmarks.engine.metrics`` (and any other one, or a bootstrap over images) can be computed
afterwards without the checkpoint:

* ``standard``: counts summed over images; per class IoU = TP / (TP + FP + FN) and
  Dice = 2 TP / (2 TP + FP + FN); a class with no pixel in ground truth or prediction has none.
  ``iou_from_counts`` is the project's one IoU (both protocols, the statistics, the trajectory).
* ``paper``: per image, the mean IoU of the defect classes present in its ground truth
  (TP + FN > 0); images without defect pixels have none; the mean over images.

File layout (``numpy.savez_compressed``): ``image_ids`` (N,) str, ``class_names`` (C,) str,
``predictions`` (P,) str and ``counts`` (P, N, C, 3) int32 holding TP, FP, FN in that order.
"""
from __future__ import annotations

import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from defectseg.datasets.atomic import atomic_open

DEFAULT_PREDICTION = "default"


class PerImageError(ValueError):
    """A per-image records file that cannot be read as expected; the message names the file."""


@dataclass(frozen=True)
class PixelCounts:
    """TP, FP and FN pixel counts, each (N images, C classes) int64."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    @classmethod
    def from_confusions(cls, confusions: np.ndarray) -> PixelCounts:
        """From per-image confusion matrices (N, C, C), rows ground truth, columns prediction."""
        confusions = np.asarray(confusions, dtype=np.int64)
        tp = np.diagonal(confusions, axis1=1, axis2=2).copy()
        return cls(tp=tp, fp=confusions.sum(1) - tp, fn=confusions.sum(2) - tp)

    @classmethod
    def concatenate(cls, parts: Sequence[PixelCounts], num_classes: int) -> PixelCounts:
        if not parts:
            empty = np.zeros((0, num_classes), dtype=np.int64)
            return cls(empty, empty.copy(), empty.copy())
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("tp", "fp", "fn")))

    def take(self, index: np.ndarray) -> PixelCounts:
        """The counts of the images at ``index`` (repeats allowed, as in a bootstrap)."""
        return PixelCounts(self.tp[index], self.fp[index], self.fn[index])

    @property
    def num_images(self) -> int:
        return int(self.tp.shape[0])


@dataclass(frozen=True)
class PerImageRecords:
    """The per-image counts of every prediction (``default`` and the variants) of one run."""

    image_ids: list[str]
    class_names: list[str]
    predictions: dict[str, PixelCounts]


def _as_list(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values.tolist()]


def _nanmean(values: np.ndarray) -> float | None:
    """Mean of the non-NaN values, reduced by torch in float64 (the reduction every metrics.json uses)."""
    finite = values[~np.isnan(values)]
    return float(torch.from_numpy(finite).mean()) if finite.size else None


def iou_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """IoU = TP / (TP + FP + FN), elementwise, float64: the project's one IoU.

    Where TP + FP + FN is 0 (a class absent from both ground truth and prediction) there is no
    IoU: NaN, left out of every mean.
    """
    tp = np.asarray(tp, dtype=np.float64)
    union = tp + fp + fn
    present = union > 0
    return np.where(present, tp / np.where(present, union, 1.0), np.nan)


def _defects_present(counts: PixelCounts) -> np.ndarray:
    """(N, C) bool: the defect classes (not background, class 0) in each image's ground truth."""
    present = (counts.tp + counts.fn) > 0
    present[:, 0] = False
    return present


def per_class_iou(counts: PixelCounts) -> np.ndarray:
    """Standard-protocol IoU per class (C,) float64 from counts summed over images; NaN where no pixel."""
    return iou_from_counts(counts.tp.sum(0), counts.fp.sum(0), counts.fn.sum(0))


def standard_miou(counts: PixelCounts) -> float:
    """Standard mIoU over the defect classes (1..C-1) as a fraction; NaN if no defect class has pixels."""
    iou = per_class_iou(counts)[1:]
    finite = iou[~np.isnan(iou)]
    return float(finite.mean()) if finite.size else math.nan


def paper_image_iou(counts: PixelCounts) -> np.ndarray:
    """Paper protocol per image (N,): mean IoU of the defect classes in its ground truth; NaN without defects."""
    iou = iou_from_counts(counts.tp, counts.fp, counts.fn)
    present = _defects_present(counts)
    number = present.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(number > 0, np.where(present, iou, 0.0).sum(1) / np.maximum(number, 1), np.nan)


def per_class_dice(counts: PixelCounts) -> np.ndarray:
    """Standard-protocol Dice per class (C,) float64 from counts summed over images; NaN where no pixel."""
    intersection = counts.tp.sum(0).astype(np.float64)
    both = 2 * intersection + counts.fn.sum(0) + counts.fp.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(both > 0, 2 * intersection / both, np.nan)


def selection_score(counts: PixelCounts) -> float:
    """The checkpoint-selection score: standard mean Dice over the defect classes, 0 when no defect class has pixels.

    The value ``standard_metrics`` reports as ``mdice`` (the same reduction), so a run's best step
    is reproduced from its counts exactly.
    """
    mdice = _nanmean(per_class_dice(counts)[1:])
    return 0.0 if mdice is None else mdice


def standard_metrics(counts: PixelCounts, class_names: Sequence[str]) -> dict[str, Any]:
    intersection = counts.tp.sum(0).astype(np.float64)
    gt = intersection + counts.fn.sum(0)
    iou = per_class_iou(counts)
    dice = per_class_dice(counts)
    total = gt.sum()
    return {
        "miou": _nanmean(iou[1:]),
        "mdice": _nanmean(dice[1:]),
        "miou_with_bg": _nanmean(iou),
        "mdice_with_bg": _nanmean(dice),
        "pixel_accuracy": float(intersection.sum() / total) if total > 0 else None,
        "per_class_iou": dict(zip(class_names, _as_list(iou))),
        "per_class_dice": dict(zip(class_names, _as_list(dice))),
    }


def paper_metrics(counts: PixelCounts, class_names: Sequence[str]) -> dict[str, Any]:
    # torch float64 reductions, image by image (the order every metrics.json is computed in)
    iou = torch.from_numpy(iou_from_counts(counts.tp, counts.fp, counts.fn))
    present = torch.from_numpy(_defects_present(counts))
    image_iou: list[float] = []
    class_sum = torch.zeros(iou.shape[1], dtype=torch.float64)
    class_count = torch.zeros(iou.shape[1], dtype=torch.int64)
    for image_iou_row, image_present in zip(iou, present):
        if image_present.any():
            image_iou.append(float(image_iou_row[image_present].mean()))
            class_sum += torch.where(image_present, image_iou_row, 0.0)
            class_count += image_present.long()
    class_iou = torch.where(class_count > 0, class_sum / class_count.clamp_min(1), torch.nan).numpy()
    return {
        "miou": sum(image_iou) / len(image_iou) if image_iou else None,
        "num_images": len(image_iou),
        "per_class_iou": dict(zip(list(class_names)[1:], _as_list(class_iou[1:]))),
    }


def protocol_metrics(counts: PixelCounts, class_names: Sequence[str]) -> dict[str, Any]:
    """``{"standard": ..., "paper": ...}`` exactly as ``benchmarks.engine.metrics`` reports them."""
    return {"standard": standard_metrics(counts, class_names), "paper": paper_metrics(counts, class_names)}


def write_per_image(path: Path, image_ids: Sequence[str], class_names: Sequence[str], predictions: Mapping[str, PixelCounts]) -> None:
    """Write the records atomically (a reader sees the old file or the new one)."""
    names = list(predictions)
    for name in names:
        if predictions[name].num_images != len(image_ids):
            raise ValueError(f"prediction {name!r} has {predictions[name].num_images} images, expected {len(image_ids)}")
    counts = np.stack([np.stack([predictions[n].tp, predictions[n].fp, predictions[n].fn], axis=-1) for n in names])
    if counts.size and (counts.min() < 0 or counts.max() > np.iinfo(np.int32).max):
        raise ValueError("pixel counts must fit in int32")
    with atomic_open(Path(path), "wb") as handle:
        np.savez_compressed(
            handle,
            image_ids=np.asarray(list(image_ids), dtype=str),
            class_names=np.asarray(list(class_names), dtype=str),
            predictions=np.asarray(names, dtype=str),
            counts=counts.astype(np.int32),
        )


def read_per_image(path: Path) -> PerImageRecords:
    """Load ``per_image.npz``; a missing, corrupt or malformed file is a PerImageError naming it."""
    path = Path(path)
    if not path.is_file():
        raise PerImageError(f"{path}: per-image records not found (runs completed before they existed have none; rerun the run)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in ("image_ids", "class_names", "predictions", "counts")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise PerImageError(f"{path}: not a readable per-image records file ({error})") from error
    counts = arrays["counts"]
    expected = (len(arrays["predictions"]), len(arrays["image_ids"]), len(arrays["class_names"]), 3)
    if counts.shape != expected:
        raise PerImageError(f"{path}: counts have shape {counts.shape}, expected {expected}")
    counts = counts.astype(np.int64)
    predictions = {
        str(name): PixelCounts(tp=counts[i, ..., 0], fp=counts[i, ..., 1], fn=counts[i, ..., 2])
        for i, name in enumerate(arrays["predictions"])
    }
    return PerImageRecords([str(u) for u in arrays["image_ids"]], [str(c) for c in arrays["class_names"]], predictions)
