"""One configuration per table cell: the runs of a cell (profile, dataset, ratio, method) differ only in their unit.

A cell's mean is over its seeds; runs of one cell whose configs differ in more than the seed (and the
split seed under ``split_seed: per_seed``) would mix two experiments, and are a ResultsError naming
two such runs and the keys that differ (``benchmarks.engine.results_format.hashed_config``).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.config import config_differences
from defectseg.benchmarks.engine.io import ResultsError, read_yaml


def check_one_configuration(directories: Sequence[Path]) -> None:
    """ResultsError naming two runs if the runs in ``directories`` (one table cell) differ in more than their unit."""
    configs = [(Path(d), read_yaml(Path(d) / layout.CONFIG) if (Path(d) / layout.CONFIG).exists() else {}) for d in directories]
    for other in configs[1:]:
        check_same_config(configs[0], other)


def check_same_config(first: tuple[Path, dict[str, Any]], other: tuple[Path, dict[str, Any]]) -> None:
    """ResultsError naming both runs if two runs of one cell differ in more than their unit: the seed, and the
    split seed where each run's split seed is its seed (``split_seed: per_seed``)."""
    (first_dir, first_config), (other_dir, other_config) = first, other
    if not first_config or not other_config:
        return  # a run without config.yaml (written by hand): nothing to compare
    per_unit = all(config.get("split_seed") == config.get("seed") for config in (first_config, other_config))
    ignore = ("config_hash", "seed", "split_seed") if per_unit else ("config_hash", "seed")
    differences = config_differences(first_config, other_config, (first_dir.name, other_dir.name), ignore=ignore)
    if differences:
        raise ResultsError(
            f"{first_dir} and {other_dir} are runs of one table cell with different configurations "
            f"({'; '.join(differences)}): their mean would mix two experiments. Move one of them to another "
            "results directory (or delete it), or rerun it with the other's configuration"
        )
