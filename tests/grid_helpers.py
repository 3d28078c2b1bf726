"""Helpers of the grid tests: the test method plugin and tiny, fast profiles."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from defectseg.benchmarks.engine.config import load_profile
from defectseg.methods.registry import load_plugin

from helpers import restored_registry

REPO = Path(__file__).resolve().parents[1]
PLUGIN = Path(__file__).resolve().parent / "grid_plugin_methods.py"
# a few steps at 32 px on 40 synthetic images, one CPU thread (robust on busy cores): about a
# second per run on an idle core
TINY = (
    "train.num_threads=1",
    "train.iterations=6",
    "train.val_every=2",
    "train.checkpoint_every=2",
    "train.log_every=2",
    "train.image_size=32",
    "train.batch_size=2",
    "train.unlabeled_batch_size=2",
    "dataset_options.synthetic.num_images=40",
)


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    """Runs in this process set torch's thread count; give the next test the count it had."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@contextmanager
def plugin_methods() -> Iterator[list[str]]:
    """Register the test methods in this process for the duration, then remove them again."""
    with restored_registry():
        yield load_plugin(PLUGIN)


def tiny_profile(*overrides: str, profile: str = "smoke") -> dict:
    return load_profile(profile, [*TINY, *overrides])
