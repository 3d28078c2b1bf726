"""How far a profile's grid is: every run classified from its folder, reading only.

A run is, in this order of precedence,

* ``completed``: its ``metrics.json`` is of this exact config (``run_folder.completed_metrics``);
* ``running``: a live process holds its ``.lock`` (``locks.FileLock.is_live``);
* ``failed``: it has a ``failure.json``, or an unreadable ``metrics.json``;
* ``interrupted``: it has a ``last.pt`` to resume from (the last step in ``train_log.csv`` is shown);
* ``pending``: none of these (never started, or only a run of another config is there).

Nothing is trained, locked, broken or written; ``run_all.py benchmark`` would skip the completed
runs, leave the running ones alone and train the rest.
"""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.engine import layout
from benchmarks.engine.io import ResultsError, read_json
from benchmarks.engine.run_folder import completed_metrics
from benchmarks.grid.locks import FileLock, describe_owner

STATES = ("completed", "running", "interrupted", "failed", "pending")


@dataclass(frozen=True)
class RunStatus:
    """One run's state and, for running/interrupted/failed runs, a few words on it."""

    run_config: dict[str, Any]
    state: str
    detail: str = ""


def run_status(run_config: dict[str, Any], results_dir: Path) -> RunStatus:
    """The state of one run (see the module docstring)."""
    directory = layout.run_dir(results_dir, run_config)
    try:
        if completed_metrics(run_config, results_dir) is not None:
            return RunStatus(run_config, "completed")
    except ResultsError as error:
        return RunStatus(run_config, "failed", str(error))
    lock = FileLock(directory / layout.LOCK)
    if lock.is_live():
        return RunStatus(run_config, "running", describe_owner(lock.owner()))
    if (directory / layout.FAILURE).exists():
        return RunStatus(run_config, "failed", _failure_reason(directory / layout.FAILURE))
    if (directory / layout.LAST).exists():
        step = _last_logged_step(directory / layout.TRAIN_LOG)
        return RunStatus(run_config, "interrupted", f"logged up to step {step} of {run_config['train']['iterations']}")
    return RunStatus(run_config, "pending")


def grid_status(runs: list[dict[str, Any]], results_dir: Path) -> list[RunStatus]:
    """The state of every run, in grid order."""
    return [run_status(run_config, results_dir) for run_config in runs]


def format_status(profile: str, statuses: list[RunStatus]) -> list[str]:
    """Lines: one per (dataset, ratio) cell with its counts and per-method completed/total, one per
    running, interrupted or failed run, and the total."""
    cells: dict[tuple[str, float], list[RunStatus]] = {}
    for status in statuses:
        cells.setdefault((status.run_config["dataset"], status.run_config["ratio"]), []).append(status)
    lines = []
    for (dataset, ratio), cell in cells.items():
        lines.append(f"{dataset} {ratio:g}: {_counts(cell)}")
        done = Counter(s.run_config["method"] for s in cell if s.state == "completed")
        total = Counter(s.run_config["method"] for s in cell)  # methods in grid order
        lines.append("    " + ", ".join(f"{method} {done[method]}/{count}" for method, count in total.items()))
    lines += [f"  {s.state}: {layout.run_label(s.run_config)} ({s.detail})" for s in statuses if s.detail]
    counts = Counter(s.state for s in statuses)
    rest = ", ".join(f"{counts[state]} {state}" for state in STATES[1:])
    lines.append(f"{profile}: {counts['completed']} of {len(statuses)} runs completed, {rest}")
    return lines


def _counts(statuses: list[RunStatus]) -> str:
    counts = Counter(s.state for s in statuses)
    return ", ".join(f"{counts[state]} {state}" for state in STATES if counts[state])


def _failure_reason(path: Path) -> str:
    try:
        failure = read_json(path)
    except ResultsError as error:
        return str(error)
    return f"{failure.get('error')}: {(str(failure.get('reason')).splitlines() or [''])[0][:120]}"


def _last_logged_step(path: Path) -> str:
    """The step of the last row of ``train_log.csv``, or ``?`` without a readable one."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError):
        return "?"
    return (rows[-1].get("step") or "?") if rows else "?"
