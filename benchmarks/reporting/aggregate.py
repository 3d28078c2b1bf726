"""Collect run directories into tables: one row per run, then mean ± std over seeds per cell.

A run directory is ``<results>/runs/<profile>/<dataset>/<ratio>/<method>/seed<k>/``. It is
*completed* when its ``metrics.json`` carries the config hash of its ``config.yaml``
(``run_folder.completed_run``: complete metrics, readable per-image records; damaged ones are a
ResultsError), *failed* when it holds a ``failure.json``, and *incomplete* otherwise (running,
killed, or a stale ``metrics.json`` from an older config). Metric values are stored as fractions; here they become
percentages (mIoU, mDice) so every table and figure shows %.

Ablation variants (``method`` a variant name, ``base_method`` the registered method) are told
apart by their resolved ``method_options`` from ``config.yaml``, never by their names.

The runs of one cell (profile, dataset, ratio, method) must share their config apart from the
seed (``benchmarks.engine.config.hashed_config``): a cell mixing, say, 100- and 120-iteration runs is a
ResultsError naming two such runs and the keys that differ, never one silent mean.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.config import config_differences
from defectseg.benchmarks.engine.io import ResultsError, read_json, read_yaml
from defectseg.benchmarks.engine.run_folder import completed_run
from defectseg.benchmarks.reporting.paper import ABLATION_OPTIONS, option_value

RUN_KEYS = ["profile", "dataset", "ratio", "method", "seed"]
CELL_KEYS = ["profile", "dataset", "ratio", "method"]
RUN_COLUMNS = [
    *RUN_KEYS, "base_method", "miou", "mdice", "paper_miou", "miou_with_bg", "pixel_accuracy",
    "params_m", "gmacs", "eval_ms", "image_size", "iterations", "best_step", "precision", "train_seconds", "path",
]
FAILURE_COLUMNS = [*RUN_KEYS, "status", "error", "reason", "path"]


def find_profiles(results_dir: Path) -> list[str]:
    """Names of the profiles with a folder under ``results_dir/runs``."""
    root = layout.runs_root(results_dir)
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _profiles(results_dir: Path, profile: str | Iterable[str] | None) -> list[str]:
    if profile is None:
        return find_profiles(results_dir)
    return [profile] if isinstance(profile, str) else list(profile)


def run_directories(results_dir: Path, profile: str | Iterable[str] | None = None) -> list[Path]:
    """Every ``seed<k>`` run directory of the given profiles (default: all), sorted."""
    return sorted(d for name in _profiles(results_dir, profile) for d in layout.profile_run_dirs(results_dir, name))


def require_profiles(results_dir: Path, profiles: Iterable[str] | None) -> None:
    """ResultsError naming the profiles found if one of ``profiles`` has no folder under ``results_dir/runs``."""
    found = find_profiles(results_dir)
    unknown = [name for name in profiles or [] if name not in found]
    if unknown:
        raise ResultsError(f"no runs of profile {', '.join(map(repr, unknown))} under {layout.runs_root(results_dir)} "
                           f"(profiles there: {', '.join(found) or 'none'})")


def completed_run_metrics(directory: Path) -> dict[str, Any] | None:
    """The metrics of the run in ``directory`` if it is completed for the hash of its ``config.yaml`` (any hash
    without one), else None; damaged results are a ResultsError (``run_folder.completed_run``)."""
    if not (directory / layout.METRICS).exists():
        return None
    config_path = directory / layout.CONFIG
    expected = read_yaml(config_path).get("config_hash") if config_path.exists() else None
    return completed_run(directory, expected)


def run_status(directory: Path) -> str:
    """``completed``, ``failed`` or ``incomplete`` (see the module docstring)."""
    if completed_run_metrics(directory) is not None:
        return "completed"
    return "failed" if (directory / layout.FAILURE).exists() else "incomplete"


def _percent(value: float | None) -> float:
    return float("nan") if value is None else 100.0 * value


def _number(value: float | None, scale: float = 1.0) -> float:
    return float("nan") if value is None else value * scale


def _run_row(directory: Path, metrics: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    standard, paper, run = metrics["standard"], metrics["paper"], metrics["run"]
    options = config.get("method_options") or {}
    train = config.get("train") or {}
    variant_ms = metrics.get("variant_ms_per_image") or {}
    variant_macs = metrics.get("variant_macs") or {}
    row: dict[str, Any] = {
        **{key: run[key] for key in RUN_KEYS},
        "base_method": config.get("base_method") or run["method"],
        "miou": _percent(standard["miou"]),
        "mdice": _percent(standard["mdice"]),
        "paper_miou": _percent(paper["miou"]),
        "miou_with_bg": _percent(standard.get("miou_with_bg")),
        "pixel_accuracy": _percent(standard.get("pixel_accuracy")),
        "params_m": _number(metrics.get("params"), 1e-6),
        "gmacs": _number(metrics.get("macs"), 1e-9),
        "eval_ms": _number(metrics.get("eval_ms_per_image")),
        "image_size": train.get("image_size", float("nan")),
        "iterations": train.get("iterations", float("nan")),
        "best_step": _number(metrics.get("best_step")),
        "precision": metrics.get("precision") or train.get("precision"),  # what the run used (config: may be "auto")
        "train_seconds": _number(metrics.get("train_seconds")),
        "path": str(directory),
        "per_class_iou": standard.get("per_class_iou") or {},
        "paper_per_class_iou": paper.get("per_class_iou") or {},
        "options": options,
        "environment": metrics.get("environment") or {},
    }
    for key in ABLATION_OPTIONS:
        row[f"opt_{key}"] = option_value(key, options)
    for name, variant in (metrics.get("variants") or {}).items():
        row[f"{name}:miou"] = _percent(variant["standard"]["miou"])
        row[f"{name}:paper_miou"] = _percent(variant["paper"]["miou"])
        row[f"{name}:eval_ms"] = _number(variant_ms.get(name))
        row[f"{name}:gmacs"] = _number(variant_macs.get(name), 1e-9)
    return row


def collect_runs(results_dir: Path, profile: str | Iterable[str] | None = None) -> pd.DataFrame:
    """One row per completed run of the given profiles (default: all); mIoU and mDice in %.

    Besides ``RUN_COLUMNS``: ``per_class_iou`` / ``paper_per_class_iou`` (dicts of fractions),
    ``options`` (method_options), ``environment``, ``opt_<name>`` for each ``ABLATION_OPTIONS``
    entry (losses canonicalised), and ``<variant>:miou``, ``<variant>:paper_miou``,
    ``<variant>:eval_ms``, ``<variant>:gmacs`` for each prediction variant (NaN when not recorded).
    """
    rows = []
    first_of_cell: dict[tuple, tuple[Path, dict[str, Any]]] = {}
    for directory in run_directories(results_dir, profile):
        metrics = completed_run_metrics(directory)
        if metrics is None:
            continue
        config_path = directory / layout.CONFIG
        config = read_yaml(config_path) if config_path.exists() else {}
        row = _run_row(directory, metrics, config)
        _check_same_config(first_of_cell.setdefault(tuple(row[key] for key in CELL_KEYS), (directory, config)), (directory, config))
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in RUN_COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(dtype=float)
    return frame


def check_one_configuration(directories: Sequence[Path]) -> None:
    """ResultsError naming two runs if the runs in ``directories`` (one table cell) differ in more than their unit."""
    configs = [(Path(d), read_yaml(Path(d) / layout.CONFIG) if (Path(d) / layout.CONFIG).exists() else {}) for d in directories]
    for other in configs[1:]:
        _check_same_config(configs[0], other)


def _check_same_config(first: tuple[Path, dict[str, Any]], other: tuple[Path, dict[str, Any]]) -> None:
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


def collect_failures(results_dir: Path, profile: str | Iterable[str] | None = None) -> pd.DataFrame:
    """One row per failed or incomplete run, with its error and reason (from ``failure.json``)."""
    rows = []
    for directory in run_directories(results_dir, profile):
        status = run_status(directory)
        if status == "completed":
            continue
        row = {**layout.run_parts(results_dir, directory), "status": status, "error": "", "reason": "", "path": str(directory)}
        if status == "failed":
            failure = read_json(directory / layout.FAILURE)
            row.update(error=failure.get("error", ""), reason=failure.get("reason", ""))
        else:
            row["reason"] = "no metrics.json for the current config.yaml (still running, interrupted, or stale)"
        rows.append(row)
    return pd.DataFrame(rows, columns=FAILURE_COLUMNS)


def variant_metric(runs: pd.DataFrame, variant: str, metric: str) -> pd.Series:
    """``<variant>:<metric>`` of each run; where not recorded, the default prediction's ``metric``
    if the run's ``eval_mode`` option says the default prediction is that variant, else NaN."""
    recorded = runs[f"{variant}:{metric}"] if f"{variant}:{metric}" in runs else pd.Series(float("nan"), index=runs.index)
    is_default = pd.Series([options.get("eval_mode") == variant for options in runs["options"]], index=runs.index, dtype=bool)
    return recorded.where(recorded.notna() | ~is_default, runs[metric])


def main_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs of registered methods with their own options (not ablation variants)."""
    return runs[runs["method"] == runs["base_method"]]


def aggregate(runs: pd.DataFrame, keys: Sequence[str], values: Sequence[str]) -> pd.DataFrame:
    """Mean, std (over seeds, ddof 1) and ``seeds`` (run count) of ``values`` per group of ``keys``."""
    columns = [f"{v}_{stat}" for v in values for stat in ("mean", "std")]
    present = [v for v in values if v in runs]
    if runs.empty:
        return pd.DataFrame(columns=[*keys, *columns, "seeds"])
    grouped = runs.groupby(list(keys), sort=True, dropna=False)
    table = grouped[present].agg(["mean", "std"]) if present else pd.DataFrame(index=grouped.size().index)
    table.columns = [f"{v}_{stat}" for v, stat in table.columns]
    for column in columns:
        if column not in table:
            table[column] = float("nan")
    table = table[columns]
    table["seeds"] = grouped.size()
    return table.reset_index()


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of each (profile, dataset, ratio, method) cell, with the seed count."""
    summary = aggregate(runs, CELL_KEYS, ["miou", "paper_miou", "mdice", "train_seconds"])
    return summary.drop(columns="train_seconds_std").rename(columns={"train_seconds_mean": "train_seconds"})


def format_summary(summary: pd.DataFrame) -> str:
    """A small plain-text table for the terminal."""
    if summary.empty:
        return "(no completed runs)"

    def cell(mean: float, std: float) -> str:
        return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"

    table = pd.DataFrame(
        {
            "dataset": summary["dataset"],
            "ratio": summary["ratio"],
            "method": summary["method"],
            "mIoU (standard, %)": [cell(m, s) for m, s in zip(summary["miou_mean"], summary["miou_std"])],
            "mIoU (paper, %)": [cell(m, s) for m, s in zip(summary["paper_miou_mean"], summary["paper_miou_std"])],
            "seeds": summary["seeds"],
            "train s": summary["train_seconds"].round(1),
        }
    )
    return table.to_string(index=False)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _reference_options(family: pd.DataFrame, base_method: str) -> dict[str, Any]:
    """Options of the plain ``base_method`` run if there is one, else each option's most common value."""
    plain = family[family["method"] == base_method]
    if not plain.empty:
        return dict(plain.iloc[0]["options"])
    keys = {key for options in family["options"] for key in options}
    reference = {}
    for key in keys:
        counts = Counter(yaml.safe_dump(options.get(key)) for options in family["options"])
        reference[key] = yaml.safe_load(counts.most_common(1)[0][0])
    return reference


def ablation_runs(runs: pd.DataFrame, option: str, base_method: str = "uaps", per_ratio: bool = True) -> pd.DataFrame:
    """Runs of ``base_method`` (plain or variants) whose options differ from the reference only in ``option``.

    The reference is, per profile, the plain ``base_method`` run's options (or, without one, each
    option's most common value). Adds ``value``: the option's value (losses canonicalised), and
    ``reference``: whether it is the reference's value (the default the other settings are read
    against, whether run as the plain method or as a variant repeating its options). Only
    cells where the option takes more than one value are kept: cells are (dataset, ratio), or
    datasets when not ``per_ratio`` (for a study across ratios). When a variant repeats the
    reference's options, its seeds are not counted twice.
    """
    if runs.empty:
        return runs.assign(value=pd.Series(dtype=object), reference=pd.Series(dtype=bool))
    parts = []
    for _, family in runs[runs["base_method"] == base_method].groupby("profile", sort=True):
        reference = _reference_options(family, base_method)
        keep = [
            all(_same(options.get(k), reference.get(k)) for k in set(options) | set(reference) if k != option)
            for options in family["options"]
        ]
        selected = family[keep]
        selected = selected.assign(value=[option_value(option, o) for o in selected["options"]])
        selected = selected[selected["value"].notna()]
        default = option_value(option, reference)
        selected = selected.assign(reference=[_same(v, default) for v in selected["value"]])
        # the plain run first, so that it wins over a variant repeating its options
        selected = selected.assign(_plain=selected["method"] != base_method).sort_values(["_plain", "method"])
        selected = selected.drop_duplicates(["dataset", "ratio", "seed", "value"], keep="first")
        cell = ["dataset", "ratio"] if per_ratio else ["dataset"]
        varied = selected.groupby(cell)["value"].transform(lambda v: v.astype(str).nunique() > 1)
        parts.append(selected[varied.astype(bool)].drop(columns="_plain"))
    if not parts:
        return runs.iloc[0:0].assign(value=pd.Series(dtype=object), reference=pd.Series(dtype=bool))
    return pd.concat(parts, ignore_index=True)
