"""The ``run_all.py benchmark`` command lines that rerun exactly the completed runs of a profile.

Each run's ``config.yaml`` is compared with what its profile resolves to today
(``benchmarks.engine.config.resolve_run``); every difference becomes a ``--set`` override (the recipe and
split seed first, since they change other defaults). Runs with the same overrides share commands:
one per dataset and seed list when its methods x ratios are all there, else one per method.
Every run is checked: with its overrides it must resolve to the config hash its ``config.yaml``
records. Runs for which no command can be found (their profile or method is unknown here, or a
key cannot be set from the command line) are named in a note instead.
"""
from __future__ import annotations

import json
import shlex
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from defectseg.methods import ConfigError

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.config import ABSENT, config_hash, differing_keys, load_profile, resolve_run, resolve_split_seed
from defectseg.benchmarks.engine.io import ResultsError, read_yaml

SELECTION_KEYS = ("profile", "dataset", "ratio", "method", "base_method", "seed", "config_hash")
FIRST_KEYS = ("recipe", "split_seed")  # overridden before the others: they change other defaults
BENCHMARK = ".venv/bin/python run_all.py benchmark"

Cells = dict[tuple[str, float, str], list[int]]  # (dataset, ratio, method) -> seeds


def benchmark_commands(runs: pd.DataFrame, profile: str, results_dir: Path) -> tuple[list[str], list[str]]:
    """(command lines, notes) that retrain exactly the completed runs of ``profile`` in ``runs``."""
    groups: dict[tuple[str, ...], Cells] = defaultdict(lambda: defaultdict(list))
    unmatched: dict[str, list[str]] = defaultdict(list)  # reason -> run directories
    for run in runs[runs["profile"] == profile].itertuples():
        try:
            overrides = run_overrides(Path(run.path) / layout.CONFIG)
        except (ConfigError, ResultsError, KeyError) as error:
            unmatched[str(error)].append(run.path)
            continue
        groups[tuple(overrides)][(run.dataset, float(run.ratio), run.method)].append(int(run.seed))
    commands = [
        _command(profile, results_dir, overrides, *selection)
        for overrides, cells in groups.items()
        for selection in _selections(cells)
    ]
    notes = [f"no command reruns {len(paths)} run(s) exactly (e.g. {paths[0]}): {reason}" for reason, paths in unmatched.items()]
    return commands, notes


def run_overrides(config_path: Path) -> list[str]:
    """``--set`` values that make the run's profile resolve to the config in ``config_path``.

    A ConfigError if the profile or method is unknown here or no such values reproduce its hash.
    """
    config = read_yaml(config_path)
    name, where = config["profile"], [config[key] for key in ("dataset", "ratio", "method", "seed")]
    default = load_profile(name)
    first = [f"{key}={json.dumps(config[key])}" for key in FIRST_KEYS if key in config and config[key] != _profile_value(default, key, config)]
    profile = load_profile(name, first)
    overrides = first + [
        _override(key, value, config, profile)
        for key, _, value in differing_keys(resolve_run(profile, *where), config, ignore=SELECTION_KEYS)
    ]
    if config_hash(resolve_run(load_profile(name, overrides), *where)) != config.get("config_hash"):
        raise ConfigError(f"profile {name!r} with {overrides or 'no overrides'} does not resolve to its config hash")
    return overrides


def _profile_value(profile: dict[str, Any], key: str, config: dict[str, Any]) -> Any:
    """The profile's value of a FIRST_KEYS ``key`` for the run ``config`` (``split_seed: per_seed`` is the run's seed)."""
    return resolve_split_seed(profile[key], config["seed"]) if key == "split_seed" else profile[key]


def _override(key: str, value: Any, config: dict[str, Any], profile: dict[str, Any]) -> str:
    """``key=value`` in the profile's terms for one dotted key where a run config differs from its profile."""
    head, _, rest = key.partition(".")
    dataset, method = config["dataset"], config["method"]
    if value == ABSENT:
        raise ConfigError(f"its config.yaml lacks {key}, which no --set can remove")
    if head == "train":
        target = f"train_per_dataset.{dataset}.{rest}" if rest in profile["train_per_dataset"].get(dataset, {}) else key
    elif head == "method_options" and method in profile["method_variants"]:
        target = f"method_variants.{method}.options.{rest}"
    elif head == "method_options":
        target = f"method_options.{config['base_method']}.{rest}"
    elif head == "dataset_options":
        target = f"dataset_options.{dataset}.{rest}"
    else:
        raise ConfigError(f"{key} differs from the profile and has no --set equivalent")
    return f"{target}={json.dumps(value)}"


def _selections(cells: Cells) -> list[tuple[str, list[str], list[float], list[int]]]:
    """(dataset, methods, ratios, seeds) whose products together are exactly ``cells``."""
    partitions: dict[tuple[str, tuple[int, ...]], list[tuple[str, float]]] = defaultdict(list)
    for (dataset, ratio, method), seeds in cells.items():
        partitions[(dataset, tuple(sorted(seeds)))].append((method, ratio))
    selections = []
    for (dataset, seeds), pairs in sorted(partitions.items()):
        methods = sorted({method for method, _ in pairs})
        ratios = sorted({ratio for _, ratio in pairs})
        if len(pairs) == len(methods) * len(ratios):
            selections.append((dataset, methods, ratios, list(seeds)))
        else:
            selections += [(dataset, [m], sorted(r for mm, r in pairs if mm == m), list(seeds)) for m in methods]
    return selections


def _command(profile: str, results_dir: Path, overrides: tuple[str, ...], dataset: str, methods: list[str],
             ratios: list[float], seeds: list[int]) -> str:
    parts = [
        BENCHMARK, "--profile", profile, "--results-dir", shlex.quote(str(results_dir)), "--datasets", dataset,
        "--methods", *methods, "--ratios", *map(repr, ratios), "--seeds", *map(str, seeds),
    ]
    return " ".join(parts + [f"--set {shlex.quote(item)}" for item in overrides])
