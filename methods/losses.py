"""Losses shared by all methods. Every loss computes in float32, whatever the autocast dtype."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def dice_loss(logits: Tensor, target: Tensor, pixel_weight: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Soft Dice loss over all classes (background included), averaged over classes.

    ``logits``: (B, C, H, W); ``target``: (B, H, W) class ids; optional ``pixel_weight``: (B, H, W)
    scales each pixel's probabilities and one-hot target. Dice is computed per class over the whole
    batch, as in the SSL4MIS code the UAPS authors build on.
    """
    probs = logits.float().softmax(dim=1)
    one_hot = F.one_hot(target.long(), probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    if pixel_weight is not None:
        weight = pixel_weight.float().unsqueeze(1)
        probs, one_hot = probs * weight, one_hot * weight
    dims = (0, 2, 3)
    intersection = (probs * one_hot).sum(dims)
    denominator = (probs * probs).sum(dims) + one_hot.sum(dims)
    return 1.0 - ((2.0 * intersection + eps) / (denominator + eps)).mean()


def cross_entropy(logits: Tensor, target: Tensor, pixel_weight: Tensor | None = None) -> Tensor:
    """Pixel-wise cross-entropy; with ``pixel_weight`` (B, H, W) a weighted mean over pixels."""
    if pixel_weight is None:
        return F.cross_entropy(logits.float(), target.long())
    weight = pixel_weight.float()
    per_pixel = F.cross_entropy(logits.float(), target.long(), reduction="none")
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1e-8)


def segmentation_loss(logits: Tensor, target: Tensor, pixel_weight: Tensor | None = None) -> Tensor:
    """The papers' supervised loss 0.5 * (CE + Dice), optionally weighted per pixel."""
    return 0.5 * (cross_entropy(logits, target, pixel_weight) + dice_loss(logits, target, pixel_weight))


def pseudo_label_loss(logits: Tensor, pseudo_label: Tensor, pixel_weight: Tensor | None = None) -> Tensor:
    """``segmentation_loss`` against a hard pseudo-label; label and weight never carry gradient."""
    weight = None if pixel_weight is None else pixel_weight.detach()
    return segmentation_loss(logits, pseudo_label.detach(), weight)


def softmax_mse(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Mean squared error between two softmax maps; the teacher side is detached."""
    return F.mse_loss(student_logits.float().softmax(1), teacher_logits.detach().float().softmax(1))


def kl_to_mean(probs: Tensor, mean_probs: Tensor, eps: float = 1e-8) -> Tensor:
    """Per-pixel KL(mean || p) = sum_c mean * (log mean - log p); (B, C, H, W) -> (B, H, W)."""
    mean_probs = mean_probs.float()
    return (mean_probs * (torch.log(mean_probs + eps) - torch.log(probs.float() + eps))).sum(dim=1)
