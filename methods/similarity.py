"""Pairwise similarity maps of a batch (simEps): how alike the batch's images look to a network.

For outputs or features of shape (B, ...), flattened to F (B x K), the similarity map is the Gram
matrix G = F Fᵀ (B x B) with L2-normalised rows, as in the simEps code (``feature_sim``).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def similarity_map(outputs: Tensor) -> Tensor:
    """(B, ...) -> (B, B) row-normalised Gram matrix of the flattened outputs, in float32."""
    flat = outputs.float().flatten(1)
    return F.normalize(flat @ flat.t(), p=2, dim=1)


def similarity_consistency(a: Tensor, b: Tensor) -> Tensor:
    """MSE between two similarity maps, symmetric: each side is pulled towards the other, detached."""
    map_a, map_b = similarity_map(a), similarity_map(b)
    return 0.5 * (F.mse_loss(map_a, map_b.detach()) + F.mse_loss(map_a.detach(), map_b))
