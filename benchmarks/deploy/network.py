"""A trained run's network ready for new images: its best checkpoint, its classes and its input preprocessing."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from defectseg.datasets import get_dataset
from defectseg.datasets.cache import resize_image
from defectseg.methods import Method

from defectseg.benchmarks.engine.environment import resolve_device
from defectseg.benchmarks.engine.evaluate import prepare_images
from defectseg.benchmarks.engine.trained import load_best, read_run_config


@dataclass(frozen=True)
class Network:
    """The method of a run with its ``best.pt``, in eval mode on ``device``, and what its input must be."""

    run_dir: Path
    config: dict[str, Any]
    method: Method
    class_names: tuple[str, ...]
    in_channels: int
    device: torch.device
    channels_last: bool = False  # weights and inputs channels-last: faster on the CPU (predict), not for export

    @property
    def image_size(self) -> int:
        return int(self.config["train"]["image_size"])

    @property
    def normalization(self) -> str:
        return self.config["train"]["normalization"]

    @property
    def resize(self) -> str:
        return self.config["train"]["resize"]

    def inputs(self, images: Sequence[np.ndarray]) -> Tensor:
        """uint8 images (H, W, in_channels) of any sizes -> the float batch (B, C, S, S) the network takes:
        each resized to the training size as in training (``train.resize``), then normalised as in training."""
        batch = torch.from_numpy(np.stack([resize_image(image, self.image_size, self.resize) for image in images]))
        return prepare_images(batch, self.device, channels_last=self.channels_last, normalization=self.normalization)

    def describe(self) -> str:
        c = self.config
        return f"{c['method']} on {c['dataset']}, ratio {c['ratio']:g}, seed {c['seed']} ({self.run_dir})"


def load_network(run_dir: Path, data_root: Path | None = None, device: str = "cpu", channels_last: bool = False) -> Network:
    """The network of a run folder; its classes and channels come from its dataset's declaration (not its images)."""
    config = read_run_config(run_dir)
    dataset = get_dataset(config["dataset"], data_root, **config["dataset_options"])
    torch_device = resolve_device(device)
    method = load_best(run_dir, config, dataset.in_channels, dataset.num_classes, torch_device)
    if channels_last:
        method.to(memory_format=torch.channels_last)
    return Network(Path(run_dir), config, method, tuple(dataset.class_names), dataset.in_channels, torch_device, channels_last)
