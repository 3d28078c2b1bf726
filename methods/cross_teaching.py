"""Cross teaching between a CNN and a transformer.

Paper: X. Luo, M. Hu, T. Song, G. Wang, S. Zhang, "Semi-Supervised Medical Image Segmentation
via Cross Teaching between CNN and Transformer", MIDL 2022.

A CNN (the paper U-Net, option ``backbone``) and a transformer segmentation network are trained
together. Each gets the supervised loss 0.5 * (CE + Dice) on the labelled images; on the
unlabelled images each learns from the other's hard prediction (argmax, detached) with the Dice
loss only, as in the paper and SSL4MIS's ``train_cross_teaching_between_cnn_transformer_2D.py``:

    loss = sup(cnn) + sup(transformer) + w(t) * (Dice(cnn, argmax transformer) + Dice(transformer, argmax cnn))

logged as ``loss_sup`` (the two supervised losses), ``loss_unsup`` (the two Dice terms) and
``unsup_weight`` (w(t)), beside each network's parts (``loss_sup_cnn``, ``loss_ct_cnn``, ...).

Options (defaults and sources):

* ``consistency`` = 0.1: the cross-teaching weight, times ``self.rampup`` (sigmoid ramp-up over
  ``rampup_fraction`` of the run); paper and SSL4MIS (lambda = 0.1 with a Gaussian warm-up).
* ``transformer`` = ``"smp:Segformer:mit_b0"``: segmentation-models-pytorch's SegFormer with the
  MiT-B0 encoder (3.7 M parameters), built by ``networks.build_network`` with
  ``encoder_weights=None``, so nothing is downloaded; it accepts any number of input channels.
  Any ``smp:<Arch>:<encoder>`` name works. smp networks need image sides divisible by their
  output stride (32): a run whose ``train.image_size`` is not raises a ConfigError naming it.
* ``eval_mode`` = ``"cnn"``: what ``predict`` returns: ``cnn``, ``transformer`` or ``ensemble``
  (mean of the two softmax maps, returned as log-probabilities). The other two are evaluated
  beside it through ``predict_variants``.

The ``authors`` recipe (SSL4MIS script above, the methods' authors' code) differs from the
defaults only in ramping the weight over the whole run (``rampup_fraction`` 1: SSL4MIS's
``sigmoid_rampup(iter_num // 150, 200)`` over 30,000 iterations, lines 227-228); the losses are
SSL4MIS's (``DiceLoss``, ``methods.losses``). docs/fidelity.md.

Deviations from the paper: SegFormer (MiT-B0), randomly initialised, instead of an
ImageNet-pretrained Swin-UNet (no pretrained weights anywhere in this benchmark, and SegFormer
takes any input size divisible by 32 and any number of channels); one Adam optimiser over both
networks (the runner's) instead of two SGD optimisers with poly decay; labelled and unlabelled
images go through each network in one batch (SSL4MIS); the best checkpoint is chosen on
validation by the runner, as for every method (the paper used the last iteration); the ramp-up is
continuous where SSL4MIS's steps every 150 iterations.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from defectseg.options import ConfigError, choice, number, text

from .base import LabeledBatch, Method, step_losses
from .ensemble import member_predictions
from .losses import dice_loss, hard_labels, segmentation_loss
from .networks import build_network
from .registry import register_method
from .released_loops import SSL4MIS_RAMPUP

EVAL_MODES = ("cnn", "transformer", "ensemble")


@register_method("cross_teaching")
class CrossTeaching(Method):
    option_specs = {
        "consistency": number(0.1),
        "transformer": text("smp:Segformer:mit_b0"),
        "eval_mode": choice("cnn", EVAL_MODES),
    }

    def __init__(self, options, in_channels: int, num_classes: int) -> None:
        super().__init__(options, in_channels, num_classes)
        if not str(self.options["transformer"]).startswith("smp:"):
            raise ConfigError(
                "method_options.cross_teaching.transformer must be a segmentation-models-pytorch network "
                f"'smp:<Arch>:<encoder>' (e.g. 'smp:Segformer:mit_b0'), got {self.options['transformer']!r}"
            )
        self.cnn = build_network(self.options["backbone"], in_channels, num_classes)
        self.transformer = build_network(self.options["transformer"], in_channels, num_classes)
        self.size_multiple = int(getattr(self.transformer.encoder, "output_stride", 32))

    @classmethod
    def authors_options(cls, dataset: str) -> dict[str, Any]:
        return dict(SSL4MIS_RAMPUP)

    def check_image_size(self, images: Tensor) -> None:
        height, width = images.shape[-2:]
        if height % self.size_multiple or width % self.size_multiple:
            raise ConfigError(
                f"cross_teaching: the transformer {self.options['transformer']!r} needs image sides divisible by "
                f"{self.size_multiple}, got {height}x{width}; set train.image_size to a multiple of "
                f"{self.size_multiple} (e.g. --set train.image_size=64)"
            )

    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        images = torch.cat([labeled.images, unlabeled])
        self.check_image_size(images)
        num_labeled = labeled.images.shape[0]
        cnn_logits, transformer_logits = self.cnn(images), self.transformer(images)
        loss_sup_cnn = segmentation_loss(cnn_logits[:num_labeled], labeled.masks)
        loss_sup_transformer = segmentation_loss(transformer_logits[:num_labeled], labeled.masks)
        cnn_u, transformer_u = cnn_logits[num_labeled:], transformer_logits[num_labeled:]
        # each network is taught by the other's hard prediction, which carries no gradient
        loss_ct_cnn = dice_loss(cnn_u, hard_labels(transformer_u.detach()))
        loss_ct_transformer = dice_loss(transformer_u, hard_labels(cnn_u.detach()))
        weight = self.options["consistency"] * self.rampup(step, total_steps)
        return step_losses(
            loss_sup_cnn + loss_sup_transformer, loss_ct_cnn + loss_ct_transformer, weight,
            loss_sup_cnn=loss_sup_cnn, loss_sup_transformer=loss_sup_transformer,
            loss_ct_cnn=loss_ct_cnn, loss_ct_transformer=loss_ct_transformer,
        )

    def prediction_names(self) -> tuple[str, ...]:
        return EVAL_MODES

    def named_predictions(self, images: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        self.check_image_size(images)
        return member_predictions({"cnn": self.cnn, "transformer": self.transformer}, images, names)
