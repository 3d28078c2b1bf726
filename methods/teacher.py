"""EMA-teacher machinery shared by Mean Teacher and UA-MT, and their Gaussian input noise.

* ``frozen_copy``: the teacher starts as an exact copy of the student with every parameter set to
  ``requires_grad=False``, so it never receives gradients and the runner (which optimises the
  parameters with ``requires_grad``) never hands it to the optimiser. Being a submodule of the
  method, it is moved with ``.to()`` and saved in ``state_dict()``, so checkpoints restore it.
* ``ema_update``: parameters follow theta_t <- a * theta_t + (1 - a) * theta_s with
  a = ``ema_alpha(step, decay)`` = min(1 - 1 / (step + 1), decay), the warm-up of the Mean Teacher
  and SSL4MIS code ("use the true average until the exponential average is more correct"): at
  step 0 the teacher becomes the student, then the plain average of the students so far, until
  the average's weight reaches ``decay`` (step 99 for 0.99).
* Buffers (BatchNorm running mean/var and batch counters) are not averaged but copied from the
  student at every update. The teacher runs in train mode during training (as in SSL4MIS, whose
  EMA model is never put in eval mode), so BatchNorm normalises with batch statistics there and
  the buffers only matter when the teacher is evaluated; copying gives it the student's running
  statistics, which its own train-mode passes would otherwise overwrite with statistics of noisy
  unlabelled batches only (what SSL4MIS's teacher accumulates).
* ``input_noise``: clamp(N(0, 1) * std, -clip, clip), SSL4MIS's teacher-input noise, drawn
  contiguous whatever the images' layout (``standard_normal_like``).
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .networks import is_channels_last


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters never require gradients."""
    teacher = copy.deepcopy(module)
    teacher.requires_grad_(False)
    return teacher


def ema_alpha(step: int, decay: float) -> float:
    """Weight of the old teacher at (0-based) ``step``: min(1 - 1 / (step + 1), decay)."""
    return min(1.0 - 1.0 / (step + 1), decay)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """theta_t <- alpha * theta_t + (1 - alpha) * theta_s for parameters; buffers copied."""
    for teacher_param, student_param in zip(teacher.parameters(), student.parameters(), strict=True):
        teacher_param.mul_(alpha).add_(student_param.detach(), alpha=1.0 - alpha)
    for teacher_buffer, student_buffer in zip(teacher.buffers(), student.buffers(), strict=True):
        teacher_buffer.copy_(student_buffer)


def standard_normal_like(images: Tensor) -> Tensor:
    """N(0, 1) draws shaped and laid out like ``images``, always generated into contiguous memory.

    torch's CPU ``normal_`` is serial on a channels-last tensor (about 8x slower than on
    contiguous memory for 8 x 3 x 128²), and UA-MT draws ten such noises per step. A channels-last request
    is drawn as a contiguous N x H x W x C tensor and viewed as N x C x H x W.
    """
    if is_channels_last(images):
        batch, channels, height, width = images.shape
        noise = torch.randn(batch, height, width, channels, dtype=images.dtype, device=images.device)
        return noise.permute(0, 3, 1, 2)
    return torch.randn_like(images)


def input_noise(images: Tensor, std: float, clip: float) -> Tensor:
    """``images`` plus clamp(N(0, 1) * std, -clip, clip), drawn independently per pixel."""
    return images + standard_normal_like(images).mul_(std).clamp_(-clip, clip)
