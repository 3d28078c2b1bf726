"""UA-MT: Yu, Wang, Li, Fu & Heng, "Uncertainty-aware self-ensembling model for semi-supervised 3D
left atrium segmentation", MICCAI 2019.

Mean Teacher (``methods.mean_teacher``: same student, EMA teacher, supervised loss, input noise,
``eval_mode``) whose consistency counts only the pixels where the teacher is certain:

* uncertainty = predictive entropy -sum_c p_c log(p_c + 1e-6) of the mean softmax p of
  ``mc_passes`` (T = 8) teacher passes, each on freshly noised unlabelled images with the
  teacher's dropout active (Monte Carlo dropout);
* threshold = (0.75 + 0.25 * rampup(step)) * ln C, C = number of classes, with the sigmoid ramp
  of ``self.rampup``: 0.75 ln C at step 0 (exactly (0.75 + 0.25 e^-5) ln C, the sigmoid ramp
  being e^-5 there) and ln C, the maximum entropy, once the ramp-up is over;
* mask = uncertainty < threshold;
* consistency = sum(mask * (softmax student - softmax teacher)^2) / (C * sum(mask) + 1e-16): the
  mean squared softmax difference over the certain pixels and all classes, where the teacher's
  prediction is one more noisy teacher pass (as in the UA-MT and SSL4MIS code, separate from the
  T passes).

Mode of the Monte Carlo passes: the teacher runs in train mode during training, so dropout is
active and BatchNorm normalises with each pass's batch statistics -- what the UA-MT and SSL4MIS
code do, their EMA model never being put in eval mode. Each pass sees one unlabelled batch
(SSL4MIS stacks two noisy copies per pass; only the BatchNorm batch differs).

Defaults (UA-MT paper and SSL4MIS ``train_uncertainty_aware_mean_teacher_2D.py``): ``mc_passes``
8, ``ema_decay`` 0.99, ``consistency`` 0.1 with the sigmoid ramp-up, noise
clamp(N(0, 1) * 0.1, -0.2, 0.2); ``eval_mode`` "student".

Deviations:
* Normaliser C * sum(mask): the UA-MT code divides by 2 * sum(mask) for its two classes, i.e.
  the mean over certain pixels and classes; SSL4MIS's 2D script keeps the 2 (and ln 2) for the
  4-class ACDC. We use C and ln C, which equal the original for C = 2.
* The threshold ramps with ``self.rampup`` (``rampup_fraction`` of the run); the UA-MT and
  SSL4MIS code ramp it over all iterations.
* The student's unlabelled input is noised too (Mean Teacher paper); UA-MT and SSL4MIS feed it
  clean images. All other Mean Teacher deviations (``methods.mean_teacher``) apply.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import check_number
from .mean_teacher import MeanTeacher
from .registry import register_method

ENTROPY_EPS = 1e-6  # inside the log, as in the UA-MT code
MASK_EPS = 1e-16  # in the masked mean's denominator, as in the UA-MT code


def predictive_entropy(probs: Tensor) -> Tensor:
    """-sum_c p_c log(p_c + 1e-6) per pixel: (B, C, H, W) -> (B, H, W)."""
    probs = probs.float()
    return -(probs * torch.log(probs + ENTROPY_EPS)).sum(dim=1)


def uncertainty_threshold(ramp: float, num_classes: int) -> float:
    """(0.75 + 0.25 * ramp) * ln C."""
    return (0.75 + 0.25 * ramp) * math.log(num_classes)


def masked_softmax_mse(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor) -> Tensor:
    """Mean of (softmax student - softmax teacher)^2 over the pixels where ``mask`` (B, H, W) is true."""
    squared = (student_logits.float().softmax(1) - teacher_logits.detach().float().softmax(1)) ** 2
    weight = mask.unsqueeze(1).to(squared.dtype)
    return (squared * weight).sum() / (squared.shape[1] * weight.sum() + MASK_EPS)


@register_method("ua_mt")
class UAMT(MeanTeacher):
    defaults = {**MeanTeacher.defaults, "mc_passes": 8}

    def _check_options(self) -> None:
        super()._check_options()
        check_number(self.name, "mc_passes", self.options["mc_passes"], minimum=1, integer=True)

    @torch.no_grad()
    def teacher_uncertainty(self, unlabeled: Tensor) -> Tensor:
        """Predictive entropy (B, H, W) of the mean softmax of ``mc_passes`` noisy teacher passes."""
        mean_probs = sum(self.teacher(self.noisy(unlabeled)).float().softmax(1) for _ in range(self.options["mc_passes"]))
        return predictive_entropy(mean_probs / self.options["mc_passes"])

    def certainty_mask(self, unlabeled: Tensor, step: int, total_steps: int) -> tuple[Tensor, float]:
        """Boolean mask (B, H, W) of the pixels whose uncertainty is below the current threshold."""
        threshold = uncertainty_threshold(self.rampup(step, total_steps), self.num_classes)
        return self.teacher_uncertainty(unlabeled) < threshold, threshold

    def consistency_loss(
        self, student_logits: Tensor, unlabeled: Tensor, step: int, total_steps: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        with torch.no_grad():
            teacher_logits = self.teacher(self.noisy(unlabeled))
        mask, threshold = self.certainty_mask(unlabeled, step, total_steps)
        loss = masked_softmax_mse(student_logits, teacher_logits, mask)
        return loss, {
            "certain_fraction": mask.float().mean(),
            "uncertainty_threshold": loss.new_tensor(threshold),
        }
