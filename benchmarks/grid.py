"""The grid: methods x datasets x ratios x seeds of a profile, expanded into runs and executed."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from datasets import available_datasets
from methods import available_methods

from .config import resolve_run, run_dir
from .runner import train_run


@dataclass
class GridResult:
    completed: list[dict[str, Any]] = field(default_factory=list)
    failed: list[tuple[dict[str, Any], str]] = field(default_factory=list)


def expand_grid(
    profile: dict[str, Any],
    data_root: Path | None = None,
    methods: list[str] | None = None,
    datasets: list[str] | None = None,
    ratios: list[float] | None = None,
    seeds: list[int] | None = None,
) -> list[dict[str, Any]]:
    """Resolved run configs, dataset-major; explicit arguments override the profile's lists."""
    method_names = methods or profile["methods"]
    if method_names == "all" or method_names == ["all"]:
        method_names = available_methods()
    dataset_names = datasets or profile["datasets"]
    if dataset_names == "available" or dataset_names == ["available"]:
        dataset_names = available_datasets(data_root)
    return [
        resolve_run(profile, dataset, ratio, method, seed)
        for dataset in dataset_names
        for ratio in (ratios or profile["ratios"])
        for method in method_names
        for seed in (seeds or profile["seeds"])
    ]


def run_grid(
    runs: list[dict[str, Any]],
    results_dir: Path,
    data_root: Path | None = None,
    device: str = "auto",
    cache_dir: Path | None = None,
) -> GridResult:
    """Run every run in turn; a failing run is recorded (failure.json) and the grid carries on."""
    result = GridResult()
    for run_config in tqdm(runs, desc="benchmark", unit="run"):
        try:
            result.completed.append(train_run(run_config, results_dir, data_root, device, cache_dir))
        except Exception as error:  # noqa: BLE001 - isolation: recorded, reported, exit code set
            result.failed.append((run_config, f"{type(error).__name__}: {error}"))
            tqdm.write(f"FAILED {run_dir(results_dir, run_config)}: {type(error).__name__}: {error}")
    return result
