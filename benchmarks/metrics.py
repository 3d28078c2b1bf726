"""Segmentation metrics under two protocols, named explicitly everywhere they are reported.

* ``standard``: one confusion matrix accumulated over the whole test set; IoU and Dice per class;
  mIoU / mDice over the defect classes (``miou``, ``mdice``) and over all classes including
  background (``miou_with_bg``, ``mdice_with_bg``); pixel accuracy. A class absent from both the
  ground truth and the prediction has no IoU (``None``) and is left out of the means.
* ``paper``: for each test image, IoU of each defect class present in its ground truth, averaged;
  then averaged over images. Images without defect pixels are skipped. This is how the UAPS
  authors computed their published numbers.

All values are fractions in [0, 1].
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def _nanmean(values: Tensor) -> float | None:
    finite = values[~torch.isnan(values)]
    return float(finite.mean()) if finite.numel() else None


def _as_list(values: Tensor) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values.tolist()]


class SegmentationMeter:
    """Accumulates predictions (class ids) against ground truth, image by image."""

    def __init__(self, num_classes: int, class_names: list[str] | tuple[str, ...] | None = None) -> None:
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else [str(c) for c in range(num_classes)]
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.paper_image_iou: list[float] = []
        self.paper_class_iou_sum = torch.zeros(num_classes, dtype=torch.float64)
        self.paper_class_count = torch.zeros(num_classes, dtype=torch.int64)

    def update(self, prediction: Tensor, target: Tensor) -> None:
        """``prediction`` and ``target``: (B, H, W) integer class ids."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(prediction.shape)} != target shape {tuple(target.shape)}")
        k = self.num_classes
        prediction, target = prediction.long().cpu(), target.long().cpu()
        batch = prediction.shape[0]
        cells = (torch.arange(batch).view(-1, 1, 1) * k * k + target * k + prediction).flatten()
        per_image = torch.bincount(cells, minlength=batch * k * k).reshape(batch, k, k)  # rows: ground truth
        self.confusion += per_image.sum(0)
        intersection = per_image.diagonal(dim1=1, dim2=2)
        union = per_image.sum(2) + per_image.sum(1) - intersection
        present = per_image.sum(2) > 0
        present[:, 0] = False  # background is not a defect class
        iou = intersection.double() / union.clamp_min(1).double()
        for image_iou, image_present in zip(iou, present):
            if image_present.any():
                self.paper_image_iou.append(float(image_iou[image_present].mean()))
                self.paper_class_iou_sum += torch.where(image_present, image_iou, 0.0)
                self.paper_class_count += image_present.long()

    def compute(self) -> dict:
        cm = self.confusion.double()
        intersection = cm.diagonal()
        gt, pred = cm.sum(1), cm.sum(0)
        union = gt + pred - intersection
        iou = torch.where(union > 0, intersection / union, torch.nan)
        dice = torch.where(gt + pred > 0, 2 * intersection / (gt + pred), torch.nan)
        paper_class = torch.where(
            self.paper_class_count > 0, self.paper_class_iou_sum / self.paper_class_count.clamp_min(1), torch.nan
        )
        total = cm.sum()
        return {
            "standard": {
                "miou": _nanmean(iou[1:]),
                "mdice": _nanmean(dice[1:]),
                "miou_with_bg": _nanmean(iou),
                "mdice_with_bg": _nanmean(dice),
                "pixel_accuracy": float(intersection.sum() / total) if total > 0 else None,
                "per_class_iou": dict(zip(self.class_names, _as_list(iou))),
                "per_class_dice": dict(zip(self.class_names, _as_list(dice))),
            },
            "paper": {
                "miou": sum(self.paper_image_iou) / len(self.paper_image_iou) if self.paper_image_iou else None,
                "num_images": len(self.paper_image_iou),
                "per_class_iou": dict(zip(self.class_names[1:], _as_list(paper_class[1:]))),
            },
        }
