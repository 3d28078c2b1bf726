"""Supervised baseline: the paper U-Net trained on the labelled images only.

Loss 0.5 * (cross-entropy + Dice) as in the UAPS and simEps papers; the unlabelled batch is
ignored. Optimiser (Adam, lr 1e-3) and schedule belong to the runner.
"""
from __future__ import annotations

from torch import Tensor

from .base import LabeledBatch, Method
from .losses import segmentation_loss
from .networks import build_network
from .registry import register_method


@register_method("supervised")
class Supervised(Method):
    defaults = {}

    def __init__(self, options, in_channels: int, num_classes: int) -> None:
        super().__init__(options, in_channels, num_classes)
        self.net = build_network(self.options["backbone"], in_channels, num_classes)

    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        loss = segmentation_loss(self.net(labeled.images), labeled.masks)
        return {"loss": loss, "loss_sup": loss}

    def predict(self, images: Tensor) -> Tensor:
        return self.net(images)
