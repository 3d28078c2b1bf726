"""One run as typed objects, built once: its configuration, its train settings and its workspace.

``RunConfig`` wraps the resolved run config of ``config.resolve_run``: that dict is what is hashed
(``config.config_hash``) and written to ``config.yaml``; the object computes the hash, the label
(``layout.run_label``) and the train settings once and reads the config's keys as attributes.
``TrainSettings`` holds one attribute per ``train`` key; ``Workspace`` says where a run reads and
writes (results folder, data root, decoded-array cache) and on which device it trains.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from defectseg.datasets.base import resolve_data_root

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.config import config_hash, registered_method
from defectseg.benchmarks.engine.environment import resolve_precision
from defectseg.benchmarks.engine.evaluate import EvalSettings


@dataclass(frozen=True)
class TrainSettings:
    """A run's ``train`` settings (``config.TRAIN_OPTIONS`` says what each means and accepts)."""

    iterations: int
    batch_size: int
    unlabeled_batch_size: int
    lr: float
    weight_decay: float
    image_size: int
    resize: str
    augment: bool
    augmentation: str
    normalization: str
    lr_schedule: str
    lr_patience: int
    lr_factor: float
    min_lr: float
    val_every: int
    val_max_images: int | None
    record_every: int | None
    checkpoint_every: int
    log_every: int
    eval_batch_size: int
    precision: str
    channels_last: bool
    num_threads: int | None

    @classmethod
    def of(cls, train: dict[str, Any]) -> TrainSettings:
        """The settings of a complete ``train`` mapping (a TypeError names a missing or unknown key)."""
        return cls(**train)

    def resolved(self, device: torch.device) -> TrainSettings:
        """These settings with ``precision`` resolved for ``device`` (``environment.resolve_precision``)."""
        return replace(self, precision=resolve_precision(self.precision, device))

    @property
    def evaluation(self) -> EvalSettings:
        """How this run evaluates: its evaluation batch size, precision, memory format and normalization."""
        return EvalSettings(self.eval_batch_size, self.precision, self.channels_last, self.normalization)


@dataclass(frozen=True)
class RunConfig:
    """A resolved run config (``config``, hashed and written as it is) with its hash, label and train settings."""

    config: dict[str, Any]
    hash: str = field(init=False)
    label: str = field(init=False)
    train: TrainSettings = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash", config_hash(self.config))
        object.__setattr__(self, "label", layout.run_label(self.config))
        object.__setattr__(self, "train", TrainSettings.of(self.config["train"]))

    @property
    def profile(self) -> str:
        return self.config["profile"]

    @property
    def dataset(self) -> str:
        return self.config["dataset"]

    @property
    def ratio(self) -> float:
        return self.config["ratio"]

    @property
    def method(self) -> str:
        """The method's name in the profile: a registered method or a variant."""
        return self.config["method"]

    @property
    def base_method(self) -> str:
        """The registered method the run builds (``config.registered_method``)."""
        return registered_method(self.config)

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def split_seed(self) -> int:
        return self.config["split_seed"]

    @property
    def method_options(self) -> dict[str, Any]:
        return self.config["method_options"]

    @property
    def dataset_options(self) -> dict[str, Any]:
        return self.config["dataset_options"]

    def directory(self, results_dir: Path) -> Path:
        """The run folder under ``results_dir`` (``layout.run_dir``)."""
        return layout.profile_dir(results_dir, self.profile) / self.label


@dataclass(frozen=True)
class Workspace:
    """Where runs read and write: results folder, data root (None: ``$DEFECTSEG_DATA_ROOT`` or ``data/``),
    decoded-array cache (None: none) and device name (``auto``, ``cpu``, ``cuda:N``)."""

    results_dir: Path
    data_root: Path | None = None
    cache_dir: Path | None = None
    device: str = "auto"

    def absolute(self) -> Workspace:
        """The same workspace with absolute paths and the data root resolved (what grid workers get)."""
        return replace(
            self,
            results_dir=Path(self.results_dir).resolve(),
            data_root=resolve_data_root(self.data_root).resolve(),
            cache_dir=None if self.cache_dir is None else Path(self.cache_dir).resolve(),
        )

    def run_dir(self, run: RunConfig) -> Path:
        """The folder of ``run`` in this workspace's results folder."""
        return run.directory(self.results_dir)
