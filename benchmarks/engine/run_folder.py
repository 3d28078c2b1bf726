"""What a run folder says about its run: completed (for this config), held by another config, or failed.

A run folder belongs to one configuration: a folder holding a completed run (``metrics.json``) or
an interrupted one (``last.pt`` without ``failure.json``) of another config hash is never trained
over (``RunConflictError``, naming the differing keys); a failed run of another config is replaced.
"""
from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from methods import ConfigError

from benchmarks.engine import layout
from benchmarks.engine.config import config_differences, config_hash
from benchmarks.engine.io import ResultsError, read_json, read_yaml, write_json


class RunConflictError(ConfigError):
    """The run folder holds a completed or interrupted run of another configuration."""


def completed_metrics(run_config: dict[str, Any], results_dir: Path) -> dict[str, Any] | None:
    """The run's ``metrics.json`` if it exists for this exact config (same hash), else None.

    The one test of "is this run done?". A ``metrics.json`` that cannot be read is a ResultsError
    naming it and what to do.
    """
    metrics_path = layout.run_dir(results_dir, run_config) / layout.METRICS
    if not metrics_path.exists():
        return None
    try:
        metrics = read_json(metrics_path)
    except ResultsError as error:
        raise ResultsError(f"{error}; move it away (or delete it) to train this run again, or restore it") from error
    return metrics if metrics.get("config_hash") == config_hash(run_config) else None


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
    """Create the run folder and clear its ``failure.json``; write a new one if the body raises."""
    directory = layout.run_dir(results_dir, run_config)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / layout.FAILURE).unlink(missing_ok=True)
    try:
        yield
    except BaseException as error:
        write_failure(run_config, results_dir, error)
        raise
