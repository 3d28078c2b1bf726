"""UA-MT: Yu, Wang, Li, Fu & Heng, "Uncertainty-aware self-ensembling model for semi-supervised 3D
left atrium segmentation", MICCAI 2019.

Compared line by line with SSL4MIS ``code/train_uncertainty_aware_mean_teacher_2D.py`` (the
``authors`` recipe): docs/fidelity.md.

Mean Teacher (``methods.mean_teacher``: same student, EMA teacher, supervised loss, input noise,
``student_noise``, ``eval_mode``) whose consistency counts only the pixels where the teacher is
certain:

* uncertainty = predictive entropy -sum_c p_c log(p_c + 1e-6) of the mean softmax p of
  ``mc_passes`` (T = 8) teacher passes, each on freshly noised unlabelled images with the
  teacher's dropout active (Monte Carlo dropout);
* threshold = (0.75 + 0.25 * rampup(step)) * ln 2 (``threshold_scale: ln2``), with the sigmoid
  ramp of ``self.rampup``: 0.75 ln 2 at step 0 (exactly (0.75 + 0.25 e^-5) ln 2, the sigmoid ramp
  being e^-5 there) and ln 2 once the ramp-up is over, whatever the number of classes C, as in the
  UA-MT code (C = 2, where ln 2 is the maximum entropy) and SSL4MIS's 2D script (C = 4);
* mask = uncertainty < threshold;
* consistency = sum(mask * (softmax student - softmax teacher)^2) / (K * sum(mask) + 1e-16), where
  the teacher's prediction is one more noisy teacher pass (as in the UA-MT and SSL4MIS code,
  separate from the T passes). With ``mask_normaliser: classes`` (default) K = C: the mean squared
  softmax difference over the certain pixels and all classes; ``two``: K = 2, as the UA-MT code
  (C = 2) and SSL4MIS's 2D script (C = 4, so its loss is C / 2 times that mean).

``threshold_scale: lnC`` gives the threshold (0.75 + 0.25 * rampup) * ln C recorded by runs made
with that setting: ln C is the maximum entropy, so as the threshold ramps up to
it the mask comes to keep every pixel (certain_fraction 1.0) and UA-MT degenerates into Mean
Teacher.

Mode of the Monte Carlo passes: the teacher runs in train mode during training, so dropout is
active and BatchNorm normalises with each pass's batch statistics -- what the UA-MT and SSL4MIS
code do, their EMA model never being put in eval mode.

Defaults (UA-MT paper and SSL4MIS ``train_uncertainty_aware_mean_teacher_2D.py``): ``mc_passes``
8, ``ema_decay`` 0.99, ``consistency`` 0.1 with the sigmoid ramp-up, noise
clamp(N(0, 1) * 0.1, -0.2, 0.2); ``eval_mode`` "student".

Remaining deviations (docs/fidelity.md):
* Each Monte Carlo pass sees one unlabelled batch (SSL4MIS stacks two noisy copies per pass and
  runs T / 2 passes; only the BatchNorm batch differs).
* Under ``unified`` the threshold and the consistency weight ramp with ``self.rampup``
  (``rampup_fraction`` of the run); SSL4MIS ramps both over all iterations (``authors``:
  ``rampup_fraction`` 1), the weight in steps of 150 iterations.
* Under ``unified`` the student's unlabelled input is noised too (Mean Teacher paper); UA-MT and
  SSL4MIS feed it clean images (``authors``: ``student_noise: false``). All other Mean Teacher
  deviations (``methods.mean_teacher``) apply.
"""
from __future__ import annotations

import math

from typing import Any

import torch
from torch import Tensor

from defectseg.options import choice, integer

from .mean_teacher import MeanTeacher
from .registry import register_method
from .released_loops import SSL4MIS_RAMPUP

ENTROPY_EPS = 1e-6  # inside the log, as in the UA-MT code
MASK_EPS = 1e-16  # in the masked mean's denominator, as in the UA-MT code


def predictive_entropy(probs: Tensor) -> Tensor:
    """-sum_c p_c log(p_c + 1e-6) per pixel: (B, C, H, W) -> (B, H, W)."""
    probs = probs.float()
    return -(probs * torch.log(probs + ENTROPY_EPS)).sum(dim=1)


def uncertainty_threshold(ramp: float, num_classes: int) -> float:
    """(0.75 + 0.25 * ramp) * ln ``num_classes`` (2 for ``threshold_scale: ln2``)."""
    return (0.75 + 0.25 * ramp) * math.log(num_classes)


def masked_softmax_mse(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor, divisor: int | None = None) -> Tensor:
    """sum(mask * (softmax student - softmax teacher)^2) / (K * sum(mask)), K = ``divisor`` or C.

    With K = C (default), the mean over the pixels where ``mask`` (B, H, W) is true and all classes.
    """
    squared = (student_logits.float().softmax(1) - teacher_logits.detach().float().softmax(1)) ** 2
    weight = mask.unsqueeze(1).to(squared.dtype)
    return (squared * weight).sum() / ((divisor or squared.shape[1]) * weight.sum() + MASK_EPS)


@register_method("ua_mt")
class UAMT(MeanTeacher):
    option_specs = {
        **MeanTeacher.option_specs,
        "mc_passes": integer(8, minimum=1),
        "threshold_scale": choice("ln2", ("ln2", "lnC")),
        "mask_normaliser": choice("classes", ("classes", "two")),
    }

    @classmethod
    def authors_options(cls, dataset: str) -> dict[str, Any]:
        # SSL4MIS train_uncertainty_aware_mean_teacher_2D.py:157 (student on clean images),
        # 184, 187-188 (weight and threshold ramp over the whole run), 190-191 (2 * sum(mask))
        return {**SSL4MIS_RAMPUP, "student_noise": False, "mask_normaliser": "two"}

    @torch.no_grad()
    def teacher_uncertainty(self, unlabeled: Tensor) -> Tensor:
        """Predictive entropy (B, H, W) of the mean softmax of ``mc_passes`` noisy teacher passes."""
        mean_probs = sum(self.teacher(self.noisy(unlabeled)).float().softmax(1) for _ in range(self.options["mc_passes"]))
        return predictive_entropy(mean_probs / self.options["mc_passes"])

    def certainty_mask(self, unlabeled: Tensor, step: int, total_steps: int) -> tuple[Tensor, float]:
        """Boolean mask (B, H, W) of the pixels whose uncertainty is below the current threshold."""
        scale_classes = 2 if self.options["threshold_scale"] == "ln2" else self.num_classes
        threshold = uncertainty_threshold(self.rampup(step, total_steps), scale_classes)
        return self.teacher_uncertainty(unlabeled) < threshold, threshold

    def consistency_loss(
        self, student_logits: Tensor, unlabeled: Tensor, step: int, total_steps: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        with torch.no_grad():
            teacher_logits = self.teacher(self.noisy(unlabeled))
        mask, threshold = self.certainty_mask(unlabeled, step, total_steps)
        divisor = 2 if self.options["mask_normaliser"] == "two" else None
        loss = masked_softmax_mse(student_logits, teacher_logits, mask, divisor)
        return loss, {
            "certain_fraction": mask.float().mean(),
            "uncertainty_threshold": loss.new_tensor(threshold),
        }
