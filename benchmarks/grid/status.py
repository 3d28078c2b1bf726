"""How far a profile's grid is: every run classified from its folder, reading only.

Each run's state is ``run_state.run_state`` of its folder for its config hash: ``completed``,
``running`` (a lock of another host that cannot be checked from here says so), ``failed`` (also
when its results are damaged: the error is shown), ``interrupted`` (the last step in
``train_log.csv`` is shown) or ``pending``.

Nothing is trained, locked, broken or written; ``run_all.py benchmark`` would skip the completed
runs, leave the running ones alone and train the rest.

The work left is estimated from the grid's own completed runs: each method's pace (median training
seconds per iteration, validation included, over its completed runs at that image size) times the
iterations its unfinished runs still have to do. A method with no completed run in the grid takes
the pace of its completed runs of other profiles in the same results folder (a new grid beside a
finished one, such as a study's ablations), and the estimate says so; a method with none anywhere
is named, not guessed.
"""
from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.io import ResultsError, read_json, read_yaml
from defectseg.benchmarks.engine.run import RunConfig
from defectseg.benchmarks.engine.run_state import COMPLETED, FAILED, INTERRUPTED, STATES, run_state


@dataclass(frozen=True)
class RunStatus:
    """One run's state and, for running/interrupted/failed runs, a few words on it."""

    run_config: dict[str, Any]
    state: str
    detail: str = ""
    seconds_per_step: float | None = None  # completed runs: training seconds / iterations
    steps_done: int = 0  # running and interrupted runs: the last logged step


def grid_status(runs: list[dict[str, Any]], results_dir: Path) -> list[RunStatus]:
    """The state of every run, in grid order (see the module docstring)."""
    return [_status(RunConfig(run_config), results_dir) for run_config in runs]


def _status(run: RunConfig, results_dir: Path) -> RunStatus:
    try:
        state = run_state(run.directory(results_dir), run.hash)
    except ResultsError as error:
        return RunStatus(run.config, FAILED, str(error))
    if state.state == COMPLETED:
        return RunStatus(run.config, COMPLETED, seconds_per_step=_seconds_per_step(run.config, state.metrics))
    detail = state.detail
    if state.state == INTERRUPTED:
        detail = f"logged up to step {'?' if state.last_step is None else state.last_step} of {run.train.iterations}"
    return RunStatus(run.config, state.state, detail, steps_done=state.last_step or 0)


def format_status(profile: str, statuses: list[RunStatus], other_paces: Mapping[tuple[str, int], list[float]] | None = None) -> list[str]:
    """Lines: one per (dataset, ratio) cell with its counts and per-method completed/total, one per
    running, interrupted or failed run, and the total; ``other_paces``: see ``remaining_work``."""
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
    estimate = remaining_work(statuses, other_paces)
    if estimate.runs:
        source = "this grid's completed runs"
        if estimate.borrowed:
            source = f"completed runs (this grid's; for {', '.join(estimate.borrowed)}: other profiles' in this results folder)"
        line = (f"left: ~{estimate.seconds / 3600:.1f} core-hours of training for {estimate.runs} run(s) at the pace of "
                f"{source} (wall time: divide by the grid's --jobs)")
        if estimate.unknown:
            line += f"; not estimated (no completed run yet): {', '.join(estimate.unknown)}"
        lines.append(line)
    elif estimate.unknown:
        lines.append(f"left: not estimated (no completed run yet of {', '.join(estimate.unknown)})")
    return lines


@dataclass(frozen=True)
class RemainingWork:
    """Training seconds left for ``runs`` unfinished runs; ``unknown``: methods (at an image size) without a pace;
    ``borrowed``: those paced by other profiles' runs."""

    seconds: float
    runs: int
    unknown: list[str]
    borrowed: list[str]


def _pace_key(run_config: dict[str, Any]) -> tuple[str, int]:
    return run_config.get("base_method") or run_config["method"], run_config["train"]["image_size"]


def _pace_label(key: tuple[str, int]) -> str:
    return f"{key[0]} @ {key[1]} px"


def _seconds_per_step(run_config: dict[str, Any], metrics: dict[str, Any]) -> float | None:
    seconds = metrics.get("train_seconds")
    return seconds / run_config["train"]["iterations"] if isinstance(seconds, (int, float)) and seconds > 0 else None


def other_profiles_paces(results_dir: Path, profile: str) -> dict[tuple[str, int], list[float]]:
    """Seconds per iteration of the completed runs of every other profile under ``results_dir``, by (method, image
    size). A run whose ``config.yaml`` or ``metrics.json`` cannot be read gives no pace (this only sizes an estimate)."""
    paces: dict[tuple[str, int], list[float]] = {}
    for directory in layout.run_directories(results_dir, [name for name in layout.find_profiles(results_dir) if name != profile]):
        if not (directory / layout.METRICS).exists():
            continue  # not completed
        try:
            run_config = read_yaml(directory / layout.CONFIG)
            pace = _seconds_per_step(run_config, read_json(directory / layout.METRICS))
        except (OSError, ResultsError, KeyError, TypeError):
            continue
        if pace is not None:
            paces.setdefault(_pace_key(run_config), []).append(pace)
    return paces


def remaining_work(statuses: list[RunStatus], other_paces: Mapping[tuple[str, int], list[float]] | None = None) -> RemainingWork:
    """The unfinished runs' iterations left times their method's median pace among the completed runs, or among
    ``other_paces`` (other profiles' runs, ``other_profiles_paces``) for a method the grid has not completed yet."""
    other_paces = other_paces or {}
    paces: dict[tuple[str, int], list[float]] = {}
    for s in statuses:
        if s.state == "completed" and s.seconds_per_step is not None:
            paces.setdefault(_pace_key(s.run_config), []).append(s.seconds_per_step)
    seconds, runs, unknown, borrowed = 0.0, 0, [], []
    for s in statuses:
        if s.state == "completed":
            continue
        key = _pace_key(s.run_config)
        own = key in paces
        if not own and not other_paces.get(key):
            unknown += [_pace_label(key)] if _pace_label(key) not in unknown else []
            continue
        if not own:
            borrowed += [_pace_label(key)] if _pace_label(key) not in borrowed else []
        left = max(s.run_config["train"]["iterations"] - s.steps_done, 0)
        seconds += left * statistics.median(paces[key] if own else other_paces[key])
        runs += 1
    return RemainingWork(seconds, runs, unknown, borrowed)


def _counts(statuses: list[RunStatus]) -> str:
    counts = Counter(s.state for s in statuses)
    return ", ".join(f"{counts[state]} {state}" for state in STATES if counts[state])
