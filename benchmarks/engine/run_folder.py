"""What a run folder says about its run: completed (for this config), held by another config, or failed.

A run is *completed* when its folder holds a ``metrics.json`` of the config's hash with every key a
run writes, beside readable per-image records (``completed_run``): the one test of "is this run
done?" of the grid, ``status``, the tables, ``compare`` and ``publish``. Damaged results (a
``metrics.json`` that cannot be read or lacks its metrics, an unreadable ``per_image.npz``) are a
ResultsError naming the file and what to do, never a completed run nor one trained over.

A run folder belongs to one configuration: a folder holding a completed run (``metrics.json``) or
an interrupted one (``last.pt`` without ``failure.json``) of another config hash is never trained
over (``RunConflictError``, naming the differing keys); a failed run of another config is replaced.
"""
from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from defectseg.methods import ConfigError

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.config import config_differences, config_hash
from defectseg.benchmarks.engine.io import ResultsError, read_json, read_yaml, write_json
from defectseg.benchmarks.engine.per_image import PerImageError, read_per_image

RUN_KEYS = ("profile", "dataset", "ratio", "method", "seed")  # of a metrics.json's "run"
METRIC_KEYS = {"standard": ("miou", "mdice"), "paper": ("miou",)}  # what the tables read of each protocol
RETRAIN = "move it away (or delete it) to train this run again, or restore it"


class RunConflictError(ConfigError):
    """The run folder holds a completed or interrupted run of another configuration."""


def completed_metrics(run_config: dict[str, Any], results_dir: Path) -> dict[str, Any] | None:
    """``completed_run`` of the run's folder for this exact config (its hash)."""
    return completed_run(layout.run_dir(results_dir, run_config), config_hash(run_config))


def completed_run(directory: Path, expected_hash: str | None) -> dict[str, Any] | None:
    """The metrics of the run in ``directory`` if it completed with config hash ``expected_hash`` (None: any), else None.

    See the module docstring; damaged results are a ResultsError naming the file and what to do.
    Runs completed before per-image records existed have no ``per_image.npz``: still completed.
    """
    metrics_path = Path(directory) / layout.METRICS
    if not metrics_path.exists():
        return None
    try:
        metrics = read_json(metrics_path)
    except ResultsError as error:
        raise ResultsError(f"{error}; {RETRAIN}") from error
    if expected_hash is not None and metrics.get("config_hash") != expected_hash:
        return None
    missing = missing_metric_keys(metrics)
    if missing:
        raise ResultsError(f"{metrics_path} lacks {', '.join(missing)}: not the metrics.json of a completed run; {RETRAIN}")
    per_image = Path(directory) / layout.PER_IMAGE
    if per_image.exists():
        try:
            read_per_image(per_image)
        except PerImageError as error:
            raise ResultsError(f"{error}; move the run's {layout.METRICS} away (or delete the run folder) to train "
                               f"this run again, or restore {layout.PER_IMAGE}") from error
    return metrics


def missing_metric_keys(metrics: dict[str, Any]) -> list[str]:
    """The dotted keys a run's ``metrics.json`` must have and ``metrics`` lacks."""
    run = metrics.get("run")
    missing = [f"run.{key}" for key in RUN_KEYS if not isinstance(run, dict) or key not in run]
    for protocol, keys in METRIC_KEYS.items():
        part = metrics.get(protocol)
        missing += [f"{protocol}.{key}" for key in keys if not isinstance(part, dict) or key not in part]
    return missing


def check_run_folder(run_config: dict[str, Any], results_dir: Path) -> None:
    """RunConflictError if the run folder holds a completed or interrupted run of another config."""
    directory = layout.run_dir(results_dir, run_config)
    config_path = directory / layout.CONFIG
    if not config_path.exists():
        return
    try:
        there = read_yaml(config_path)
    except ResultsError as error:
        raise ResultsError(f"{error}; move that run folder away (or delete it) to train this run again") from error
    if there.get("config_hash") == config_hash(run_config):
        return
    completed = (directory / layout.METRICS).exists()
    if not completed and not ((directory / layout.LAST).exists() and not (directory / layout.FAILURE).exists()):
        return  # nothing of value: a failed run, or one killed before its first checkpoint
    differences = config_differences(there, run_config, ("there", "requested")) or ["config hash only"]
    raise RunConflictError(
        f"{directory} holds {'a completed' if completed else 'an interrupted'} run of another configuration "
        f"({'; '.join(differences)}): not training over it. Use another --results-dir for the new "
        "configuration, or move (or delete) that folder to replace the run"
    )


def write_failure(run_config: dict[str, Any], results_dir: Path, error: BaseException) -> None:
    """Record why a run failed in its ``failure.json`` (with ``error``'s traceback, if it was raised)."""
    write_json(
        layout.run_dir(results_dir, run_config) / layout.FAILURE,
        {
            "config_hash": config_hash(run_config),
            "error": type(error).__name__,
            "reason": str(error),
            "traceback": "".join(traceback.format_exception(error)),
        },
    )


@contextmanager
def failure_recorded(run_config: dict[str, Any], results_dir: Path) -> Iterator[None]:
    """Create the run folder and clear its ``failure.json``; write a new one if the body raises.

    A ``failure.json`` that cannot be written (a full disk, a folder turned read-only) is left out:
    the body's error is the one raised.
    """
    directory = layout.run_dir(results_dir, run_config)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / layout.FAILURE).unlink(missing_ok=True)
    try:
        yield
    except BaseException as error:
        with suppress(OSError):
            write_failure(run_config, results_dir, error)
        raise
