"""CPS: Chen, Yuan, Zeng & Wang, "Semi-supervised semantic segmentation with cross pseudo
supervision", CVPR 2021.

Two networks of the same architecture (``build_network(backbone)`` twice: independent random
initialisations) see the same images; each is trained with cross-entropy against the other's
hard pseudo-label (argmax, detached):

    sum_k 0.5 * (CE + Dice)(net_k(labelled), masks)
    + consistency * rampup(step) * [CE(net1(x), argmax net2(x)) + CE(net2(x), argmax net1(x))]

where x is the unlabelled batch, plus the labelled batch when ``cross_on_labeled`` (default True:
the CPS paper's L_cps = L_cps^l + L_cps^u). As in the CPS code, the cross-entropy is one mean
over all pixels of the concatenated labelled + unlabelled batch. Both networks see the labelled
and unlabelled images in one forward pass each. Since every pseudo-label is detached, the sum
of both networks' losses optimised by one Adam equals SSL4MIS's two optimisers. Logged: the two
sums as ``loss_sup`` and ``loss_unsup``, the ramped weight as ``unsup_weight``, and each network's
parts (``loss_sup1``, ``loss_sup2``, ``loss_cps1``, ``loss_cps2``).

Defaults (recipe ``unified``): ``consistency`` 0.1 with the sigmoid ramp-up of ``self.rampup``
(SSL4MIS ``train_cross_pseudo_supervision_2D.py``; the CPS paper's lambda is 1.5 on VOC and 6 on
Cityscapes without ramp-up, tuned for DeepLabv3+ on natural images); cross loss cross-entropy (CPS
paper and SSL4MIS); ``cross_on_labeled`` True (CPS paper). ``eval_mode``: "net1" (default; the
CPS paper infers with one network, SSL4MIS validates each separately), "net2", or "ensemble"
(log of the mean of both softmax maps); the other two are reported as ``predict_variants``
entries. The ``authors`` recipe follows the SSL4MIS script, the U-Net code the UAPS authors
build on: ``cross_on_labeled`` False (lines 186-190) and the ramp-up over the whole run
(``rampup_fraction`` 1, line 179); docs/fidelity.md.

Deviations:
* Supervised loss 0.5 * (CE + Dice), the benchmark's and SSL4MIS's; the CPS paper uses CE.
* Networks initialised by two independent draws of PyTorch's default initialisation (what the
  CPS paper's "different initialisation" means in its code: two Kaiming draws); SSL4MIS's script
  defines Kaiming- and Xavier-normal initialisers (lines 66-82) but does not call them, so it
  does the same (lines 115-125).
* SSL4MIS applies the cross loss to unlabelled images only (``cross_on_labeled: false``).
* The ramp-up is continuous; SSL4MIS's steps every 150 iterations.
* No CutMix (the CPS paper's optional "CPS + CutMix" variant).
* Optimiser and schedule belong to the runner (SSL4MIS: one SGD per network, poly decay).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from defectseg.options import choice, flag, number

from .base import LabeledBatch, Method, step_losses
from .ensemble import member_predictions
from .losses import cross_entropy, hard_labels, segmentation_loss
from .networks import build_network
from .registry import register_method
from .released_loops import SSL4MIS_RAMPUP

EVAL_MODES = ("net1", "net2", "ensemble")


def cross_pseudo_supervision(logits1: Tensor, logits2: Tensor) -> tuple[Tensor, Tensor]:
    """(CE of net 1 against net 2's argmax, CE of net 2 against net 1's argmax); labels detached."""
    pseudo_label1 = hard_labels(logits1.detach())
    pseudo_label2 = hard_labels(logits2.detach())
    return cross_entropy(logits1, pseudo_label2), cross_entropy(logits2, pseudo_label1)


@register_method("cps")
class CPS(Method):
    option_specs = {
        "consistency": number(0.1),
        "cross_on_labeled": flag(True),
        "eval_mode": choice("net1", EVAL_MODES),
    }

    def __init__(self, options: Mapping[str, Any], in_channels: int, num_classes: int) -> None:
        super().__init__(options, in_channels, num_classes)
        self.net1 = build_network(self.options["backbone"], in_channels, num_classes)
        self.net2 = build_network(self.options["backbone"], in_channels, num_classes)

    @classmethod
    def authors_options(cls, dataset: str) -> dict[str, Any]:
        return {**SSL4MIS_RAMPUP, "cross_on_labeled": False}

    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        num_labeled = labeled.images.shape[0]
        images = torch.cat([labeled.images, unlabeled])
        logits1, logits2 = self.net1(images), self.net2(images)
        loss_sup1 = segmentation_loss(logits1[:num_labeled], labeled.masks)
        loss_sup2 = segmentation_loss(logits2[:num_labeled], labeled.masks)
        start = 0 if self.options["cross_on_labeled"] else num_labeled
        loss_cps1, loss_cps2 = cross_pseudo_supervision(logits1[start:], logits2[start:])
        weight = self.options["consistency"] * self.rampup(step, total_steps)
        return step_losses(
            loss_sup1 + loss_sup2, loss_cps1 + loss_cps2, weight,
            loss_sup1=loss_sup1, loss_sup2=loss_sup2, loss_cps1=loss_cps1, loss_cps2=loss_cps2,
        )

    def prediction_names(self) -> tuple[str, ...]:
        return EVAL_MODES

    def named_predictions(self, images: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        """Each network's logits and the ensemble's, from one pass of each network needed."""
        return member_predictions({"net1": self.net1, "net2": self.net2}, images, names)
