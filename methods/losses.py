"""Losses shared by all methods. Every loss computes in float32, whatever the autocast dtype.

Soft Dice has two forms (``dice_form``), both per class over the whole batch (background
included) and averaged over classes, with p the softmax and g the one-hot target:

* ``"ssl4mis"`` (default): 1 − mean_c (2 Σ p·g + 1e-5) / (Σ p² + Σ g + 1e-5), the ``DiceLoss`` of
  SSL4MIS (``code/utils/losses.py``), used by its Mean Teacher, UA-MT, CCT, CPS, URPC and cross
  teaching scripts;
* ``"uaps"``: 1 − mean_c 2 Σ p·g / (Σ p + Σ g + 1e-7), the ``dice_loss`` of the UAPS and simEps
  code (``utilities/pytorch_losses.py``): linear cardinality, ε in the denominator only.

docs/fidelity.md says which method uses which form under which recipe.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def hard_labels(scores: Tensor) -> Tensor:
    """Index of the largest class score of every pixel: (B, C, H, W) -> (B, H, W) int64.

    The same as ``scores.argmax(1)`` (first index on ties), written as ``max(1).indices`` because
    torch 2.14's CPU ``argmax`` over the channel dimension of a contiguous NCHW tensor is ~25x
    slower (8 x 4 x 128 x 128 float32 scores).
    """
    return scores.max(dim=1).indices


def _float32_nchw(logits: Tensor) -> Tensor:
    """Logits as contiguous float32: the losses' per-pixel ops run ~1.5x faster on it than channels-last."""
    return logits.to(torch.float32, memory_format=torch.contiguous_format)


DICE_FORMS = ("ssl4mis", "uaps")
SSL4MIS_DICE_EPS = 1e-5  # SSL4MIS DiceLoss: smooth, in numerator and denominator
UAPS_DICE_EPS = 1e-7  # UAPS utilities/pytorch_losses.dice_loss: eps, in the denominator only


def _dice_from_probs(probs: Tensor, target: Tensor, pixel_weight: Tensor | None, dice_form: str) -> Tensor:
    one_hot = torch.zeros_like(probs).scatter_(1, target.long().unsqueeze(1), 1.0)
    if pixel_weight is not None:
        weight = pixel_weight.float().unsqueeze(1)
        probs, one_hot = probs * weight, one_hot * weight
    dims = (0, 2, 3)
    intersection = (probs * one_hot).sum(dims)
    if dice_form == "uaps":
        cardinality = probs.sum(dims) + one_hot.sum(dims)
        return 1.0 - (2.0 * intersection / (cardinality + UAPS_DICE_EPS)).mean()
    if dice_form != "ssl4mis":
        raise ValueError(f"unknown dice_form {dice_form!r}; valid: {list(DICE_FORMS)}")
    denominator = (probs * probs).sum(dims) + one_hot.sum(dims)
    return 1.0 - ((2.0 * intersection + SSL4MIS_DICE_EPS) / (denominator + SSL4MIS_DICE_EPS)).mean()


def _cross_entropy_from_log_probs(log_probs: Tensor, target: Tensor, pixel_weight: Tensor | None) -> Tensor:
    if pixel_weight is None:
        return F.nll_loss(log_probs, target.long())
    weight = pixel_weight.float()
    per_pixel = F.nll_loss(log_probs, target.long(), reduction="none")
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1e-8)


def dice_loss(logits: Tensor, target: Tensor, pixel_weight: Tensor | None = None, dice_form: str = "ssl4mis") -> Tensor:
    """Soft Dice loss over all classes (background included), averaged over classes.

    ``logits``: (B, C, H, W); ``target``: (B, H, W) class ids; optional ``pixel_weight``: (B, H, W)
    scales each pixel's probabilities and one-hot target. Dice is computed per class over the whole
    batch, in ``dice_form`` (module docstring).
    """
    return _dice_from_probs(_float32_nchw(logits).softmax(dim=1), target, pixel_weight, dice_form)


def cross_entropy(logits: Tensor, target: Tensor, pixel_weight: Tensor | None = None) -> Tensor:
    """Pixel-wise cross-entropy; with ``pixel_weight`` (B, H, W) a weighted mean over pixels."""
    return _cross_entropy_from_log_probs(log_probabilities(logits), target, pixel_weight)


def log_probabilities(logits: Tensor) -> Tensor:
    """Log-softmax over classes in float32 and channels-first layout, the input of every loss here."""
    return _float32_nchw(logits).log_softmax(dim=1)


def segmentation_loss(
    logits: Tensor, target: Tensor, pixel_weight: Tensor | None = None, dice_form: str = "ssl4mis"
) -> Tensor:
    """The papers' supervised loss 0.5 * (CE + Dice), optionally weighted per pixel (one softmax for both)."""
    return segmentation_loss_from_log_probs(log_probabilities(logits), target, pixel_weight, dice_form)


def segmentation_loss_from_log_probs(
    log_probs: Tensor, target: Tensor, pixel_weight: Tensor | None = None, dice_form: str = "ssl4mis"
) -> Tensor:
    """``segmentation_loss`` of ``log_probabilities(logits)``, for callers that need them for more than one loss."""
    cross = _cross_entropy_from_log_probs(log_probs, target, pixel_weight)
    return 0.5 * (cross + _dice_from_probs(log_probs.exp(), target, pixel_weight, dice_form))


def pseudo_label_loss(
    logits: Tensor, pseudo_label: Tensor, pixel_weight: Tensor | None = None, dice_form: str = "ssl4mis"
) -> Tensor:
    """``segmentation_loss`` against a hard pseudo-label; label and weight never carry gradient."""
    return pseudo_label_loss_from_log_probs(log_probabilities(logits), pseudo_label, pixel_weight, dice_form)


def pseudo_label_loss_from_log_probs(
    log_probs: Tensor, pseudo_label: Tensor, pixel_weight: Tensor | None = None, dice_form: str = "ssl4mis"
) -> Tensor:
    """``pseudo_label_loss`` of ``log_probabilities(logits)``."""
    weight = None if pixel_weight is None else pixel_weight.detach()
    return segmentation_loss_from_log_probs(log_probs, pseudo_label.detach(), weight, dice_form)


def softmax_mse(student_logits: Tensor, teacher_logits: Tensor, detach_teacher: bool = True) -> Tensor:
    """Mean squared error between two softmax maps; the teacher side is detached unless ``detach_teacher`` is False."""
    teacher = teacher_logits.detach() if detach_teacher else teacher_logits
    return F.mse_loss(student_logits.float().softmax(1), teacher.float().softmax(1))


def kl_to_mean(members: Sequence[Tensor], mean_probs: Tensor, eps: float = 1e-8) -> list[Tensor]:
    """Per-pixel KL(mean || p) = sum_c mean * (log mean - log p) for each member's probabilities p.

    (B, C, H, W) each -> (B, H, W) each; log(mean + eps) is computed once for all members.
    """
    mean_probs = mean_probs.float()
    log_mean = torch.log(mean_probs + eps)
    return [(mean_probs * (log_mean - torch.log(p.float() + eps))).sum(dim=1) for p in members]
