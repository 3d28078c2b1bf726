"""nn.DataParallel's training forward pass over several devices, computed on one (method option ``data_parallel``).

The UAPS and simEps scripts wrap their networks in ``nn.DataParallel`` over two GPUs. Its forward
pass scatters the batch into ``Tensor.chunk(devices)`` chunks along dim 0, runs chunk k through
replica k of the module (``nn.parallel.replicate``) and gathers the outputs, concatenated along dim
0 (tuples and lists element by element). The replicas share the parameters (their gradients add up
on the module's own), but everything else is per chunk: BatchNorm normalises each chunk with its
own statistics, and every random draw (dropout, feature noise, the feature-dropout threshold) is
made per chunk. Replica 0 holds the module's own buffers, the others copies that are discarded, so
the running statistics follow the first chunk alone.

``parallel_forward`` computes the same on one device: the chunks go one after another through the
module itself, its BatchNorm layers updating their running statistics on the first chunk only. In
eval mode chunking changes nothing (BatchNorm uses its running statistics, the perturbations are
off), so there the batch runs whole. tests/test_data_parallel.py checks outputs, losses, gradients
and buffers against replicas built as ``replicate`` builds them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from defectseg.options import Option, integer

T = TypeVar("T")
# devices the forward pass is split over; 1: the whole batch at once (no emulation)
DATA_PARALLEL: Option = integer(1, minimum=1)


def parallel_forward(forward: Callable[[Tensor], T], module: nn.Module, inputs: Tensor, devices: int) -> T:
    """``forward(inputs)`` as ``nn.DataParallel`` over ``devices`` devices computes it in training mode, ``module``
    being the module that ``forward`` runs (whose BatchNorm layers are the replicas')."""
    if devices == 1 or not module.training:
        return forward(inputs)
    first, *others = inputs.chunk(devices)
    outputs = [forward(first)]
    with running_statistics_frozen(module):
        outputs += [forward(chunk) for chunk in others]
    return gather(outputs)


@contextmanager
def running_statistics_frozen(module: nn.Module) -> Iterator[None]:
    """Inside, no BatchNorm layer of ``module`` updates its running statistics or batch count (in training mode
    each still normalises with the batch's statistics)."""
    layers = [layer for layer in module.modules() if isinstance(layer, _BatchNorm) and layer.track_running_stats]
    for layer in layers:
        layer.track_running_stats = False
    try:
        yield
    finally:
        for layer in layers:
            layer.track_running_stats = True


def gather(outputs: Sequence[Any]) -> Any:
    """The chunks' outputs concatenated along dim 0, tuples and lists element by element (``nn.parallel.gather``)."""
    first = outputs[0]
    if isinstance(first, Tensor):
        return torch.cat(list(outputs))
    return type(first)(gather(parts) for parts in zip(*outputs))
