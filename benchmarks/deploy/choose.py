"""Which run to apply: the best one of a results folder for a dataset.

The best cell (profile, ratio, method) is the one with the highest mean test mIoU over its seeds
(standard protocol, as the report's tables rank methods); of its runs, the one with the best
validation score (``best_val_mdice``, ties to the lowest seed) is taken: choosing the seed by
its test score would select on the test set.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.io import ResultsError, read_json
from defectseg.benchmarks.reporting.aggregate import collect_runs

CELL = ["profile", "ratio", "method"]


@dataclass(frozen=True)
class Choice:
    run_dir: Path
    reason: str  # one line: which cell and seed, and why


def best_run(results_dir: Path, dataset: str, profiles: list[str] | None = None) -> Choice:
    """The best completed run of ``dataset`` under ``results_dir`` (module docstring); a ResultsError if there is none."""
    runs = collect_runs(results_dir, profiles)
    runs = runs[runs["dataset"] == dataset]
    if runs.empty:
        raise ResultsError(f"no completed run of dataset {dataset!r} under {layout.runs_root(results_dir)}: train one, or give --run-dir")
    cells = runs.groupby(CELL, sort=True)["miou"].agg(["mean", "count"]).reset_index()
    best = cells.sort_values("mean", ascending=False, kind="stable", na_position="last").iloc[0]
    members = runs[(runs[CELL] == best[CELL]).all(axis=1)].sort_values("seed")
    scores = [read_json(Path(path) / layout.METRICS).get("best_val_mdice", float("-inf")) for path in members["path"]]
    chosen = max(range(len(scores)), key=lambda i: (scores[i], -i))
    row = members.iloc[chosen]
    reason = (
        f"best of {len(cells)} cell(s) of {dataset!r}: {best['method']} (profile {best['profile']}, ratio {best['ratio']:g}), "
        f"standard test mIoU {best['mean']:.2f}% over {best['count']} seed(s); seed {row['seed']} has the best validation "
        f"mean Dice ({scores[chosen]:.4f})"
    )
    return Choice(Path(row["path"]), reason)
