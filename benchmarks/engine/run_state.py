"""The state of a run folder, read only: the one authority on whether a run is done, running or left over.

A run is *completed* when its folder holds a ``metrics.json`` of the expected config hash with every
key a run writes, beside readable per-image records (``completed_run``): the one test of "is this
run done?" of the grid, ``train``, ``status``, ``publish``, the tables and ``compare``. Damaged
results (a ``metrics.json`` that cannot be read or lacks its metrics, an unreadable
``per_image.npz``) are a ResultsError naming the file and what to do, never a completed run.

``run_state`` tells the five states apart, in this order of precedence: ``completed``;
``running`` (a live process holds its ``.lock``: ``run_lock.check_not_held``); ``failed`` (a
``failure.json``); ``interrupted`` (a ``last.pt`` to resume from); ``pending`` (none of these:
never started, or only a run of another config is there). The expected hash is the run
config's (``RunConfig.hash``) for a grid, or the one in the folder's own ``config.yaml``
(``folder_state``, ``completed_run_metrics``) for the tables and ``publish``.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.io import ResultsError, read_json, read_yaml
from defectseg.benchmarks.engine.per_image import PerImageError, read_per_image
from defectseg.benchmarks.engine.run_lock import RunHeldError, check_not_held

COMPLETED, RUNNING, INTERRUPTED, FAILED, PENDING = STATES = ("completed", "running", "interrupted", "failed", "pending")
RUN_KEYS = ("profile", "dataset", "ratio", "method", "seed")  # of a metrics.json's "run"
METRIC_KEYS = {"standard": ("miou", "mdice"), "paper": ("miou",)}  # what the tables read of each protocol
RETRAIN = "move it away (or delete it) to train this run again, or restore it"


@dataclass(frozen=True)
class RunState:
    """A run folder's state (one of ``STATES``) and what goes with it: a completed run's metrics, a few
    words on a running or failed one (its holder, its failure), and the last step its train log shows
    (running and interrupted runs; None without a readable log)."""

    state: str
    detail: str = ""
    metrics: dict[str, Any] | None = None
    last_step: int | None = None


def run_state(directory: Path, expected_hash: str | None) -> RunState:
    """The state of the run in ``directory`` for config hash ``expected_hash`` (None: any; see the module
    docstring); damaged results are a ResultsError (``completed_run``)."""
    return _state(Path(directory), completed_run(directory, expected_hash))


def folder_state(directory: Path) -> RunState:
    """``run_state`` for the hash recorded in the folder's own ``config.yaml`` (``completed_run_metrics``)."""
    return _state(Path(directory), completed_run_metrics(directory))


def completed_run_metrics(directory: Path) -> dict[str, Any] | None:
    """The metrics of the run in ``directory`` if it is completed for the hash of its ``config.yaml`` (any hash
    without one), else None; damaged results are a ResultsError (``completed_run``)."""
    if not (Path(directory) / layout.METRICS).exists():
        return None
    config_path = Path(directory) / layout.CONFIG
    expected = read_yaml(config_path).get("config_hash") if config_path.exists() else None
    return completed_run(directory, expected)


def _state(directory: Path, metrics: dict[str, Any] | None) -> RunState:
    if metrics is not None:
        return RunState(COMPLETED, metrics=metrics)
    step = _last_logged_step(directory / layout.TRAIN_LOG)
    try:
        check_not_held(directory)
    except RunHeldError as held:
        return RunState(RUNNING, held.holder, last_step=step)
    if (directory / layout.FAILURE).exists():
        return RunState(FAILED, _failure_reason(directory / layout.FAILURE))
    if (directory / layout.LAST).exists():
        return RunState(INTERRUPTED, last_step=step)
    return RunState(PENDING)


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


def _failure_reason(path: Path) -> str:
    """``<error>: <first line of the reason>`` of a ``failure.json``, or why it cannot be read."""
    try:
        failure = read_json(path)
    except ResultsError as error:
        return str(error)
    return f"{failure.get('error')}: {(str(failure.get('reason')).splitlines() or [''])[0][:120]}"


def _last_logged_step(path: Path) -> int | None:
    """The step of the last row of ``train_log.csv``, or None without a readable one."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        return int(rows[-1]["step"]) if rows else None
    except (OSError, csv.Error, UnicodeDecodeError, KeyError, TypeError, ValueError):
        return None
