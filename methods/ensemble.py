"""Combining the predictions of several decoders or networks into one."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

ENSEMBLE = "ensemble"  # the name of the members' ensemble among named predictions


def mean_probabilities(logits: Sequence[Tensor]) -> Tensor:
    """Mean of the members' softmax maps, (B, C, H, W) in float32."""
    return torch.stack([member.float().softmax(1) for member in logits]).mean(0)


def ensemble_logits(logits: Sequence[Tensor]) -> Tensor:
    """log of the mean softmax: logits whose softmax is exactly the ensemble's probabilities.

    Evaluation only uses their argmax, which is the argmax of the mean probabilities.
    """
    probs = mean_probabilities(logits)
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


def member_predictions(members: Mapping[str, Callable[[Tensor], Tensor]], images: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
    """The predictions ``names`` among each member's logits and ``"ensemble"`` (``ensemble_logits`` of all members).

    Runs each member at most once, and only the members that ``names`` need, in ``members`` order.
    """
    needed = [member for member in members if member in names or ENSEMBLE in names]
    logits = {member: members[member](images) for member in needed}
    if ENSEMBLE in names:
        logits[ENSEMBLE] = ensemble_logits(list(logits.values()))
    return {name: logits[name] for name in names}
