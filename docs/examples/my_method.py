"""Confidence-thresholded pseudo-labelling: the example plugin of docs/adding_a_method.md.

One network. Labelled images: 0.5 * (CE + Dice). Unlabelled images: the network's own argmax,
computed without gradient, is the target wherever its softmax confidence reaches ``threshold``;
that loss is weighted by ``weight`` times the sigmoid ramp-up.

    python run_all.py train --plugin docs/examples/my_method.py --method my_method \
        --dataset synthetic --ratio 0.2 --profile smoke --set method_options.my_method.threshold=0.8
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from defectseg.methods import LabeledBatch, Method, number, register_method, step_losses
from defectseg.methods.losses import pseudo_label_loss, segmentation_loss
from defectseg.methods.networks import build_network


@register_method("my_method")
class ConfidentPseudoLabel(Method):
    # plus the common options: backbone, rampup_fraction
    option_specs = {"threshold": number(0.9, maximum=1.0), "weight": number(1.0)}

    def __init__(self, options, in_channels: int, num_classes: int) -> None:
        super().__init__(options, in_channels, num_classes)  # sets self.options (resolved and checked)
        self.net = build_network(self.options["backbone"], in_channels, num_classes)

    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        loss_sup = segmentation_loss(self.net(labeled.images), labeled.masks)
        logits = self.net(unlabeled)
        with torch.no_grad():
            confidence, pseudo_label = logits.float().softmax(dim=1).max(dim=1)
            confident = (confidence >= self.options["threshold"]).float()
        loss_pseudo = pseudo_label_loss(logits, pseudo_label, confident)
        weight = self.options["weight"] * self.rampup(step, total_steps)
        # "loss" = loss_sup + weight * loss_pseudo is optimised; the rest is logged to train_log.csv
        return step_losses(loss_sup, loss_pseudo, weight, confident_fraction=confident.mean())

    def named_predictions(self, images: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        return {name: self.net(images) for name in names}  # one prediction, named "prediction"
