"""One run = (dataset, labelled ratio, method, seed, profile): train, validate, test, write results.

The runner owns the data, the optimiser (Adam), the schedule, validation, checkpoints and metrics;
the method only computes losses and predictions. A run directory holds:

    config.yaml      the resolved run config (with its hash)
    split.json       the exact split (uids) so the run can be reproduced anywhere
    train_log.csv    step, named losses, validation mean Dice, elapsed seconds
    best.pt          weights with the best validation mean Dice over defect classes (paper rule)
    last.pt          periodic checkpoint to resume from (model, optimiser, RNG states, step)
    per_image.npz    per test image and class: TP, FP, FN pixel counts of every prediction (benchmarks.engine.per_image)
    metrics.json     test metrics, written atomically last: its presence means the run completed
    failure.json     written instead when the run raised (reason and traceback)

A run folder belongs to one configuration: a folder holding a completed run (``metrics.json``) or
an interrupted one (``last.pt`` without ``failure.json``) of another config hash is never trained
over (``RunConflictError``, naming the differing keys); a failed run of another config is replaced.
A ``last.pt`` that cannot be loaded, or whose ``split.json`` no longer matches the data, is set
aside (renamed ``last.pt.corrupt-<time>``, with a note naming it) and the run restarts from step 0.
"""
from __future__ import annotations

import csv
import functools
import math
import random
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from datasets import get_dataset
from datasets.cache import load_arrays
from datasets.base import DatasetError
from datasets.splits import Split, make_split
from datasets.transforms import authors_augment, random_flip_rot90
from methods import ConfigError, LabeledBatch, Method, build_method
from methods.registry import check_step_output

from benchmarks.engine.config import PROFILE_DEFAULTS, config_differences, config_hash, run_dir
from benchmarks.engine.environment import environment, resolve_device, resolved_train_settings
from benchmarks.engine.evaluate import autocast, count_macs, evaluate, metrics_from_counts, prediction_counts, prepare_images, time_per_image
from benchmarks.engine.io import ResultsError, load_torch, read_json, read_yaml, save_torch, write_json, write_yaml
from benchmarks.engine.per_image import FILE_NAME as PER_IMAGE_FILE
from benchmarks.engine.per_image import write_per_image


CHECKPOINT_KEYS = ("config_hash", "method", "optimizer", "labeled_sampler", "unlabeled_sampler", "augment_generator", "rng", "state")


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the loss part and the step."""


class RunConflictError(ConfigError):
    """The run folder holds a completed or interrupted run of another configuration."""


@dataclass
class RunData:
    class_names: tuple[str, ...]
    in_channels: int
    labeled_images: Tensor  # uint8 (N, C, H, W)
    labeled_masks: Tensor  # uint8 (N, H, W)
    unlabeled_images: Tensor
    val_images: Tensor
    val_masks: Tensor
    test_images: Tensor
    test_masks: Tensor
    test_ids: list[str]  # uids of the test images, in the order of test_images


def load_run_data(run_config: dict[str, Any], data_root: Path | None, cache_dir: Path | None, split_path: Path | None) -> RunData:
    """Dataset -> split (written to ``split_path``) -> decoded uint8 tensors of each subset."""
    dataset = get_dataset(run_config["dataset"], data_root, **run_config["dataset_options"])
    records = dataset.records()
    split = make_split(dataset, records, run_config["split_seed"], run_config["ratio"])
    if split_path is not None:
        split.to_json(split_path)
    bundle = load_arrays(dataset, records, run_config["train"]["image_size"], cache_dir)

    def images(uids: list[str]) -> Tensor:
        return torch.from_numpy(bundle.subset(uids).images.copy())

    def masks(uids: list[str]) -> Tensor:
        return torch.from_numpy(bundle.subset(uids).masks.copy())

    max_val = run_config["train"]["val_max_images"]
    val_uids = split.val[:max_val] if max_val else split.val
    # with every training image labelled, the unlabelled stream reuses the labelled images
    unlabeled_uids = split.unlabeled or split.labeled
    return RunData(
        class_names=tuple(dataset.class_names),
        in_channels=dataset.in_channels,
        labeled_images=images(split.labeled),
        labeled_masks=masks(split.labeled),
        unlabeled_images=images(unlabeled_uids),
        val_images=images(val_uids),
        val_masks=masks(val_uids),
        test_images=images(split.test),
        test_masks=masks(split.test),
        test_ids=list(split.test),
    )


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
    """Append-only CSV of the training log; on resume, rows after the checkpoint are dropped."""

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
        with open(self.path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields or ["step"])
            writer.writeheader()
            writer.writerows(self.rows)


def _rng_state(device: torch.device) -> dict:
    """Every global RNG a method may draw from (torch, CUDA, numpy, Python), for exact resumes."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def completed_metrics(run_config: dict[str, Any], results_dir: Path) -> dict[str, Any] | None:
    """The run's ``metrics.json`` if it exists for this exact config (same hash), else None.

    A ``metrics.json`` that cannot be read is a ResultsError naming it and what to do.
    """
    metrics_path = run_dir(results_dir, run_config) / "metrics.json"
    if not metrics_path.exists():
        return None
    try:
        metrics = read_json(metrics_path)
    except ResultsError as error:
        raise ResultsError(f"{error}; move it away (or delete it) to train this run again, or restore it") from error
    return metrics if metrics.get("config_hash") == config_hash(run_config) else None


def check_run_folder(run_config: dict[str, Any], results_dir: Path) -> None:
    """RunConflictError if the run folder holds a completed or interrupted run of another config."""
    directory = run_dir(results_dir, run_config)
    config_path = directory / "config.yaml"
    if not config_path.exists():
        return
    try:
        there = read_yaml(config_path)
    except ResultsError as error:
        raise ResultsError(f"{error}; move that run folder away (or delete it) to train this run again") from error
    if there.get("config_hash") == config_hash(run_config):
        return
    completed = (directory / "metrics.json").exists()
    if not completed and not ((directory / "last.pt").exists() and not (directory / "failure.json").exists()):
        return  # nothing of value: a failed run, or one killed before its first checkpoint
    differences = config_differences(there, run_config, ("there", "requested")) or ["config hash only"]
    raise RunConflictError(
        f"{directory} holds {'a completed' if completed else 'an interrupted'} run of another configuration "
        f"({'; '.join(differences)}): not training over it. Use another --results-dir for the new "
        "configuration, or move (or delete) that folder to replace the run"
    )


def base_method(run_config: dict[str, Any]) -> str:
    """The registered method a run builds (its ``method`` may name a variant)."""
    return run_config.get("base_method", run_config["method"])


def setup_training(method: Method, device: torch.device, train: dict[str, Any]) -> torch.optim.Optimizer:
    """Move ``method`` to ``device`` (channels-last if configured); its Adam over trainable parameters.

    Adam is the fused implementation (one kernel over all parameters): the same update, measured
    14 -> 4.5 ms per step on the CPU for UAPS's 208 parameter tensors (docs/performance.md).
    """
    method.to(device)
    if train["channels_last"]:
        method.to(memory_format=torch.channels_last)
    return torch.optim.Adam(
        [p for p in method.parameters() if p.requires_grad], lr=train["lr"], weight_decay=train["weight_decay"], fused=True
    )


def sample_batch(
    images: Tensor,
    masks: Tensor | None,
    sampler: EpochSampler,
    generator: torch.Generator,
    device: torch.device,
    train: dict[str, Any],
) -> tuple[Tensor, Tensor | None]:
    """The sampler's next batch of uint8 rows, augmented as one batch, normalised and on ``device``."""
    index = sampler.next()
    x = images[index]
    y = None if masks is None else masks[index]
    if train["augment"]:
        augment = authors_augment if train["augmentation"] == "authors" else random_flip_rot90
        x, y = augment(x, y, generator=generator)
    x = prepare_images(x, device, train["channels_last"], train["normalization"])
    return x, None if y is None else y.to(device, non_blocking=True).long()  # uint8 until here: 8x less to move


def build_scheduler(optimizer: torch.optim.Optimizer, train: dict[str, Any]) -> torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    """The learning-rate schedule stepped at each validation: None (constant) or ReduceLROnPlateau.

    ``plateau`` cuts the rate by ``lr_factor`` once the validation mean Dice has not improved for
    ``lr_patience`` iterations, counted in validations (ceil(lr_patience / val_every)), as the UAPS
    code does per epoch (mode "max", ``min_lr``, torch's default relative threshold 1e-4).
    """
    if train["lr_schedule"] == "constant":
        return None
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=train["lr_factor"], min_lr=train["min_lr"],
        patience=math.ceil(train["lr_patience"] / train["val_every"]),
    )


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


def _validation_score(metrics: dict) -> float:
    mdice = metrics["standard"]["mdice"]
    return 0.0 if mdice is None else mdice


def train_run(
    run_config: dict[str, Any],
    results_dir: Path,
    data_root: Path | None = None,
    device: str = "auto",
    cache_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and test one run; returns its metrics (also written to ``metrics.json``).

    A run whose ``metrics.json`` carries the same config hash is not run again. A run with a
    ``last.pt`` of the same config hash resumes from it. On error, ``failure.json`` records why.
    A folder holding another configuration's run is a RunConflictError (``check_run_folder``);
    nothing is written to it.
    """
    directory = run_dir(results_dir, run_config)
    digest = config_hash(run_config)
    done = completed_metrics(run_config, results_dir)
    if done is not None:
        return done
    check_run_folder(run_config, results_dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "failure.json").unlink(missing_ok=True)
    try:
        return _train(run_config, digest, directory, data_root, resolve_device(device), cache_dir, progress)
    except BaseException as error:
        write_failure(run_config, results_dir, error)
        raise


def write_failure(run_config: dict[str, Any], results_dir: Path, error: BaseException) -> None:
    """Record why a run failed in its ``failure.json`` (with ``error``'s traceback, if it was raised)."""
    write_json(
        run_dir(results_dir, run_config) / "failure.json",
        {
            "config_hash": config_hash(run_config),
            "error": type(error).__name__,
            "reason": str(error),
            "traceback": "".join(traceback.format_exception(error)),
        },
    )


def _train(
    run_config: dict[str, Any],
    digest: str,
    directory: Path,
    data_root: Path | None,
    device: torch.device,
    cache_dir: Path | None,
    progress: bool,
) -> dict[str, Any]:
    train = resolved_train_settings(run_config["train"], device)
    if train["num_threads"]:
        torch.set_num_threads(int(train["num_threads"]))
    write_yaml(directory / "config.yaml", {**run_config, "config_hash": digest})
    split_path, last_path, best_path = directory / "split.json", directory / "last.pt", directory / "best.pt"
    previous_split = _previous_split(split_path) if last_path.exists() else None
    data = load_run_data(run_config, data_root, cache_dir, split_path)
    seed = run_config["seed"]
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    method = build_method(base_method(run_config), run_config["method_options"], data.in_channels, len(data.class_names))
    optimizer = setup_training(method, device, train)
    scheduler = build_scheduler(optimizer, train)
    labeled_sampler = EpochSampler(len(data.labeled_images), train["batch_size"], seed * 1000 + 1)
    unlabeled_sampler = EpochSampler(len(data.unlabeled_images), train["unlabeled_batch_size"], seed * 1000 + 2)
    augment_generator = torch.Generator().manual_seed(seed * 1000 + 3)

    total = int(train["iterations"])
    state = {"step": 0, "best_score": -math.inf, "best_step": 0, "train_seconds": 0.0}
    checkpoint = _resumable_checkpoint(last_path, best_path, digest, previous_split, split_path)
    if checkpoint is not None:
        method.load_state_dict(checkpoint["method"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        labeled_sampler.load_state_dict(checkpoint["labeled_sampler"])
        unlabeled_sampler.load_state_dict(checkpoint["unlabeled_sampler"])
        augment_generator.set_state(checkpoint["augment_generator"])
        if scheduler is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
        _set_rng_state(checkpoint["rng"], device)
        state = checkpoint["state"]
    log = TrainLog(directory / "train_log.csv", state["step"])

    def validate() -> float:
        metrics = evaluate(
            method, data.val_images, data.val_masks, data.class_names, device,
            train["eval_batch_size"], train["precision"], train["channels_last"], normalization=train["normalization"],
        )
        return _validation_score(metrics)

    method.train()
    bar = tqdm(
        total=total, initial=state["step"], disable=not progress, leave=False,
        desc=f"{run_config['method']}/{run_config['dataset']}/{run_config['ratio']:g}/seed{seed}",
    )
    tick = time.perf_counter()
    for step in range(state["step"], total):
        images, masks = sample_batch(data.labeled_images, data.labeled_masks, labeled_sampler, augment_generator, device, train)
        unlabeled, _ = sample_batch(data.unlabeled_images, None, unlabeled_sampler, augment_generator, device, train)
        losses = optimizer_step(method, optimizer, LabeledBatch(images, masks), unlabeled, step, total, device, train["precision"])
        done = step + 1
        bar.update(1)
        log_now = done % train["log_every"] == 0 or done == total
        val_now = done % train["val_every"] == 0 or done == total
        if not (log_now or val_now or done % train["checkpoint_every"] == 0):
            continue
        now = time.perf_counter()
        state["train_seconds"] += now - tick
        row: dict[str, Any] = {"step": done}
        values = {name: float(value.detach()) for name, value in losses.items()}
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            raise NonFiniteLossError(f"non-finite loss {bad} = {[values[b] for b in bad]} at step {done} (run {directory})")
        row.update(values)
        bar.set_postfix(loss=f"{values['loss']:.4f}")
        if val_now:
            score = validate()
            row["val_mdice"] = score
            if scheduler is not None:
                scheduler.step(score)
                row["lr"] = optimizer.param_groups[0]["lr"]
            if score > state["best_score"]:
                state.update(best_score=score, best_step=done)
                save_torch(best_path, method.state_dict())
        row["elapsed_s"] = round(state["train_seconds"], 3)
        log.append(row)
        state["step"] = done
        if done % train["checkpoint_every"] == 0 and done < total:
            save_torch(
                last_path,
                {
                    "config_hash": digest,
                    "method": method.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "labeled_sampler": labeled_sampler.state_dict(),
                    "unlabeled_sampler": unlabeled_sampler.state_dict(),
                    "augment_generator": augment_generator.get_state(),
                    **({} if scheduler is None else {"scheduler": scheduler.state_dict()}),
                    "rng": _rng_state(device),
                    "state": dict(state),
                },
            )
        tick = time.perf_counter()
    bar.close()

    method.load_state_dict(torch.load(best_path, map_location=device, weights_only=True))
    metrics = _test_metrics(method, data, train, device, directory / PER_IMAGE_FILE)
    metrics.update(
        status="completed",
        config_hash=digest,
        run={**{k: run_config[k] for k in ("profile", "dataset", "ratio", "method", "seed", "split_seed")}, "base_method": base_method(run_config)},
        best_step=state["best_step"],
        best_val_mdice=state["best_score"],
        precision=train["precision"],
        channels_last=train["channels_last"],
        train_seconds=round(state["train_seconds"], 3),
        iterations_per_second=total / state["train_seconds"] if state["train_seconds"] > 0 else None,
        environment=environment(device),
    )
    write_json(directory / "metrics.json", metrics)
    last_path.unlink(missing_ok=True)
    return metrics


def _previous_split(path: Path) -> Split | None:
    """The split a checkpoint was made on (``split.json`` before this start rewrites it); None with a note if unreadable."""
    try:
        return Split.from_json(path)
    except DatasetError as error:
        print(f"note: {error}; it is rewritten from the dataset, split_seed and ratio", file=sys.stderr)
        return None


def _resumable_checkpoint(
    last_path: Path, best_path: Path, digest: str, previous_split: Split | None, split_path: Path
) -> dict[str, Any] | None:
    """``last.pt`` if it is a sound checkpoint of this config (hash ``digest``) made on today's split, else None.

    One of another config is ignored (the next checkpoint replaces it). One that cannot be loaded
    (or its ``best.pt``, both then set aside), lacks a part, or was made on another split
    (``previous_split`` differs from the rewritten ``split_path``, or was unreadable) is set aside.
    """
    if not last_path.exists():
        return None
    try:
        # on the CPU: RNG and generator states must stay CPU tensors; weights and Adam state are
        # copied/cast to their parameters' device by load_state_dict
        checkpoint = load_torch(last_path, map_location="cpu", weights_only=False)
    except ResultsError as error:
        return _set_aside([last_path], f"checkpoint {error}")
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint] if isinstance(checkpoint, dict) else list(CHECKPOINT_KEYS)
    if missing:
        return _set_aside([last_path], f"checkpoint {last_path} lacks {missing}")
    if checkpoint["config_hash"] != digest:
        return None
    if previous_split is None or previous_split != Split.from_json(split_path):
        return _set_aside([last_path], f"checkpoint {last_path} was made on another split than {split_path} holds now "
                                       "(the data changed, or the old split.json was unreadable)")
    if checkpoint["state"]["best_step"] > 0:
        try:
            load_torch(best_path, map_location="cpu", weights_only=True)
        except ResultsError as error:
            return _set_aside([last_path, best_path], f"checkpoint {last_path} needs {error}")
    return checkpoint


def _set_aside(paths: list[Path], problem: str) -> None:
    """Rename ``paths`` to ``<name>.corrupt-<time>`` (never deleted) and say so on stderr."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for path in paths:
        if path.exists():
            target = path.with_name(f"{path.name}.corrupt-{stamp}")
            path.replace(target)
            moved.append(target.name)
    print(f"note: {problem}: set aside as {', '.join(moved)}; the run restarts from step 0", file=sys.stderr)


def _test_metrics(method: Method, data: RunData, train: dict, device: torch.device, per_image_path: Path) -> dict[str, Any]:
    """Test metrics of every prediction; their per-image counts are written to ``per_image_path`` first."""
    counts = prediction_counts(
        method, data.test_images, data.test_masks, len(data.class_names), device,
        train["eval_batch_size"], train["precision"], train["channels_last"], variants=True, normalization=train["normalization"],
    )
    write_per_image(per_image_path, data.test_ids, data.class_names, counts)
    metrics = metrics_from_counts(counts, data.class_names)
    example = prepare_images(data.test_images[:1], device, train["channels_last"], train["normalization"])
    batch = prepare_images(data.test_images[: train["eval_batch_size"]], device, train["channels_last"], train["normalization"])
    method.eval()
    with autocast(device, train["precision"]):
        metrics["eval_ms_per_image"] = time_per_image(method.predict, batch)
        metrics["variant_ms_per_image"] = {
            name: time_per_image(functools.partial(method.predict_variant, name=name), batch)
            for name in metrics.get("variants", {})
        }
    metrics["macs"] = count_macs(method.predict, example)
    metrics["variant_macs"] = {
        name: count_macs(functools.partial(method.predict_variant, name=name), example)
        for name in metrics.get("variants", {})
    }
    metrics["params"] = sum(p.numel() for p in method.parameters() if p.requires_grad)
    metrics["num_test_images"] = len(data.test_images)
    return metrics


@dataclass
class TrainedRun:
    """A finished run loaded back: its config, data and method with ``best.pt``, in eval mode."""

    directory: Path
    config: dict[str, Any]
    method: Method
    data: RunData
    device: torch.device


def load_trained_run(run_directory: Path, data_root: Path | None = None, cache_dir: Path | None = None, device: str = "auto") -> TrainedRun:
    """Rebuild a run from its ``config.yaml`` and ``best.pt`` (for ``eval`` and the pictures)."""
    run_directory = Path(run_directory)
    for name in ("config.yaml", "best.pt"):
        if not (run_directory / name).exists():
            raise ResultsError(f"{run_directory / name} not found: expected a run directory written by 'run_all.py train'")
    run_config = read_yaml(run_directory / "config.yaml")
    run_config.pop("config_hash", None)
    # runs written before a train setting existed used its default (the HASH_NEUTRAL value)
    run_config["train"] = {**PROFILE_DEFAULTS["train"], **run_config["train"]}
    torch_device = resolve_device(device)
    data = load_run_data(run_config, data_root, cache_dir, None)
    method = build_method(base_method(run_config), run_config["method_options"], data.in_channels, len(data.class_names))
    method.load_state_dict(load_torch(run_directory / "best.pt", map_location=torch_device, weights_only=True))
    method.to(torch_device).eval()
    return TrainedRun(run_directory, run_config, method, data, torch_device)


def evaluate_checkpoint(run_directory: Path, split: str, data_root: Path | None, device: str = "auto", cache_dir: Path | None = None) -> dict[str, Any]:
    """Metrics of a run's ``best.pt`` on its ``val`` or ``test`` split."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    run = load_trained_run(run_directory, data_root, cache_dir, device)
    data, train = run.data, resolved_train_settings(run.config["train"], run.device)
    images, masks = (data.val_images, data.val_masks) if split == "val" else (data.test_images, data.test_masks)
    return evaluate(
        run.method, images, masks, data.class_names, run.device, train["eval_batch_size"], train["precision"],
        train["channels_last"], variants=True, normalization=train["normalization"],
    )
