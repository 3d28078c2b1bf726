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
al.), where neither p̄ nor u_d is detached, so both terms also train towards agreement. The
prediction is the full-resolution (finest) output.

Options (defaults and sources):

* ``consistency`` = 0.1: weight of the consistency loss, times ``self.rampup`` (sigmoid ramp-up
  over ``rampup_fraction`` of the run); SSL4MIS default.
* ``perturb_aux`` = True: in training, the features of the auxiliary scales are perturbed before
  their heads, as in SSL4MIS's ``UNet_URPC``: feature noise at 1/2, feature dropout at 1/4,
  channel dropout (p = 0.5) at 1/8 (``methods.perturbations``). Off in eval mode.
* ``backbone``: only the paper U-Net, ``"unet"`` (bilinear upsampling, the project default) or
  ``"unet-tconv"`` (transposed convolutions, as SSL4MIS's ``UNet_URPC``); anything else is a
  ConfigError, because the method needs the U-Net's decoder stages.

Deviations: 2D U-Net with 3x3 heads (SSL4MIS) instead of the paper's 3D network; auxiliary
outputs upsampled bilinearly (SSL4MIS uses nearest-neighbour interpolation); labelled and
unlabelled images go through the network in one batch (SSL4MIS); Adam and the runner's schedule
instead of SGD with poly learning-rate decay.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import ConfigError, LabeledBatch, Method, consistency_losses
from .losses import kl_to_mean, segmentation_loss
from .networks import UNET_CHANNELS, UNetDecoder, build_backbone
from .perturbations import build_perturbations
from .registry import register_method

PAPER_UNETS = ("unet", "unet-tconv")
# perturbation before the head of each auxiliary scale, finest (1/2) to coarsest (1/8): SSL4MIS
AUX_PERTURBATIONS = ("feature_noise", "feature_dropout", "dropout")


class PyramidUNet(nn.Module):
    """The paper U-Net with one segmentation head per decoder stage, all outputs at input size."""

    def __init__(self, backbone: str, in_channels: int, num_classes: int, perturb_aux: bool) -> None:
        super().__init__()
        parts = build_backbone(backbone, in_channels, num_classes)
        self.encoder = parts.encoder
        self.decoder: UNetDecoder = parts.make_decoder()
        aux_channels = UNET_CHANNELS[1:4]  # stages at 1/2, 1/4, 1/8 of the input
        self.aux_heads = nn.ModuleList(nn.Conv2d(c, num_classes, kernel_size=3, padding=1) for c in aux_channels)
        perturbations = build_perturbations(AUX_PERTURBATIONS) if perturb_aux else [nn.Identity() for _ in aux_channels]
        self.aux_perturbations = nn.ModuleList(perturbations)

    def forward(self, x: Tensor, with_aux: bool = True) -> list[Tensor]:
        """Logits of every scale at the input size, finest (the main output) first."""
        stages = self.decoder.stages(self.encoder(x))[::-1]  # finest first
        outputs = [self.decoder.head(stages[0])]
        if with_aux:
            for stage, perturb, head in zip(stages[1:], self.aux_perturbations, self.aux_heads):
                logits = head(perturb(stage))
                outputs.append(F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False))
        return outputs


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
    defaults = {"consistency": 0.1, "perturb_aux": True}

    def __init__(self, options, in_channels: int, num_classes: int) -> None:
        super().__init__(options, in_channels, num_classes)
        if self.options["backbone"] not in PAPER_UNETS:
            raise ConfigError(
                f"option 'backbone' of method 'urpc' must be one of {list(PAPER_UNETS)} (URPC needs the paper "
                f"U-Net's decoder stages), got {self.options['backbone']!r}"
            )
        self.net = PyramidUNet(self.options["backbone"], in_channels, num_classes, bool(self.options["perturb_aux"]))

    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        num_labeled = labeled.images.shape[0]
        outputs = self.net(torch.cat([labeled.images, unlabeled]))
        loss_sup = torch.stack([segmentation_loss(out[:num_labeled], labeled.masks) for out in outputs]).mean()
        loss_cons = rectified_pyramid_consistency([out[num_labeled:].float().softmax(dim=1) for out in outputs])
        return consistency_losses(loss_sup, loss_cons, self.options["consistency"] * self.rampup(step, total_steps))

    def predict(self, images: Tensor) -> Tensor:
        return self.net(images, with_aux=False)[0]
