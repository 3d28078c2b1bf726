"""Segmentation metrics under two protocols, named explicitly everywhere they are reported.

* ``standard``: one confusion matrix accumulated over the whole test set; IoU and Dice per class;
  mIoU / mDice over the defect classes (``miou``, ``mdice``) and over all classes including
  background (``miou_with_bg``, ``mdice_with_bg``); pixel accuracy. A class absent from both the
  ground truth and the prediction has no IoU (``None``) and is left out of the means.
* ``paper``: for each test image, IoU of each defect class present in its ground truth, averaged;
  then averaged over images. Images without defect pixels are skipped. This is how the UAPS
  authors computed their published numbers.

All values are fractions in [0, 1]. The meter keeps each image's true-positive, false-positive and
false-negative pixel counts per class; both protocols are computed from them by
``benchmarks.engine.per_image`` (``iou_from_counts``: the one implementation of IoU in the project).
"""
from __future__ import annotations

import torch
from torch import Tensor

from defectseg.benchmarks.engine.per_image import PixelCounts, protocol_metrics


class SegmentationMeter:
    """Accumulates predictions (class ids) against ground truth, image by image."""

    def __init__(self, num_classes: int, class_names: list[str] | tuple[str, ...] | None = None) -> None:
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else [str(c) for c in range(num_classes)]
        self._parts: list[PixelCounts] = []

    def update(self, prediction: Tensor, target: Tensor) -> None:
        """``prediction`` and ``target``: (B, H, W) integer class ids."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(prediction.shape)} != target shape {tuple(target.shape)}")
        k = self.num_classes
        prediction, target = prediction.long().cpu(), target.long().cpu()
        batch = prediction.shape[0]
        cells = (torch.arange(batch).view(-1, 1, 1) * k * k + target * k + prediction).flatten()
        per_image = torch.bincount(cells, minlength=batch * k * k).reshape(batch, k, k)  # rows: ground truth
        self._parts.append(PixelCounts.from_confusions(per_image.numpy()))

    def counts(self) -> PixelCounts:
        """Per-image TP, FP, FN pixel counts (N, C) of every image so far, in update order."""
        return PixelCounts.concatenate(self._parts, self.num_classes)

    def compute(self) -> dict:
        return protocol_metrics(self.counts(), self.class_names)
