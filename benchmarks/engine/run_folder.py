"""Guards of a run folder while a run is trained in it: another configuration's run, and failures.

(Whether a run is done, running or left over is ``run_state``'s to say.) A run folder belongs to
one configuration: a folder holding a completed run (``metrics.json``) or an interrupted one
(``last.pt`` without ``failure.json``) of another config hash is never trained over
(``RunConflictError``, naming the differing keys); a failed run of another config is replaced.
A run that raises records why in its ``failure.json`` (``failure_recorded``).
"""
from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from defectseg.methods import ConfigError

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.config import config_differences
from defectseg.benchmarks.engine.io import ResultsError, read_yaml, write_json
from defectseg.benchmarks.engine.run import RunConfig


class RunConflictError(ConfigError):
    """The run folder holds a completed or interrupted run of another configuration."""


def check_run_folder(run: RunConfig, results_dir: Path) -> None:
    """RunConflictError if the run folder holds a completed or interrupted run of another config."""
    directory = run.directory(results_dir)
    config_path = directory / layout.CONFIG
    if not config_path.exists():
        return
    try:
        there = read_yaml(config_path)
    except ResultsError as error:
        raise ResultsError(f"{error}; move that run folder away (or delete it) to train this run again") from error
    if there.get("config_hash") == run.hash:
        return
    completed = (directory / layout.METRICS).exists()
    if not completed and not ((directory / layout.LAST).exists() and not (directory / layout.FAILURE).exists()):
        return  # nothing of value: a failed run, or one killed before its first checkpoint
    differences = config_differences(there, run.config, ("there", "requested")) or ["config hash only"]
    raise RunConflictError(
        f"{directory} holds {'a completed' if completed else 'an interrupted'} run of another configuration "
        f"({'; '.join(differences)}): not training over it. Use another --results-dir for the new "
        "configuration, or move (or delete) that folder to replace the run"
    )


def write_failure(run: RunConfig, results_dir: Path, error: BaseException) -> None:
    """Record why a run failed in its ``failure.json`` (with ``error``'s traceback, if it was raised)."""
    write_json(
        run.directory(results_dir) / layout.FAILURE,
        {
            "config_hash": run.hash,
            "error": type(error).__name__,
            "reason": str(error),
            "traceback": "".join(traceback.format_exception(error)),
        },
    )


@contextmanager
def failure_recorded(run: RunConfig, results_dir: Path) -> Iterator[None]:
    """Create the run folder and clear its ``failure.json``; write a new one if the body raises.

    A ``failure.json`` that cannot be written (a full disk, a folder turned read-only) is left out:
    the body's error is the one raised.
    """
    directory = run.directory(results_dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / layout.FAILURE).unlink(missing_ok=True)
    try:
        yield
    except BaseException as error:
        with suppress(OSError):
            write_failure(run, results_dir, error)
        raise
