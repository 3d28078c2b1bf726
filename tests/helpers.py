"""Shared test helpers: train a method in the smoke profile and compare it with an untrained model."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from defectseg.benchmarks.engine.config import load_profile, resolve_run
from defectseg.benchmarks.engine.evaluate import evaluate
from defectseg.benchmarks.engine.run import RunConfig, Workspace
from defectseg.benchmarks.engine.run_data import load_run_data
from defectseg.benchmarks.engine.runner import train_run
from defectseg.methods import LabeledBatch, build_method, registry

SMOKE_DATASET = "synthetic"
SMOKE_RATIO = 0.2


def smoke_config(method: str, overrides: tuple[str, ...] = (), seed: int = 0) -> dict:
    return resolve_run(load_profile("smoke", list(overrides)), SMOKE_DATASET, SMOKE_RATIO, method, seed)


def train_smoke(method: str, results_dir: Path, overrides: tuple[str, ...] = (), seed: int = 0) -> dict:
    """Train ``method`` in the smoke profile on CPU; returns its metrics.json content."""
    return train_run(RunConfig(smoke_config(method, overrides, seed)), smoke_workspace(results_dir), progress=False)


def smoke_workspace(results_dir: Path) -> Workspace:
    """``results_dir`` with its cache, on the CPU: where the tests train."""
    return Workspace(results_dir, cache_dir=results_dir / "cache", device="cpu")


def untrained_miou(method: str, results_dir: Path, overrides: tuple[str, ...] = (), seed: int = 0) -> float:
    """Standard test mIoU of the same method, freshly initialised (same seed), on the same split."""
    run = RunConfig(smoke_config(method, overrides, seed))
    data = load_run_data(run, smoke_workspace(results_dir))
    torch.manual_seed(seed)
    model = build_method(method, run.method_options, data.in_channels, len(data.class_names))
    metrics = evaluate(model, data.test_images, data.test_masks, data.class_names, torch.device("cpu"))
    return metrics["standard"]["miou"] or 0.0


def tiny_batch(num_classes: int = 3, size: int = 32) -> tuple[LabeledBatch, torch.Tensor]:
    """A seeded labelled batch of 2 one-channel images and an unlabelled batch of 2."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 1, size, size, generator=generator)
    masks = torch.randint(0, num_classes, (2, size, size), generator=generator)
    return LabeledBatch(images, masks), torch.randn(2, 1, size, size, generator=generator)


def interrupt_at(original, step_to_fail: int):
    """A replacement for a Method's ``on_step_end`` that runs ``original``, then raises KeyboardInterrupt at ``step_to_fail``."""
    def on_step_end(self, step: int) -> None:
        original(self, step)
        if step == step_to_fail:
            raise KeyboardInterrupt

    return on_step_end


@contextmanager
def restored_registry() -> Iterator[None]:
    """Inside, plugins may register methods; afterwards the registry and the imported plugin modules are as before."""
    methods, plugins, modules = dict(registry._METHODS), dict(registry._PLUGINS), set(sys.modules)
    try:
        yield
    finally:
        registry._METHODS.clear()
        registry._METHODS.update(methods)
        registry._PLUGINS.clear()
        registry._PLUGINS.update(plugins)
        for name in set(sys.modules) - modules:
            if name.startswith("defectseg_plugin_"):  # the module names methods.registry.load_plugin gives
                del sys.modules[name]
