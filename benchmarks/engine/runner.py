"""One run = (dataset, labelled ratio, method, seed, profile): train, validate, test, write results.

The runner owns the data, the optimiser (Adam), the schedule, validation, checkpoints and metrics;
the method only computes losses and predictions. A run reads top to bottom: config -> data ->
method (``TrainState``) -> train loop (``trainer.fit``) -> test -> results, in its run folder
(``benchmarks.engine.layout``):

    config.yaml      the resolved run config (with its hash)
    split.ref        names the split file (uids of each part) in <results>/splits/ (``split_store``)
    train_log.csv    step, named losses, validation mean Dice, elapsed seconds
    best.pt          weights with the best validation mean Dice over defect classes (paper rule)
    last.pt          periodic checkpoint to resume from (``TrainState.state_dict``)
    per_image.npz    per test image and class: TP, FP, FN pixel counts of every prediction (benchmarks.engine.per_image)
    trajectory.npz   with train.record_every: per validation and test image, those counts at recorded steps (benchmarks.engine.trajectory)
    metrics.json     test metrics, written atomically last: its presence means the run completed
    failure.json     written instead when the run raised (reason and traceback)

A run is trained under its folder's lock (``run_lock.claimed``), by a grid's worker and a lone
``train`` alike: a run another live process trains is refused, naming that process; ``eval`` and
the pictures refuse it too (its ``best.pt`` is moving). A folder holding another configuration's
run is never trained over (``run_folder.check_run_folder``).
A ``last.pt`` that cannot be loaded, or whose recorded split no longer matches the data, is set
aside (renamed ``last.pt.corrupt-<time>``, with a note naming it) and the run restarts from step 0;
so is one whose ``best.pt`` or (when recording) ``trajectory.npz`` cannot be read.
"""
from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from defectseg.datasets.base import DatasetError
from defectseg.datasets.splits import Split
from defectseg.methods import ConfigError, Method
from defectseg.methods.networks import count_parameters

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.environment import environment, resolve_device, slow_bf16_warning
from defectseg.benchmarks.engine.evaluate import (
    autocast, count_macs, evaluate, metrics_from_counts, prediction_counts, prepare_images, time_per_image,
)
from defectseg.benchmarks.engine.io import ResultsError, load_torch, write_json, write_yaml
from defectseg.benchmarks.engine.per_image import write_per_image
from defectseg.benchmarks.engine.run import RunConfig, TrainSettings, Workspace
from defectseg.benchmarks.engine.run_data import RunData, load_run_data
from defectseg.benchmarks.engine.run_folder import check_run_folder, failure_recorded
from defectseg.benchmarks.engine.run_lock import check_not_held, claimed
from defectseg.benchmarks.engine.run_state import completed_run
from defectseg.benchmarks.engine.split_store import record_split, recorded_split
from defectseg.benchmarks.engine.trained import load_best, read_run_config
from defectseg.benchmarks.engine.trainer import TrainState, fit
from defectseg.benchmarks.engine.trajectory import TrajectoryError, read_trajectory


def train_run(run: RunConfig, workspace: Workspace, progress: bool = True) -> dict[str, Any]:
    """Train and test one run in ``workspace`` unless it is done; returns its metrics (also written to ``metrics.json``).

    A run whose ``metrics.json`` carries the same config hash is not run again; otherwise the run's
    lock is taken (a RunHeldError naming the process that holds it), the run is looked at again
    (another process may have completed it meanwhile) and trained (``train_pending``). A ConfigError
    of ``check_record_every`` comes before anything is written.
    """
    check_record_every(run.train)
    directory = workspace.run_dir(run)
    done = completed_run(directory, run.hash)
    if done is not None:
        return done
    with claimed(directory):
        done = completed_run(directory, run.hash)
        return done if done is not None else train_pending(run, workspace, progress)


def train_pending(
    run: RunConfig, workspace: Workspace, progress: bool = True, before: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Train and test a run found not done; returns its metrics (also written to ``metrics.json``).

    A folder holding another configuration's run is a RunConflictError and nothing is written to
    it. Otherwise ``before`` (if given) runs, then training, resumed from a ``last.pt`` of the same
    config hash; if either raises, ``failure.json`` records why. A ``train.record_every`` that is
    not a multiple of ``train.val_every`` is a ConfigError before anything is written.
    """
    check_record_every(run.train)
    check_run_folder(run, workspace.results_dir)
    with failure_recorded(run, workspace.results_dir):
        if before is not None:
            before()
        return _train(run, workspace, resolve_device(workspace.device), progress)


def check_record_every(train: TrainSettings) -> None:
    """ConfigError naming both settings unless ``record_every`` is unset or a multiple of ``val_every``."""
    every, val_every = train.record_every, train.val_every
    if every is not None and every % val_every:
        raise ConfigError(
            f"train.record_every ({every}) must be a multiple of train.val_every ({val_every}): scores are recorded at validation steps"
        )


def _train(run: RunConfig, workspace: Workspace, device: torch.device, progress: bool) -> dict[str, Any]:
    """Config -> data and its split -> train state (resumed if it can be) -> train loop -> test -> ``metrics.json``."""
    results_dir = Path(workspace.results_dir)
    directory = run.directory(results_dir)
    train = run.train.resolved(device)
    if warning := slow_bf16_warning(run.train.precision, device):
        print(warning, file=sys.stderr)
    if train.num_threads:
        torch.set_num_threads(train.num_threads)
    write_yaml(directory / layout.CONFIG, {**run.config, "config_hash": run.hash})
    previous_split = _previous_split(directory, results_dir)
    data = load_run_data(run, workspace)
    record_split(directory, results_dir, data.split)

    state = TrainState.start(run, data, train, device)
    _resume(state, directory, previous_split, data.split, recording=train.record_every is not None)
    fit(state, data, train, directory, run.label, progress)

    state.method.load_state_dict(torch.load(directory / layout.BEST, map_location=device, weights_only=True))
    metrics = _test_metrics(state.method, data, train, device, directory / layout.PER_IMAGE)
    done = state.progress
    metrics.update(
        status="completed",
        config_hash=run.hash,
        run={
            **{k: run.config[k] for k in ("profile", "dataset", "ratio", "method", "seed", "split_seed")},
            "base_method": run.base_method,
        },
        best_step=done.best_step,
        best_val_mdice=done.best_score,
        precision=train.precision,
        channels_last=train.channels_last,
        train_seconds=round(done.train_seconds, 3),
        iterations_per_second=train.iterations / done.train_seconds if done.train_seconds > 0 else None,
        environment=environment(device),
    )
    write_json(directory / layout.METRICS, metrics)
    (directory / layout.LAST).unlink(missing_ok=True)
    return metrics


def _previous_split(directory: Path, results_dir: Path) -> Split | None:
    """The split the run's checkpoint was made on, read before this start records today's.

    None without a checkpoint, or with a note if the split file is unreadable.
    """
    if not (directory / layout.LAST).exists():
        return None
    try:
        return recorded_split(directory, results_dir)
    except DatasetError as error:
        print(f"note: {error}; it is rewritten from the dataset, split_seed and ratio", file=sys.stderr)
        return None


def _resume(state: TrainState, directory: Path, previous_split: Split | None, split: Split, recording: bool) -> None:
    """Load ``last.pt`` into ``state`` if it is a sound checkpoint of this config made on ``split``.

    One of another config is ignored (the next checkpoint replaces it). One that cannot be loaded
    (or its ``best.pt``, or when ``recording`` its ``trajectory.npz``: both then set aside), lacks
    a part, or was made on another split (``previous_split`` differs from ``split``, or was
    unreadable) is set aside.
    """
    last_path, best_path, trajectory_path = directory / layout.LAST, directory / layout.BEST, directory / layout.TRAJECTORY
    if not last_path.exists():
        return
    try:
        # on the CPU: RNG and generator states must stay CPU tensors; weights and Adam state are
        # copied/cast to their parameters' device by load_state_dict
        checkpoint = load_torch(last_path, map_location="cpu", weights_only=False)
    except ResultsError as error:
        return _set_aside([last_path], f"checkpoint {error}")
    if isinstance(checkpoint, dict) and checkpoint.get("config_hash", state.config_hash) != state.config_hash:
        return
    missing = state.missing_keys(checkpoint)
    if missing:
        return _set_aside([last_path], f"checkpoint {last_path} lacks {missing}")
    if previous_split is None or previous_split != split:
        return _set_aside([last_path], f"checkpoint {last_path} was made on another split than the data gives now "
                                       "(the data changed, or the old split file was unreadable or missing)")
    if checkpoint["state"]["best_step"] > 0:
        try:
            load_torch(best_path, map_location="cpu", weights_only=True)
        except ResultsError as error:
            return _set_aside([last_path, best_path], f"checkpoint {last_path} needs {error}")
    if recording:
        try:
            read_trajectory(trajectory_path)
        except TrajectoryError as error:
            return _set_aside([last_path, trajectory_path], f"checkpoint {last_path} needs {error}")
    state.load_state_dict(checkpoint)


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


def _test_metrics(method: Method, data: RunData, train: TrainSettings, device: torch.device, per_image_path: Path) -> dict[str, Any]:
    """Test metrics of every prediction; their per-image counts are written to ``per_image_path`` first."""
    counts = prediction_counts(method, data.test_images, data.test_masks, len(data.class_names), device, train.evaluation, variants=True)
    write_per_image(per_image_path, data.test_ids, data.class_names, counts)
    metrics = metrics_from_counts(counts, data.class_names)
    example = prepare_images(data.test_images[:1], device, train.channels_last, train.normalization)
    batch = prepare_images(data.test_images[: train.eval_batch_size], device, train.channels_last, train.normalization)
    method.eval()
    with autocast(device, train.precision):
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
    metrics["params"] = count_parameters(method)
    metrics["num_test_images"] = len(data.test_images)
    return metrics


@dataclass
class TrainedRun:
    """A finished run loaded back: its config, data and method with ``best.pt``, in eval mode."""

    directory: Path
    config: RunConfig
    method: Method
    data: RunData
    device: torch.device


def load_trained_run(run_directory: Path, workspace: Workspace) -> TrainedRun:
    """Rebuild a run from its ``config.yaml`` and ``best.pt`` (for ``eval`` and the pictures), its data from
    ``workspace``'s data root and cache, on its device; a RunHeldError while another process trains it."""
    run_directory = Path(run_directory)
    run = RunConfig(read_run_config(run_directory))
    check_not_held(run_directory)
    device = resolve_device(workspace.device)
    data = load_run_data(run, workspace)
    method = load_best(run_directory, run.config, data.in_channels, len(data.class_names), device)
    return TrainedRun(run_directory, run, method, data, device)


def evaluate_checkpoint(run_directory: Path, split: str, workspace: Workspace) -> dict[str, Any]:
    """Metrics of a run's ``best.pt`` on its ``val`` or ``test`` split."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    run = load_trained_run(run_directory, workspace)
    data, train = run.data, run.config.train.resolved(run.device)
    images, masks = (data.val_images, data.val_masks) if split == "val" else (data.test_images, data.test_masks)
    return evaluate(run.method, images, masks, data.class_names, run.device, train.evaluation, variants=True)
