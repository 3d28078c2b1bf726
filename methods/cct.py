"""Cross-Consistency Training (CCT).

Paper: Y. Ouali, C. Hudelot, M. Tami, "Semi-Supervised Semantic Segmentation with
Cross-Consistency Training", CVPR 2020. The ``authors`` recipe follows the U-Net port of CCT in
SSL4MIS (Luo et al.: ``code/train_cross_consistency_training_2D.py``, ``UNet_CCT`` in
``code/networks/unet.py``), the code base of the UAPS authors; comparison: docs/fidelity.md.

One shared encoder, a main decoder on the clean features and one auxiliary decoder per feature
perturbation (``methods.perturbations.MultiDecoderNet``). On unlabelled images each auxiliary
decoder's softmax is pulled towards the main decoder's softmax; the consistency loss is the MSE
averaged over the auxiliary decoders. The prediction is the main decoder's.

Options (defaults = recipe ``unified``; ``authors_options`` gives SSL4MIS's values):

* ``perturbations`` = ``["feature_noise", "dropout", "feature_dropout"]``: one auxiliary decoder
  per name, from ``methods.perturbations.PERTURBATIONS`` (``feature_cutout`` is also available).
  These three are the perturbations of SSL4MIS's ``UNet_CCT``.
* ``dropout_mode`` "channel", ``dropout_p`` 0.5, ``feature_dropout_draw`` "sample" (this
  benchmark's); SSL4MIS's ``Dropout`` is element-wise ``F.dropout(x, p=0.3)`` and its feature
  dropout draws one threshold per batch (``authors``: "element", 0.3, "batch").
* ``consistency`` = 0.1: weight of the consistency loss, times ``self.rampup`` (sigmoid ramp-up
  over ``rampup_fraction`` of the run; SSL4MIS ramps over the whole run, ``authors``: 1). SSL4MIS
  default; the CCT paper's weight (30, for PASCAL VOC with a PSPNet head) is not meant for this
  loss scale or for defect data.
* ``supervise_aux`` = False: as in the CCT paper, only the main decoder gets the supervised loss
  0.5 * (CE + Dice); True (SSL4MIS, ``authors``) gives the mean supervised loss over all decoders.
* ``detach_target`` = True: the main decoder's softmax is detached in the consistency loss, as in
  the official CCT code; SSL4MIS (``authors``: False) lets the gradient flow into it too.

Deviations from the paper:

* Network: the paper U-Net (or any ``backbone``) instead of a ResNet-50 encoder with PSP-style
  decoders; every encoder level is perturbed before an auxiliary decoder sees it (SSL4MIS), not
  only the encoder's output.
* Perturbations: the three above by default instead of CCT's 30 auxiliary decoders (VAT,
  dropout, cutout, context/object masking, feature dropout, feature noise); VAT and the
  mask-based perturbations (which need class activation maps) are not implemented.
* Supervised loss 0.5 * (CE + Dice) (UAPS/simEps papers, SSL4MIS) instead of CE with annealed
  bootstrapping.
* Labelled and unlabelled images go through the network in one batch (SSL4MIS); the consistency
  loss uses the unlabelled part only.

Remaining differences from SSL4MIS (docs/fidelity.md): perturbations act in training mode only
(SSL4MIS's ``UNet_CCT`` perturbs at validation too, which leaves its main decoder unchanged); the
ramp-up is continuous where SSL4MIS's steps every 150 iterations.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from defectseg.options import flag, number, subset

from .base import LabeledBatch, Method, step_losses
from .losses import segmentation_loss, softmax_mse
from .networks import build_backbone
from .perturbations import PERTURBATION_OPTIONS, PERTURBATIONS, MultiDecoderNet, build_perturbations, perturbation_settings
from .registry import register_method
from .released_loops import SSL4MIS_RAMPUP

# SSL4MIS: networks/unet.py:272-274 (Dropout, p = 0.3), 281 (one np.random.uniform per call),
# train_cross_consistency_training_2D.py:158-159 (all decoders supervised), 162-169 (target not
# detached), 161 (ramp over the whole run)
AUTHORS_OPTIONS: dict[str, Any] = {
    **SSL4MIS_RAMPUP,
    "dropout_mode": "element",
    "dropout_p": 0.3,
    "feature_dropout_draw": "batch",
    "supervise_aux": True,
    "detach_target": False,
}


@register_method("cct")
class CCT(Method):
    option_specs = {
        "perturbations": subset(["feature_noise", "dropout", "feature_dropout"], PERTURBATIONS, non_empty=True),
        **PERTURBATION_OPTIONS,
        "consistency": number(0.1),
        "supervise_aux": flag(False),
        "detach_target": flag(True),
    }

    def __init__(self, options, in_channels: int, num_classes: int) -> None:
        super().__init__(options, in_channels, num_classes)
        backbone = build_backbone(self.options["backbone"], in_channels, num_classes)
        perturbations = build_perturbations(self.options["perturbations"], perturbation_settings(self.options))
        self.net = MultiDecoderNet(backbone, perturbations)

    @classmethod
    def authors_options(cls, dataset: str) -> dict[str, Any]:
        return dict(AUTHORS_OPTIONS)

    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        num_labeled = labeled.images.shape[0]
        main, *aux = self.net(torch.cat([labeled.images, unlabeled]))
        supervised = [main] + aux if self.options["supervise_aux"] else [main]
        loss_sup = torch.stack([segmentation_loss(out[:num_labeled], labeled.masks) for out in supervised]).mean()
        target, detach = main[num_labeled:], self.options["detach_target"]
        loss_cons = torch.stack([softmax_mse(out[num_labeled:], target, detach) for out in aux]).mean()
        return step_losses(loss_sup, loss_cons, self.options["consistency"] * self.rampup(step, total_steps))

    def named_predictions(self, images: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        """The main decoder's logits."""
        return {name: self.net(images, with_aux=False)[0] for name in names}
