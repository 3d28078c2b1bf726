"""The results layout: the one module that spells out where everything of a results directory lives.

    <results>/
      runs/<profile>/summary.json                          what the last ``benchmark`` invocation did
      runs/<profile>/<dataset>/<ratio>/<method>/seed<k>/   one run (the file names below)
      splits/<dataset>_<ratio>_s<split_seed>_<hash12>.json one split, shared by every run made on it
      tables/  figures/  report/                           written by ``run_all.py tables|plots|report``
      cache/                                               decoded arrays (``datasets.cache``)

A run folder holds ``CONFIG`` (the resolved config with its hash), ``SPLIT_REF`` (which shared
split file the run used) or, in runs written before shared split files, ``SPLIT`` (a copy of the
split), ``TRAIN_LOG``, ``BEST`` and ``LAST`` (checkpoints), ``PER_IMAGE``, ``TRAJECTORY`` (with
``train.record_every`` set), ``METRICS`` (written last: the run completed) or ``FAILURE`` (why it
failed), and ``LOCK`` while a process runs it.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from defectseg.benchmarks.engine.io import ResultsError

RUNS, SPLITS, TABLES, FIGURES, REPORT, CACHE = "runs", "splits", "tables", "figures", "report", "cache"
SUMMARY = "summary.json"

CONFIG = "config.yaml"
METRICS = "metrics.json"
TRAIN_LOG = "train_log.csv"
PER_IMAGE = "per_image.npz"
TRAJECTORY = "trajectory.npz"  # per-image validation and test counts along training (``benchmarks.engine.trajectory``)
LAST = "last.pt"
BEST = "best.pt"
FAILURE = "failure.json"
SPLIT = "split.json"  # a run's own copy of its split (runs written before shared split files)
SPLIT_REF = "split.ref"  # the name of the shared split file in ``splits/`` the run was made on
LOCK = ".lock"
RUN_PARTS = ("profile", "dataset", "ratio", "method", "seed")  # the folders below ``runs/``, in order


def runs_root(results_dir: Path) -> Path:
    return Path(results_dir) / RUNS


def profile_dir(results_dir: Path, profile: str) -> Path:
    return runs_root(results_dir) / profile


def summary_path(results_dir: Path, profile: str) -> Path:
    return profile_dir(results_dir, profile) / SUMMARY


def run_dir(results_dir: Path, run_config: dict[str, Any]) -> Path:
    """``<results>/runs/<profile>/<dataset>/<ratio>/<method>/seed<k>`` of a run config."""
    return profile_dir(results_dir, run_config["profile"]) / run_label(run_config)


def run_label(run_config: dict[str, Any]) -> str:
    """``<dataset>/<ratio>/<method>/seed<k>``: where a run lies within its profile's folder."""
    c = run_config
    return f"{c['dataset']}/{c['ratio']:g}/{c['method']}/seed{c['seed']}"


def profile_run_dirs(results_dir: Path, profile: str) -> list[Path]:
    """Every run folder of one profile, sorted."""
    return sorted(d for d in profile_dir(results_dir, profile).glob("*/*/*/seed*") if d.is_dir())


def find_profiles(results_dir: Path) -> list[str]:
    """Names of the profiles with a folder under ``results_dir/runs``."""
    root = runs_root(results_dir)
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def run_directories(results_dir: Path, profile: str | Iterable[str] | None = None) -> list[Path]:
    """Every ``seed<k>`` run folder of the given profiles (default: all), sorted."""
    if profile is None:
        names = find_profiles(results_dir)
    else:
        names = [profile] if isinstance(profile, str) else list(profile)
    return sorted(d for name in names for d in profile_run_dirs(results_dir, name))


def require_profiles(results_dir: Path, profiles: Iterable[str] | None) -> None:
    """ResultsError naming the profiles found if one of ``profiles`` has no folder under ``results_dir/runs``."""
    found = find_profiles(results_dir)
    unknown = [name for name in profiles or [] if name not in found]
    if unknown:
        raise ResultsError(f"no runs of profile {', '.join(map(repr, unknown))} under {runs_root(results_dir)} "
                           f"(profiles there: {', '.join(found) or 'none'})")


def results_dir_of(directory: Path) -> Path:
    """The results directory a run folder ``<results>/runs/<profile>/<dataset>/<ratio>/<method>/seed<k>`` lies in."""
    return Path(directory).parents[len(RUN_PARTS)]


def run_parts(results_dir: Path, directory: Path) -> dict[str, Any]:
    """profile, dataset, ratio (float), method and seed (int) of a run folder, read from its path."""
    profile, dataset, ratio, method, seed = Path(directory).relative_to(runs_root(results_dir)).parts
    return dict(zip(RUN_PARTS, (profile, dataset, float(ratio), method, int(seed.removeprefix("seed")))))


def splits_dir(results_dir: Path) -> Path:
    return Path(results_dir) / SPLITS


def split_path(results_dir: Path, dataset: str, ratio: float, split_seed: int, digest: str) -> Path:
    """The shared split file of (dataset, ratio, split seed) whose content hashes to ``digest``."""
    return splits_dir(results_dir) / f"{dataset}_{ratio:g}_s{split_seed}_{digest[:12]}.json"


def tables_dir(results_dir: Path) -> Path:
    return Path(results_dir) / TABLES


def figures_dir(results_dir: Path) -> Path:
    return Path(results_dir) / FIGURES


def report_dir(results_dir: Path) -> Path:
    return Path(results_dir) / REPORT


def cache_dir(results_dir: Path) -> Path:
    return Path(results_dir) / CACHE
