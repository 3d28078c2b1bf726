"""The training loop of one run, and ``TrainState``: all that the loop changes, saved as one checkpoint.

``TrainState.state_dict()`` is the checkpoint (``last.pt``) and ``load_state_dict()`` restores it:
both walk the same list of parts (``TrainState.parts``), so what is saved is what is restored.
The format (the keys of ``CHECKPOINT_KEYS``, plus ``scheduler`` when the run has a learning-rate
schedule) is the one every earlier ``last.pt`` has, so interrupted runs resume across versions.
"""
from __future__ import annotations

import csv
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from defectseg.datasets.atomic import atomic_open
from defectseg.datasets.transforms import authors_augment, random_flip_rot90
from defectseg.methods import LabeledBatch, Method, build_method
from defectseg.methods.registry import check_step_output

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.evaluate import autocast, prediction_counts, prepare_images
from defectseg.benchmarks.engine.io import save_torch
from defectseg.benchmarks.engine.per_image import DEFAULT_PREDICTION, PixelCounts, selection_score
from defectseg.benchmarks.engine.run import RunConfig, TrainSettings
from defectseg.benchmarks.engine.run_data import RunData
from defectseg.benchmarks.engine.trajectory import Trajectory, read_trajectory, write_trajectory

CHECKPOINT_KEYS = ("config_hash", "method", "optimizer", "labeled_sampler", "unlabeled_sampler", "augment_generator", "rng", "state")
Scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the loss part and the step."""


class EpochSampler:
    """Indices of ``size`` items in shuffled epochs, ``batch_size`` at a time, resumable."""

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        self.size, self.batch_size = size, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.int64)

    def next(self) -> Tensor:
        while len(self.order) < self.batch_size:
            self.order = torch.cat([self.order, torch.randperm(self.size, generator=self.generator)])
        batch, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        return batch

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()


class TrainLog:
    """Append-only CSV of the training log, rewritten atomically; on resume, rows after the checkpoint are dropped."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        self.rows: list[dict] = []
        if resume_step > 0 and path.exists():
            with open(path, newline="") as handle:
                self.rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= resume_step]
        self._flush()

    def append(self, row: dict) -> None:
        self.rows.append(row)
        self._flush()

    def _flush(self) -> None:
        fields: list[str] = []
        for row in self.rows:
            fields += [key for key in row if key not in fields]
        with atomic_open(self.path, "w") as handle:  # a full disk leaves the previous log, not a truncated one
            writer = csv.DictWriter(handle, fieldnames=fields or ["step"])
            writer.writeheader()
            writer.writerows(self.rows)


def rng_state(device: torch.device) -> dict:
    """Every global RNG a method may draw from (torch, CUDA, numpy, Python), for exact resumes."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def seed_everything(seed: int) -> None:
    """Seed the global torch, numpy and Python RNGs."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def setup_training(method: Method, device: torch.device, train: TrainSettings) -> torch.optim.Optimizer:
    """Move ``method`` to ``device`` (channels-last if configured); its Adam over trainable parameters.

    Adam is the fused implementation (one kernel over all parameters): the same update, several
    times faster on the CPU for a method with hundreds of parameter tensors (docs/performance.md).
    """
    method.to(device)
    if train.channels_last:
        method.to(memory_format=torch.channels_last)
    return torch.optim.Adam(
        [p for p in method.parameters() if p.requires_grad], lr=train.lr, weight_decay=train.weight_decay, fused=True
    )


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainSettings) -> Scheduler | None:
    """The learning-rate schedule stepped at each validation: None (constant) or ReduceLROnPlateau.

    ``plateau`` cuts the rate by ``lr_factor`` once the validation mean Dice has not improved for
    ``lr_patience`` iterations, counted in validations (ceil(lr_patience / val_every)), as the UAPS
    code does per epoch (mode "max", ``min_lr``, torch's default relative threshold 1e-4).
    """
    if train.lr_schedule == "constant":
        return None
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=train.lr_factor, min_lr=train.min_lr,
        patience=math.ceil(train.lr_patience / train.val_every),
    )


def sample_batch(
    images: Tensor,
    masks: Tensor | None,
    sampler: EpochSampler,
    generator: torch.Generator,
    device: torch.device,
    train: TrainSettings,
) -> tuple[Tensor, Tensor | None]:
    """The sampler's next batch of uint8 rows, augmented as one batch, normalised and on ``device``."""
    index = sampler.next()
    x = images[index]
    y = None if masks is None else masks[index]
    if train.augment:
        augment = authors_augment if train.augmentation == "authors" else random_flip_rot90
        x, y = augment(x, y, generator=generator)
    x = prepare_images(x, device, train.channels_last, train.normalization)
    return x, None if y is None else y.to(device, non_blocking=True).long()  # uint8 until here: 8x less to move


def optimizer_step(
    method: Method,
    optimizer: torch.optim.Optimizer,
    labeled: LabeledBatch,
    unlabeled: Tensor,
    step: int,
    total: int,
    device: torch.device,
    precision: str,
) -> dict[str, Tensor]:
    """One training step: the method's losses (under autocast), backward, Adam, ``on_step_end``.

    Nothing here synchronises with the device: the caller reads losses only when it logs.
    """
    with autocast(device, precision):
        losses = check_step_output(method.name, method.training_step(labeled, unlabeled, step, total))
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    optimizer.step()
    method.on_step_end(step)
    return losses


@dataclass
class Progress:
    """How far training got: the checkpoint's ``state`` part."""

    step: int = 0
    best_score: float = -math.inf  # best validation mean Dice so far
    best_step: int = 0
    train_seconds: float = 0.0

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)


@dataclass
class TrainState:
    """Everything the training loop changes: the method, Adam, the schedule, both samplers, the
    augmentation generator, the global RNGs and the progress. ``state_dict()`` is the checkpoint."""

    config_hash: str
    device: torch.device
    method: Method
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler | None
    labeled_sampler: EpochSampler
    unlabeled_sampler: EpochSampler
    augment_generator: torch.Generator
    progress: Progress = field(default_factory=Progress)

    @classmethod
    def start(cls, run: RunConfig, data: RunData, train: TrainSettings, device: torch.device) -> TrainState:
        """The state at step 0 of ``run`` trained with ``train`` (its settings, precision resolved): RNGs seeded
        with the run's seed, then the method, Adam and samplers built."""
        seed = run.seed
        seed_everything(seed)
        method = build_method(run.base_method, run.method_options, data.in_channels, len(data.class_names))
        optimizer = setup_training(method, device, train)
        return cls(
            config_hash=run.hash,
            device=device,
            method=method,
            optimizer=optimizer,
            scheduler=build_scheduler(optimizer, train),
            labeled_sampler=EpochSampler(len(data.labeled_images), train.batch_size, seed * 1000 + 1),
            unlabeled_sampler=EpochSampler(len(data.unlabeled_images), train.unlabeled_batch_size, seed * 1000 + 2),
            augment_generator=torch.Generator().manual_seed(seed * 1000 + 3),
        )

    def parts(self) -> dict[str, tuple[Callable[[], Any], Callable[[Any], None]]]:
        """Checkpoint key -> (save, restore) of each part; the one definition of the checkpoint."""
        parts: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {
            "method": (self.method.state_dict, self.method.load_state_dict),
            "optimizer": (self.optimizer.state_dict, self.optimizer.load_state_dict),
            "labeled_sampler": (self.labeled_sampler.state_dict, self.labeled_sampler.load_state_dict),
            "unlabeled_sampler": (self.unlabeled_sampler.state_dict, self.unlabeled_sampler.load_state_dict),
            "augment_generator": (self.augment_generator.get_state, self.augment_generator.set_state),
        }
        if self.scheduler is not None:
            parts["scheduler"] = (self.scheduler.state_dict, self.scheduler.load_state_dict)
        parts["rng"] = (lambda: rng_state(self.device), lambda state: set_rng_state(state, self.device))
        parts["state"] = (self.progress.state_dict, self.progress.load_state_dict)
        return parts

    def missing_keys(self, checkpoint: Any) -> list[str]:
        """The keys a checkpoint of this state needs that ``checkpoint`` lacks (all of them if it is no dict)."""
        keys = ["config_hash", *self.parts()]
        return [key for key in keys if key not in checkpoint] if isinstance(checkpoint, dict) else keys

    def state_dict(self) -> dict[str, Any]:
        return {"config_hash": self.config_hash, **{key: save() for key, (save, _) in self.parts().items()}}

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        """Restore every part; a ValueError naming the missing keys if ``checkpoint`` lacks any."""
        missing = self.missing_keys(checkpoint)
        if missing:
            raise ValueError(f"checkpoint lacks {missing}")
        for key, (_, restore) in self.parts().items():
            restore(checkpoint[key])


def train_step(state: TrainState, data: RunData, train: TrainSettings, step: int, total: int) -> dict[str, Tensor]:
    """Step ``step`` of ``total``: the next labelled and unlabelled batches, then ``optimizer_step``."""
    generator, device = state.augment_generator, state.device
    images, masks = sample_batch(data.labeled_images, data.labeled_masks, state.labeled_sampler, generator, device, train)
    unlabeled, _ = sample_batch(data.unlabeled_images, None, state.unlabeled_sampler, generator, device, train)
    return optimizer_step(state.method, state.optimizer, LabeledBatch(images, masks), unlabeled, step, total, device, train.precision)


def split_counts(state: TrainState, images: Tensor, masks: Tensor, num_classes: int, train: TrainSettings) -> PixelCounts:
    """Per-image counts of the default prediction on ``images``, evaluated with the run's evaluation settings."""
    return prediction_counts(state.method, images, masks, num_classes, state.device, train.evaluation)[DEFAULT_PREDICTION]


def recorded_test_counts(state: TrainState, data: RunData, train: TrainSettings) -> PixelCounts:
    """``split_counts`` of the test images, every global RNG restored afterwards.

    Evaluation runs in eval mode under inference mode; restoring the RNGs makes sure that
    recording the test scores never changes training, whatever a (plugin) method's ``predict`` does.
    """
    saved = rng_state(state.device)
    try:
        return split_counts(state, data.test_images, data.test_masks, len(data.class_names), train)
    finally:
        set_rng_state(saved, state.device)


def start_trajectory(path: Path, data: RunData, resume_step: int) -> Trajectory:
    """No records yet at step 0; on resume, the records on disk up to ``resume_step`` (later ones are dropped)."""
    if resume_step > 0:
        return read_trajectory(path).until(resume_step)
    return Trajectory(tuple(data.val_ids), tuple(data.test_ids), tuple(data.class_names))


def fit(state: TrainState, data: RunData, train: TrainSettings, directory: Path, label: str, progress: bool) -> None:
    """Train from ``state.progress.step`` to ``train.iterations``, writing to the run folder ``directory``.

    Every ``log_every`` steps the losses are logged to its train log (a NonFiniteLossError if one
    is not finite), every ``val_every`` the validation score too (the best weights saved, the
    schedule stepped), and every ``checkpoint_every`` steps before the last the state is saved.
    With ``record_every`` set, the validation counts and the test counts of every validation step
    that is a multiple of it and of the last step are kept, and written to ``trajectory.npz``
    before each checkpoint and at the end. ``label`` names the run on the progress bar.
    Validation and recording are not counted in ``train_seconds``. The progress bar is closed
    before any error leaves, so that the error's message starts a line of its own.
    """
    bar = tqdm(total=train.iterations, initial=state.progress.step, disable=not progress, leave=False, desc=label)
    try:
        _fit(state, data, train, directory, bar)
    finally:
        bar.close()


def _fit(state: TrainState, data: RunData, train: TrainSettings, directory: Path, bar: tqdm) -> None:
    """The loop of ``fit``, advancing ``bar``."""
    method, progress_state = state.method, state.progress
    best_path, last_path, trajectory_path = directory / layout.BEST, directory / layout.LAST, directory / layout.TRAJECTORY
    log = TrainLog(directory / layout.TRAIN_LOG, progress_state.step)
    record_every = train.record_every
    trajectory = start_trajectory(trajectory_path, data, progress_state.step) if record_every else None
    total = train.iterations
    method.train()
    tick = time.perf_counter()
    for step in range(progress_state.step, total):
        losses = train_step(state, data, train, step, total)
        done = step + 1
        bar.update(1)
        log_now = done % train.log_every == 0 or done == total
        val_now = done % train.val_every == 0 or done == total
        if not (log_now or val_now or done % train.checkpoint_every == 0):
            continue
        progress_state.train_seconds += time.perf_counter() - tick
        values = {name: float(value.detach()) for name, value in losses.items()}
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            raise NonFiniteLossError(f"non-finite loss {bad} = {[values[b] for b in bad]} at step {done} (run {directory})")
        row: dict[str, Any] = {"step": done, **values}
        bar.set_postfix(loss=f"{values['loss']:.4f}")
        if val_now:
            val_counts = split_counts(state, data.val_images, data.val_masks, len(data.class_names), train)
            score = selection_score(val_counts)
            row["val_mdice"] = score
            if trajectory is not None and (done % record_every == 0 or done == total):
                trajectory = trajectory.with_record(done, val_counts, recorded_test_counts(state, data, train))
            if state.scheduler is not None:
                state.scheduler.step(score)
                row["lr"] = state.optimizer.param_groups[0]["lr"]
            if score > progress_state.best_score:
                progress_state.best_score, progress_state.best_step = score, done
                save_torch(best_path, method.state_dict())
        row["elapsed_s"] = round(progress_state.train_seconds, 3)
        log.append(row)
        progress_state.step = done
        if done % train.checkpoint_every == 0 and done < total:
            if trajectory is not None:  # first: a checkpoint never lacks the records up to its step
                write_trajectory(trajectory_path, trajectory)
            save_torch(last_path, state.state_dict())
        tick = time.perf_counter()
    if trajectory is not None:
        write_trajectory(trajectory_path, trajectory)
