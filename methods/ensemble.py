"""Combining the predictions of several decoders or networks into one."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def mean_probabilities(logits: Sequence[Tensor]) -> Tensor:
    """Mean of the members' softmax maps, (B, C, H, W) in float32."""
    return torch.stack([member.float().softmax(1) for member in logits]).mean(0)


def ensemble_logits(logits: Sequence[Tensor]) -> Tensor:
    """log of the mean softmax: logits whose softmax is exactly the ensemble's probabilities.

    Evaluation only uses their argmax, which is the argmax of the mean probabilities.
    """
    probs = mean_probabilities(logits)
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
