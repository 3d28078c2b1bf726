"""Element-wise dropout whose CPU mask is drawn as gaps between dropped positions.

``nn.Dropout`` on the CPU draws one Bernoulli variate per element from a single serial random
stream, whatever the thread count, which makes it a visible part of a UAPS step at the paper
U-Net's first levels. Independent
Bernoulli(p) drops are exactly the positions whose gaps are independent Geometric(p) variates
(trials up to and including the next drop), so drawing the gaps needs ~p·n variates instead of n
(timings in docs/performance.md).

Same distribution and scaling (kept values x / (1 - p), in the input's dtype, as ``nn.Dropout``),
but a different random stream: the same seed gives a different mask than ``nn.Dropout`` does.
On CUDA, where torch's fused dropout is fast, it is ``nn.Dropout`` unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MARGIN_SIGMAS = 6.0  # gaps drawn per round: mean drop count plus this many standard deviations


def dropped_positions(count: int, p: float) -> Tensor:
    """Indices in ``[0, count)`` each dropped independently with probability ``p``: sorted int64.

    Draws Geometric(p) gaps (support 1, 2, ...) in float64, enough to pass ``count`` with
    overwhelming probability (``MARGIN_SIGMAS`` standard deviations above the mean), and draws
    more in the rare case they fall short.
    """
    mean = count * p
    chunk = max(16, int(mean + MARGIN_SIGMAS * math.sqrt(mean * (1 - p))))
    rounds, last = [], -1.0
    while last < count:
        steps = torch.empty(chunk, dtype=torch.float64).geometric_(p).cumsum_(0).add_(last)
        rounds.append(steps)
        last = float(steps[-1])
    ends = rounds[0] if len(rounds) == 1 else torch.cat(rounds)  # one round almost always: no copy
    return ends[: int(torch.searchsorted(ends, float(count)))].long()


def dropout_mask(like: Tensor, p: float) -> Tensor:
    """0 where dropped, 1 / (1 - p) elsewhere; ``like``'s shape, dtype and memory layout.

    Positions count in memory order, as ``bernoulli_`` fills a tensor, so the mask of a
    channels-last tensor is channels-last too. ``like`` must be dense (contiguous in some layout).
    """
    flat = torch.full((like.numel(),), 1.0 / (1.0 - p), dtype=like.dtype, device=like.device)
    flat.index_fill_(0, dropped_positions(like.numel(), p).to(like.device), 0.0)
    return flat.as_strided(like.shape, like.stride())


class GapDropout(nn.Dropout):
    """``nn.Dropout`` (element-wise, train mode only) with the mask of ``dropout_mask`` on the CPU."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or not 0 < self.p < 1 or x.device.type != "cpu" or not _dense(x):
            return F.dropout(x, self.p, self.training, self.inplace)
        mask = dropout_mask(x, self.p)
        return x.mul_(mask) if self.inplace else x * mask


def _dense(x: Tensor) -> bool:
    """Whether ``x`` fills its storage without gaps in one of the layouts ``dropout_mask`` reproduces."""
    return x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
