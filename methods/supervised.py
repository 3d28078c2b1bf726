"""Supervised baseline: the paper U-Net trained on the labelled images only.

Loss 0.5 * (cross-entropy + Dice) as in the UAPS and simEps papers; the unlabelled batch is
ignored (``loss_unsup`` and ``unsup_weight`` are logged as 0). Optimiser (Adam, lr 1e-3) and
schedule belong to the runner.

Options: ``dice_form`` "ssl4mis" (default, ``methods.losses``); the ``authors`` recipe uses
"uaps", the Dice of the UAPS and simEps authors' baseline scripts (``baseline/baseline_train.py``
of the UAPS code), so that it equals UAPS with D = 0 under either recipe. docs/fidelity.md.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from defectseg.options import choice

from .base import LOSS, LOSS_SUP, LOSS_UNSUP, UNSUP_WEIGHT, LabeledBatch, Method
from .losses import DICE_FORMS, segmentation_loss
from .networks import build_network
from .registry import register_method


@register_method("supervised")
class Supervised(Method):
    option_specs = {"dice_form": choice("ssl4mis", DICE_FORMS)}

    def __init__(self, options, in_channels: int, num_classes: int) -> None:
        super().__init__(options, in_channels, num_classes)
        self.net = build_network(self.options["backbone"], in_channels, num_classes)

    @classmethod
    def authors_options(cls, dataset: str) -> dict[str, Any]:
        return {"dice_form": "uaps"}  # UAPS code baseline/baseline_train.py:24, 162

    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        loss = segmentation_loss(self.net(labeled.images), labeled.masks, dice_form=self.options["dice_form"])
        zero = torch.zeros((), device=loss.device)
        return {LOSS: loss, LOSS_SUP: loss, LOSS_UNSUP: zero, UNSUP_WEIGHT: zero}

    def named_predictions(self, images: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        return {name: self.net(images) for name in names}
