"""Copy the completed runs of a results directory into another one, without their checkpoints.

    run_all.py publish --results-dir SCRATCH --to results/reference/<study> [--profile P ...]

A long grid trains in a scratch folder (its checkpoints are large); what tables, figures and the
report read is small, and is what a study commits: for each completed run (a ``metrics.json`` of
the folder's config) its config, training log, per-image records and metrics, and the split it
was made on (stored once in the target's ``splits/``, the run folder referring to it). Checkpoints, locks
and failed or unfinished runs are not copied. ``metrics.json`` is copied last, so an interrupted
publish leaves no run that looks completed; running it again completes it.

The runs pass the tables' checks before anything is copied: completed by the one test of
``run_state.completed_run`` (complete metrics, readable per-image records; damaged results are an
error naming the file), and one configuration per table cell, the target's runs of that cell
included. A run already completed in the target is left as it is when it has the same config
hash; one of another configuration, or a run in progress there, is an error naming the folder.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from defectseg.datasets.atomic import atomic_open

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.cells import check_one_configuration
from defectseg.benchmarks.engine.io import ResultsError, read_json
from defectseg.benchmarks.engine.run_state import completed_run_metrics
from defectseg.benchmarks.engine.split_store import record_split, recorded_split

RESULT_FILES = (layout.CONFIG, layout.TRAIN_LOG, layout.PER_IMAGE, layout.TRAJECTORY)  # copied when present, before METRICS


@dataclass
class Published:
    """What one publish did: run labels (``<profile>/<dataset>/<ratio>/<method>/seed<k>``) by outcome."""

    copied: list[str] = field(default_factory=list)
    already_there: list[str] = field(default_factory=list)


def completed_run_dirs(results_dir: Path, profiles: list[str] | None = None) -> list[Path]:
    """The completed run folders under ``results_dir`` (of ``profiles``, if given), sorted: a ``metrics.json``
    whose config hash matches the folder's ``config.yaml`` (``run_state.completed_run_metrics``)."""
    layout.require_profiles(results_dir, profiles)
    names = profiles or layout.find_profiles(results_dir)
    return [d for name in names for d in layout.profile_run_dirs(results_dir, name) if completed_run_metrics(d) is not None]


def publish(source: Path, target: Path, profiles: list[str] | None = None) -> Published:
    """Copy every completed run of ``source`` (of ``profiles``, if given) into ``target``; see the module doc."""
    if not layout.runs_root(source).is_dir():
        raise ResultsError(f"{layout.runs_root(source)} not found: expected a results directory (holding runs/)")
    if Path(source).resolve() == Path(target).resolve():
        raise ResultsError(f"--to {target} is the results directory itself: publish into another folder")
    directories = completed_run_dirs(source, profiles)
    labels = [str(directory.relative_to(layout.runs_root(source))) for directory in directories]
    there = {label: _already_there(directory, layout.runs_root(target) / label) for directory, label in zip(directories, labels)}
    _check_cells(directories, target)
    outcome = Published()
    for directory, label in zip(directories, labels):
        if there[label]:
            outcome.already_there.append(label)
            continue
        _copy_run(directory, source, layout.runs_root(target) / label, target)
        outcome.copied.append(label)
    return outcome


def _check_cells(directories: list[Path], target: Path) -> None:
    """ResultsError unless each table cell's runs, with the target's completed runs of that cell, share one configuration."""
    cells: dict[tuple[str, ...], list[Path]] = {}
    for directory in directories:
        cells.setdefault(directory.parent.parts[-4:], []).append(directory)
    for cell, runs in cells.items():
        published = layout.runs_root(target).joinpath(*cell)
        seeds = {run.name for run in runs}
        in_target = sorted(d for d in published.glob("seed*") if d.is_dir() and d.name not in seeds and completed_run_metrics(d) is not None)
        check_one_configuration(runs + in_target)


def _config_hash(metrics_path: Path) -> str:
    hash_ = read_json(metrics_path).get("config_hash")
    if not isinstance(hash_, str):
        raise ResultsError(f"{metrics_path} has no config_hash: not a metrics.json written by a run")
    return hash_


def _already_there(directory: Path, destination: Path) -> bool:
    """True if ``destination`` holds this run completed; an error if it holds another or a live one."""
    if (destination / layout.METRICS).exists():
        there, here = _config_hash(destination / layout.METRICS), _config_hash(directory / layout.METRICS)
        if there != here:
            raise ResultsError(
                f"{destination} holds a completed run of another configuration (config hash {there[:12]}, "
                f"{directory} has {here[:12]}): not overwriting it; move one of them away"
            )
        return True
    if (destination / layout.LAST).exists() or (destination / layout.LOCK).exists():
        raise ResultsError(f"{destination} holds a run in progress (a checkpoint or a lock): not publishing over it")
    return False


def _copy_run(directory: Path, source: Path, destination: Path, target: Path) -> None:
    split = recorded_split(directory, source)
    if split is None:
        raise ResultsError(f"{directory} records no split ({layout.SPLIT_REF} or {layout.SPLIT}): cannot publish it")
    for name in RESULT_FILES:
        if (directory / name).exists():
            _copy_file(directory / name, destination / name)
    record_split(destination, target, split)
    _copy_file(directory / layout.METRICS, destination / layout.METRICS)


def _copy_file(path: Path, destination: Path) -> None:
    with open(path, "rb") as source, atomic_open(destination, "wb") as copy:
        shutil.copyfileobj(source, copy)
