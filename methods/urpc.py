"""Uncertainty-Rectified Pyramid Consistency (URPC).

Papers: X. Luo, W. Liao, J. Chen, T. Song, Y. Chen, S. Zhang, N. Chen, G. Wang, S. Zhang,
"Efficient Semi-supervised Gross Target Volume of Nasopharyngeal Carcinoma Segmentation via
Uncertainty Rectified Pyramid Consistency", MICCAI 2021; X. Luo, G. Wang, W. Liao, J. Chen,
T. Song, Y. Chen, S. Zhang, D. N. Metaxas, S. Zhang, "Semi-Supervised Medical Image Segmentation
via Uncertainty Rectified Pyramid Consistency", Medical Image Analysis 80, 2022.

The paper U-Net gets a segmentation head after each of its four decoder stages (scales 1/8, 1/4,
1/2 and 1 of the input); every output is upsampled to the input size. Supervised loss: the mean
over scales of 0.5 * (CE + Dice). On unlabelled images, with p_d the softmax of scale d and p̄
the mean of the p_d, the uncertainty of scale d is u_d = KL(p̄ || p_d) per pixel
(``losses.kl_to_mean``) and its consistency loss is

    loss_d = mean(exp(-u_d) * MSE(p_d, p̄)) / mean(exp(-u_d)) + mean(u_d),

with the MSE averaged over classes; the consistency loss is the mean of loss_d over the scales.
This is SSL4MIS's formulation (``train_uncertainty_rectified_pyramid_consistency_2D.py``, Luo et
al., the methods' authors' own code), where neither p̄ nor u_d is detached, so both terms also
train towards agreement. The prediction is the full-resolution (finest) output. Comparison with
SSL4MIS per recipe: docs/fidelity.md.

Options (defaults = recipe ``unified``; ``authors_options`` gives SSL4MIS's values):

* ``consistency`` = 0.1: weight of the consistency loss, times ``self.rampup`` (sigmoid ramp-up
  over ``rampup_fraction`` of the run; SSL4MIS ramps over the whole run, ``authors``: 1).
* ``perturb_aux`` = True: in training, the features of the auxiliary scales are perturbed before
  their heads, as in SSL4MIS's ``UNet_URPC``: feature noise at 1/2, feature dropout at 1/4,
  dropout (p = 0.5) at 1/8 (``methods.perturbations``). Off in eval mode, as in SSL4MIS.
* ``dropout_mode`` "channel", ``dropout_p`` 0.5, ``feature_dropout_draw`` "sample": how those
  perturb; SSL4MIS's 1/8-scale dropout is element-wise ``F.dropout(x, p=0.5)`` and its feature
  dropout draws one threshold per batch (``authors``: "element", 0.5, "batch").
* ``aux_upsampling`` "bilinear": how the auxiliary logits are resized to the input;
  SSL4MIS uses ``F.interpolate``'s default, nearest-neighbour (``authors``: "nearest").
* ``backbone``: only the paper U-Net, ``"unet"`` (bilinear upsampling, the project default and
  SSL4MIS's ``UpBlock`` default) or ``"unet-tconv"`` (transposed convolutions); anything else is
  a ConfigError, because the method needs the U-Net's decoder stages.

Deviations: 2D U-Net with 3x3 heads (SSL4MIS) instead of the paper's 3D network; labelled and
unlabelled images go through the network in one batch (SSL4MIS); the ramp-up is continuous where
SSL4MIS's steps every 150 iterations; optimiser and schedule belong to the runner (SSL4MIS: SGD
with poly learning-rate decay).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from defectseg.options import choice, flag, number

from .base import LabeledBatch, Method, step_losses
from .losses import kl_to_mean, segmentation_loss
from .networks import UNET_CHANNELS, UNetDecoder, build_backbone
from .perturbations import PERTURBATION_OPTIONS, PerturbationSettings, build_perturbations, perturbation_settings
from .registry import register_method
from .released_loops import SSL4MIS_RAMPUP

PAPER_UNETS = ("unet", "unet-tconv")
# perturbation before the head of each auxiliary scale, finest (1/2) to coarsest (1/8): SSL4MIS
AUX_PERTURBATIONS = ("feature_noise", "feature_dropout", "dropout")
UPSAMPLING = ("bilinear", "nearest")
# SSL4MIS: networks/unet.py:248 (F.dropout, p = 0.5), 281 (one np.random.uniform per call), 251, 258,
# 265 (F.interpolate's default mode, nearest); train_uncertainty_rectified_pyramid_consistency_2D.py:180
# (ramp over the whole run)
AUTHORS_OPTIONS: dict[str, Any] = {
    **SSL4MIS_RAMPUP,
    "dropout_mode": "element",
    "feature_dropout_draw": "batch",
    "aux_upsampling": "nearest",
}


class PyramidUNet(nn.Module):
    """The paper U-Net with one segmentation head per decoder stage, all outputs at input size.

    ``perturbations``: the settings of the auxiliary scales' perturbations, or None for none.
    """

    def __init__(
        self,
        backbone: str,
        in_channels: int,
        num_classes: int,
        perturbations: PerturbationSettings | None,
        upsampling: str = "bilinear",
    ) -> None:
        super().__init__()
        parts = build_backbone(backbone, in_channels, num_classes)
        self.encoder = parts.encoder
        self.decoder: UNetDecoder = parts.make_decoder()
        aux_channels = UNET_CHANNELS[1:4]  # stages at 1/2, 1/4, 1/8 of the input
        self.aux_heads = nn.ModuleList(nn.Conv2d(c, num_classes, kernel_size=3, padding=1) for c in aux_channels)
        if perturbations is None:
            self.aux_perturbations = nn.ModuleList(nn.Identity() for _ in aux_channels)
        else:
            self.aux_perturbations = nn.ModuleList(build_perturbations(AUX_PERTURBATIONS, perturbations))
        self.upsampling = upsampling

    def forward(self, x: Tensor, with_aux: bool = True) -> list[Tensor]:
        """Logits of every scale at the input size, finest (the main output) first."""
        stages = self.decoder.stages(self.encoder(x))[::-1]  # finest first
        outputs = [self.decoder.head(stages[0])]
        if with_aux:
            for stage, perturb, head in zip(stages[1:], self.aux_perturbations, self.aux_heads):
                logits = head(perturb(stage))
                outputs.append(self._resize(logits, x.shape[-2:]))
        return outputs

    def _resize(self, logits: Tensor, size: torch.Size) -> Tensor:
        if self.upsampling == "nearest":
            return F.interpolate(logits, size=size, mode="nearest")
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def rectified_pyramid_consistency(probs: list[Tensor]) -> Tensor:
    """Mean over scales of the uncertainty-rectified MSE to the mean prediction, plus mean uncertainty."""
    mean = torch.stack(probs).mean(dim=0)
    losses = []
    for p, uncertainty in zip(probs, kl_to_mean(probs, mean)):  # uncertainty: (B, H, W)
        weight = torch.exp(-uncertainty)
        squared_error = ((p - mean) ** 2).mean(dim=1)
        losses.append((weight * squared_error).mean() / (weight.mean() + 1e-8) + uncertainty.mean())
    return torch.stack(losses).mean()


@register_method("urpc")
class URPC(Method):
    option_specs = {
        "backbone": choice("unet", PAPER_UNETS, note="URPC needs the paper U-Net's decoder stages"),
        "consistency": number(0.1),
        "perturb_aux": flag(True),
        **PERTURBATION_OPTIONS,
        "aux_upsampling": choice("bilinear", UPSAMPLING),
    }

    def __init__(self, options, in_channels: int, num_classes: int) -> None:
        super().__init__(options, in_channels, num_classes)
        perturbations = perturbation_settings(self.options) if self.options["perturb_aux"] else None
        self.net = PyramidUNet(self.options["backbone"], in_channels, num_classes, perturbations, self.options["aux_upsampling"])

    @classmethod
    def authors_options(cls, dataset: str) -> dict[str, Any]:
        return dict(AUTHORS_OPTIONS)

    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        num_labeled = labeled.images.shape[0]
        outputs = self.net(torch.cat([labeled.images, unlabeled]))
        loss_sup = torch.stack([segmentation_loss(out[:num_labeled], labeled.masks) for out in outputs]).mean()
        loss_cons = rectified_pyramid_consistency([out[num_labeled:].float().softmax(dim=1) for out in outputs])
        return step_losses(loss_sup, loss_cons, self.options["consistency"] * self.rampup(step, total_steps))

    def named_predictions(self, images: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        """The full-resolution (finest) output."""
        return {name: self.net(images, with_aux=False)[0] for name in names}
