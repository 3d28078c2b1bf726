"""Collect ``metrics.json`` files into a table: one row per run, then mean ± std over seeds."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .io import read_json

RUN_KEYS = ["profile", "dataset", "ratio", "method", "seed"]


def collect_runs(results_dir: Path, profile: str | None = None) -> pd.DataFrame:
    """One row per completed run under ``results_dir/runs`` (optionally of one profile); mIoU in %."""
    root = Path(results_dir) / "runs"
    pattern = f"{profile}/*/*/*/seed*/metrics.json" if profile else "*/*/*/*/seed*/metrics.json"
    rows = []
    for path in sorted(root.glob(pattern)):
        metrics = read_json(path)
        rows.append(
            {
                **{key: metrics["run"][key] for key in RUN_KEYS},
                "miou": _percent(metrics["standard"]["miou"]),
                "mdice": _percent(metrics["standard"]["mdice"]),
                "paper_miou": _percent(metrics["paper"]["miou"]),
                "params_m": metrics["params"] / 1e6,
                "gmacs": metrics["macs"] / 1e9,
                "train_seconds": metrics["train_seconds"],
                "path": str(path.parent),
            }
        )
    return pd.DataFrame(rows, columns=[*RUN_KEYS, "miou", "mdice", "paper_miou", "params_m", "gmacs", "train_seconds", "path"])


def _percent(value: float | None) -> float:
    return float("nan") if value is None else 100.0 * value


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of each (profile, dataset, ratio, method) cell, with the seed count."""
    cells = ["profile", "dataset", "ratio", "method"]
    grouped = runs.groupby(cells, sort=True)
    summary = grouped[["miou", "paper_miou", "mdice"]].agg(["mean", "std"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    summary["seeds"] = grouped.size()
    summary["train_seconds"] = grouped["train_seconds"].mean()
    return summary.reset_index()


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
