"""Mean Teacher: Tarvainen & Valpola, "Mean teachers are better role models", NeurIPS 2017.

Compared line by line with SSL4MIS ``code/train_mean_teacher_2D.py`` (the ``authors`` recipe):
docs/fidelity.md.

The student is the paper U-Net (``build_network(backbone)``); the teacher is an exponential moving
average (EMA) of the student's weights (``methods.teacher``: frozen copy, no gradients, updated in
``on_step_end`` after every optimiser step, BatchNorm buffers copied from the student). Loss:

    0.5 * (CE + Dice)(student(labelled), masks)
    + consistency * rampup(step) * MSE(softmax student(u + n1), softmax teacher(u + n2))

on the unlabelled batch u, with independent input noise n1, n2 = clamp(N(0, 1) * 0.1, -0.2, 0.2)
(n1 = 0 with ``student_noise: false``); logged as ``loss_sup``, ``loss_unsup`` (the MSE) and
``unsup_weight``. The student sees the labelled and the unlabelled images
in one forward pass (BatchNorm statistics over both, as SSL4MIS's single ``model(volume_batch)``
call); the teacher runs under ``no_grad`` in the method's train/eval mode (train mode while
training: dropout active, batch statistics in BatchNorm, as SSL4MIS's EMA model).

Defaults (SSL4MIS ``train_mean_teacher_2D.py``, Luo et al., the code base of the UAPS authors):
``ema_decay`` 0.99, ``consistency`` 0.1 with the sigmoid ramp-up of ``self.rampup``
(``rampup_fraction`` of the run), ``noise_std`` 0.1, ``noise_clip`` 0.2. ``eval_mode``
"student" (default) or "teacher" picks the network ``predict`` uses; the other one is reported as
a ``predict_variants`` entry. The student is the default because it is the network trained on
the labels and the one SSL4MIS validates and saves. ``student_noise`` true (default): the
student's unlabelled input is noised too, as in the Mean Teacher paper (eta, eta'); SSL4MIS
(``authors``) feeds it clean images. ``consistency_start`` 0: the fraction of the run during which
the consistency weight is 0 (the loss is still computed and logged); SSL4MIS zeroes the
consistency loss for its first 1000 of 30,000 iterations (``authors``: 1/30).

Remaining deviations (docs/fidelity.md):
* The teacher starts as a copy of the student (SSL4MIS initialises it independently); with the
  EMA warm-up (alpha = 0 at step 0) both give the student's weights after the first update.
* Buffers are copied from the student instead of accumulated by the teacher's own passes (see
  ``methods.teacher``); this only affects ``eval_mode: teacher``.
* The ramp-up is continuous; SSL4MIS's steps every 150 iterations (``iter_num // 150``).
* Optimiser and schedule belong to the runner (SSL4MIS: SGD + poly decay).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from defectseg.options import choice, flag, number

from .base import LabeledBatch, Method, step_losses
from .losses import segmentation_loss, softmax_mse
from .networks import build_network
from .registry import register_method
from .released_loops import SSL4MIS_RAMPUP
from .teacher import ema_alpha, ema_update, frozen_copy, input_noise

EVAL_MODES = ("student", "teacher")


@register_method("mean_teacher")
class MeanTeacher(Method):
    option_specs = {
        "ema_decay": number(0.99, maximum=1.0),
        "consistency": number(0.1),
        "noise_std": number(0.1),
        "noise_clip": number(0.2),
        "student_noise": flag(True),
        "consistency_start": number(0.0, maximum=1.0),
        "eval_mode": choice("student", EVAL_MODES),
    }

    def __init__(self, options: Mapping[str, Any], in_channels: int, num_classes: int) -> None:
        super().__init__(options, in_channels, num_classes)
        self.student = build_network(self.options["backbone"], in_channels, num_classes)
        self.teacher = frozen_copy(self.student)

    @classmethod
    def authors_options(cls, dataset: str) -> dict[str, Any]:
        # SSL4MIS train_mean_teacher_2D.py:158 (student on clean images), 170-171 (no consistency
        # before iteration 1000 of 30,000), 169 (ramp over the whole run)
        return {**SSL4MIS_RAMPUP, "student_noise": False, "consistency_start": 1000 / 30000}

    def noisy(self, images: Tensor) -> Tensor:
        return input_noise(images, self.options["noise_std"], self.options["noise_clip"])

    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        num_labeled = labeled.images.shape[0]
        student_unlabeled = self.noisy(unlabeled) if self.options["student_noise"] else unlabeled
        logits = self.student(torch.cat([labeled.images, student_unlabeled]))
        loss_sup = segmentation_loss(logits[:num_labeled], labeled.masks)
        loss_consistency, extras = self.consistency_loss(logits[num_labeled:], unlabeled, step, total_steps)
        return step_losses(loss_sup, loss_consistency, self.consistency_weight(step, total_steps), **extras)

    def consistency_weight(self, step: int, total_steps: int) -> float:
        """``consistency`` times the ramp-up; 0 before ``consistency_start`` of the run."""
        if step < round(self.options["consistency_start"] * total_steps):
            return 0.0
        return self.options["consistency"] * self.rampup(step, total_steps)

    def consistency_loss(
        self, student_logits: Tensor, unlabeled: Tensor, step: int, total_steps: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Softmax MSE to the teacher on independently noised unlabelled images; extra log entries."""
        with torch.no_grad():
            teacher_logits = self.teacher(self.noisy(unlabeled))
        return softmax_mse(student_logits, teacher_logits), {}

    def on_step_end(self, step: int) -> None:
        ema_update(self.teacher, self.student, ema_alpha(step, self.options["ema_decay"]))

    def prediction_names(self) -> tuple[str, ...]:
        return EVAL_MODES

    def named_predictions(self, images: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        networks = {"student": self.student, "teacher": self.teacher}
        return {name: networks[name](images) for name in names}
