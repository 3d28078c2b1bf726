"""Collect run directories into tables: one row per run, then mean ± std over seeds per cell.

A run directory is ``<results>/runs/<profile>/<dataset>/<ratio>/<method>/seed<k>/``. It is
*completed* when its ``metrics.json`` carries the config hash of its ``config.yaml``
(``run_state.completed_run``: complete metrics, readable per-image records; damaged ones are a
ResultsError), *failed* when it holds a ``failure.json``, and *incomplete* otherwise (running,
killed, or a stale ``metrics.json`` from an older config). Metric values are stored as fractions; here they become
percentages (mIoU, mDice) so every table and figure shows %.

Each row keeps the run's resolved ``method_options`` from ``config.yaml`` (``options``), so that
ablation variants (``method`` a variant name, ``base_method`` the registered method) are told apart
by their options, never by their names.

The runs of one cell (profile, dataset, ratio, method) must share their config apart from the
seed (``benchmarks.engine.results_format.hashed_config``): a cell mixing, say, 100- and 120-iteration runs is a
ResultsError naming two such runs and the keys that differ, never one silent mean.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.cells import check_same_config
from defectseg.benchmarks.engine.io import read_json, read_yaml
from defectseg.benchmarks.engine.layout import run_directories
from defectseg.benchmarks.engine.run_state import COMPLETED, FAILED, completed_run_metrics, folder_state

RUN_KEYS = ["profile", "dataset", "ratio", "method", "seed"]
CELL_KEYS = ["profile", "dataset", "ratio", "method"]
RUN_COLUMNS = [
    *RUN_KEYS, "base_method", "miou", "mdice", "paper_miou", "miou_with_bg", "pixel_accuracy",
    "params_m", "gmacs", "eval_ms", "image_size", "iterations", "best_step", "precision", "train_seconds", "path", "config",
]
FAILURE_COLUMNS = [*RUN_KEYS, "status", "error", "reason", "path"]


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
        "config": config,
    }
    for name, variant in (metrics.get("variants") or {}).items():
        row[f"{name}:miou"] = _percent(variant["standard"]["miou"])
        row[f"{name}:paper_miou"] = _percent(variant["paper"]["miou"])
        row[f"{name}:eval_ms"] = _number(variant_ms.get(name))
        row[f"{name}:gmacs"] = _number(variant_macs.get(name), 1e-9)
    return row


def collect_runs(results_dir: Path, profile: str | Iterable[str] | None = None) -> pd.DataFrame:
    """One row per completed run of the given profiles (default: all); mIoU and mDice in %.

    Besides ``RUN_COLUMNS``: ``per_class_iou`` / ``paper_per_class_iou`` (dicts of fractions),
    ``options`` (method_options), ``environment``, and ``<variant>:miou``, ``<variant>:paper_miou``,
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
        check_same_config(first_of_cell.setdefault(tuple(row[key] for key in CELL_KEYS), (directory, config)), (directory, config))
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in RUN_COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(dtype=float)
    return frame


def collect_failures(results_dir: Path, profile: str | Iterable[str] | None = None) -> pd.DataFrame:
    """One row per failed or incomplete run, with its error and reason (from ``failure.json``)."""
    rows = []
    for directory in run_directories(results_dir, profile):
        state = folder_state(directory).state
        if state == COMPLETED:
            continue
        status = "failed" if state == FAILED else "incomplete"
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
