"""Confidence-thresholded pseudo-labelling: the example plugin of docs/adding_a_method.md.

One network. Labelled images: 0.5 * (CE + Dice). Unlabelled images: the network's own argmax,
computed without gradient, is the target wherever its softmax confidence reaches ``threshold``;
that loss is weighted by ``weight`` times the sigmoid ramp-up.

    python run_all.py train --plugin docs/examples/my_method.py --method my_method \
        --dataset synthetic --ratio 0.2 --profile smoke --set method_options.my_method.threshold=0.8
"""
from __future__ import annotations

import torch
from torch import Tensor

from methods import LabeledBatch, Method, register_method
from methods.losses import pseudo_label_loss, segmentation_loss
from methods.networks import build_network


@register_method("my_method")
class ConfidentPseudoLabel(Method):
    defaults = {"threshold": 0.9, "weight": 1.0}  # plus COMMON_DEFAULTS: backbone, rampup_fraction

    def __init__(self, options, in_channels: int, num_classes: int) -> None:
        super().__init__(options, in_channels, num_classes)  # sets self.options (checked)
        self.net = build_network(self.options["backbone"], in_channels, num_classes)

    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        loss_sup = segmentation_loss(self.net(labeled.images), labeled.masks)
        logits = self.net(unlabeled)
        with torch.no_grad():
            confidence, pseudo_label = logits.float().softmax(dim=1).max(dim=1)
            confident = (confidence >= self.options["threshold"]).float()
        loss_pseudo = pseudo_label_loss(logits, pseudo_label, confident)
        weight = self.options["weight"] * self.rampup(step, total_steps)
        return {
            "loss": loss_sup + weight * loss_pseudo,  # the one the runner optimises
            "loss_sup": loss_sup,  # everything else is logged to train_log.csv
            "loss_pseudo": loss_pseudo,
            "confident_fraction": confident.mean(),
        }

    def predict(self, images: Tensor) -> Tensor:
        return self.net(images)
