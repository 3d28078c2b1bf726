"""``data_parallel: 2`` against the released code's ``nn.DataParallel`` over two GPUs, built here on one device.

``nn.DataParallel(module, device_ids=[0, 1])`` scatters the input into ``Tensor.chunk(2)`` along dim 0,
runs chunk k through replica k (``nn.parallel.replicate``) and gathers the outputs (``torch.cat``
along dim 0, tuples and lists element by element). ``replicate`` gives every replica the module's
parameters through ``Broadcast``, whose backward adds the replicas' gradients into the module's,
and broadcasts the buffers: the first device gets the module's own buffer tensors
(``broadcast_coalesced`` returns its inputs there), the others copies, so BatchNorm's running
statistics are updated in place by replica 0 alone. ``replicas`` below builds the same on one
device: replica 0 is the module itself, replica 1 a deep copy that holds the module's parameter
objects and copies of its buffers. ``data_parallel`` runs the chunks through them in turn, from the
same random state as the method, so dropout and perturbation draws match.

The released code wraps UAPS's whole network (``UAPS_model.py:13``) and each simEps network
(``simEps_model.py:22-24``); the references below wrap the same modules, the methods run with
``data_parallel: 1``, and outputs, every logged loss, gradients and BatchNorm buffers must equal
those of the methods with ``data_parallel: 2`` (their ``authors`` value).
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from defectseg.benchmarks.engine.recipes import RECIPES
from defectseg.methods import LabeledBatch, build_method, get_method_class
from defectseg.methods.data_parallel import parallel_forward
from defectseg.methods.networks import build_network

torch.set_num_threads(1)
NUM_CLASSES, SIZE = 4, 32


def replicas(module: nn.Module, count: int) -> list[nn.Module]:
    """``nn.parallel.replicate(module, devices)`` for ``count`` devices that are all this one."""
    copies = [module]
    for _ in range(count - 1):
        replica = copy.deepcopy(module)
        for mine, original in zip(replica.modules(), module.modules()):
            mine._parameters.update(original._parameters)  # shared parameters: gradients add up on the module's
        copies.append(replica)
    return copies


def concatenated(outputs: list[Any]) -> Any:
    """``nn.parallel.gather``: tensors concatenated along dim 0, tuples and lists element by element."""
    if isinstance(outputs[0], Tensor):
        return torch.cat(outputs)
    return type(outputs[0])(concatenated(list(parts)) for parts in zip(*outputs))


def data_parallel(function: Callable[[nn.Module, Tensor], Any], module: nn.Module, inputs: Tensor, devices: int = 2) -> Any:
    """What ``nn.DataParallel(module, range(devices))`` computes for ``function(module, inputs)``: scatter, replicate, apply, gather."""
    chunks = inputs.chunk(devices)
    return concatenated([function(replica, chunk) for replica, chunk in zip(replicas(module, len(chunks)), chunks)])


class DataParallelOnOneDevice(nn.Module):
    """``nn.DataParallel(module, device_ids=[0, 1])`` with both devices this one."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, inputs: Tensor) -> Any:
        return data_parallel(lambda replica, chunk: replica(chunk), self.module, inputs)


def authors_method(name: str, dataset: str, devices: int) -> nn.Module:
    options = {**RECIPES["authors"].method_options(get_method_class(name), dataset), "data_parallel": devices}
    torch.manual_seed(0)
    return build_method(name, options, 1, NUM_CLASSES)


def batches(step: int, size: int = 5) -> tuple[LabeledBatch, Tensor]:
    """A labelled and an unlabelled batch of ``size`` images (odd: chunks of 3 and 2, as ``scatter`` makes them)."""
    generator = torch.Generator().manual_seed(step)
    images = torch.randn(size, 1, SIZE, SIZE, generator=generator)
    masks = torch.randint(0, NUM_CLASSES, (size, SIZE, SIZE), generator=generator)
    return LabeledBatch(images, masks), torch.randn(size, 1, SIZE, SIZE, generator=generator)


def train_both(ours: nn.Module, reference: nn.Module, steps: int = 2) -> None:
    """Adam steps of both methods from the same random state; every loss, gradient and buffer must be equal."""
    optimizers = [torch.optim.Adam(method.parameters(), lr=1e-3) for method in (ours, reference)]
    for step in range(steps):
        losses = []
        for method, optimizer in zip((ours, reference), optimizers):
            torch.manual_seed(100 + step)
            out = method.training_step(*batches(step), step, 10)
            optimizer.zero_grad()
            out["loss"].backward()
            losses.append(out)
        assert losses[0].keys() == losses[1].keys()
        for key in losses[0]:
            torch.testing.assert_close(losses[0][key], losses[1][key], rtol=1e-6, atol=0, msg=key)
        for (name, mine), theirs in zip(ours.named_parameters(), reference.parameters()):
            torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-5, atol=1e-8, msg=name)
        for optimizer in optimizers:
            optimizer.step()
    for (name, mine), theirs in zip(ours.named_buffers(), reference.buffers()):
        assert torch.equal(mine, theirs), name  # running statistics from the first half only, as replica 0


def test_uaps_equals_its_network_in_data_parallel_over_two_devices():
    ours, reference = authors_method("uaps", "neu", 2), authors_method("uaps", "neu", 1)
    reference.net = DataParallelOnOneDevice(reference.net)  # UAPS_model.py:13: nn.DataParallel(model)
    ours.train(), reference.train()
    train_both(ours, reference)


def test_simeps_equals_each_network_in_data_parallel_over_two_devices(monkeypatch):
    """On DAGM, where the similarity loss compares the gathered bottleneck and last decoder features too."""
    ours, reference = authors_method("simeps", "dagm", 2), authors_method("simeps", "dagm", 1)
    forward = reference._forward  # the network's forward of the released code: features and logits
    monkeypatch.setattr(reference, "_forward", lambda net, images: data_parallel(forward, net, images))
    ours.train(), reference.train()
    train_both(ours, reference)


@pytest.mark.parametrize("size", [4, 5])
def test_each_chunk_is_normalised_alone_and_running_statistics_follow_the_first(size):
    torch.manual_seed(0)
    net = build_network("unet", 1, NUM_CLASSES).train()
    first, second = copy.deepcopy(net), copy.deepcopy(net)
    images = torch.randn(size, 1, SIZE, SIZE)
    half = (size + 1) // 2  # Tensor.chunk: the first chunk takes the remainder
    torch.manual_seed(1)
    split = parallel_forward(net, net, images, 2)
    torch.manual_seed(1)
    expected = torch.cat([first(images[:half]), second(images[half:])])
    assert torch.equal(split, expected)
    for (name, buffer), from_first in zip(net.named_buffers(), first.buffers()):
        assert torch.equal(buffer, from_first), name
    torch.manual_seed(1)
    assert not torch.allclose(split, copy.deepcopy(net)(images), atol=1e-3)  # the whole batch normalises differently


def test_eval_mode_runs_the_batch_whole():
    torch.manual_seed(0)
    net = build_network("unet", 1, NUM_CLASSES).eval()
    images = torch.randn(4, 1, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(parallel_forward(net, net, images, 2), net(images))
