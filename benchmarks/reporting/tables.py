"""Result tables from the runs on disk: CSV (numbers), Markdown and LaTeX booktabs (display).

Per profile, under ``<out>/<profile>/``:

* ``main_standard`` / ``main_paper``: method x (dataset, labelled ratio), mIoU (%) mean ± std
  over units (labelled subset, seed) with their count, under the standard (dataset-level confusion matrix) and the
  paper (per-image) protocol; the best mean of each column in bold (CSV: ``best`` column).
* ``significance_standard`` / ``significance_paper``: per (dataset, ratio, method) the mean ± std,
  the 95 % CI of the mean over units, and against ``supervised`` and every ``--baseline`` the
  paired difference with its 95 % CI, Holm-adjusted p-value, detectable effect, P(improvement)
  and the mark (▲ / ▼ / ·, see ``benchmarks.reporting.statistics``); "too few units" or "no
  per-image records" where there is no test.
  The main tables carry the mark against the first ``--baseline`` (default ``supervised``).
* ``difference_standard`` / ``difference_paper``: the headline view, method x (dataset, labelled
  ratio), each cell the paired difference from the first ``--baseline`` (default ``supervised``)
  in points with its 95 % CI, mark (after Holm) and detectable effect; "too few units" or "—" where
  there is no test.
* ``ranks_standard`` / ``ranks_paper``: average rank of each method over the cells where all
  ran, the Friedman test (permutation p-value, cells of one dataset permuted together) and, for
  independent cells only, the Nemenyi critical difference.
* ``selection_standard`` / ``selection_paper`` (runs trained with ``train.record_every`` only): per
  method and cell, the test mIoU and the paired difference from the baseline when both choose
  their checkpoint by each of four policies (``benchmarks.reporting.selection``).
* ``selection_leaders`` (the same runs): per cell, the methods ranked by their final-checkpoint difference
  from the baseline averaged over the two protocols, the first three marked (the study's follow-up rule).
* ``spread_standard`` / ``spread_paper`` (cells joined by runs that share a labelled subset, from any profile of
  the folder): the spread over labelled subsets beside the spread over seeds (``benchmarks.reporting.spread``).
* ``resolution_standard`` / ``resolution_paper`` (profiles whose units another profile of the folder trained at
  another image size): each method's gain over the baseline at both sizes and its change, per checkpoint-selection
  policy (``benchmarks.reporting.resolution``).
* ``best_steps``: per method (ablation variants included) and (dataset, ratio), the range of the
  seeds' best validation steps (the tested checkpoints) and how many fall in the last 10 % of the
  run, where a run may not have levelled off.
* ``per_class_iou_<dataset>``: per-class IoU (standard protocol) of each method and ratio.
* the tables of each report section the command hands in (``benchmarks.reporting.sections``; ``run_all.py``:
  the UAPS paper's published numbers beside ours and its ablations).

The table model and the cell formatting come from ``benchmarks.reporting.table_format``; the runs and their
statistics from one ``benchmarks.reporting.results_view.ResultsView``.

A cell without a completed run is shown as "—" (empty in CSV, with ``seeds`` 0), never filled.
A table with none of our numbers at all is not written (a note says so).
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from defectseg.benchmarks.engine.io import remove_stale
from defectseg.benchmarks.reporting.aggregate import aggregate, main_runs
from defectseg.benchmarks.reporting.results_view import ResultsView
from defectseg.benchmarks.reporting.sections import ReportSection
from defectseg.benchmarks.reporting.resolution import resolution_table
from defectseg.benchmarks.reporting.selection import leaders_table, selection_table
from defectseg.benchmarks.reporting.spread import spread_records, spread_table
from defectseg.benchmarks.reporting.statistics import (
    ALPHA, COMPARISON_COLUMNS, DETECTABLE, INTERVALS, N_PERMUTATIONS, RULE, TOO_FEW_UNITS, CellStatistics, RankAnalysis,
)
from defectseg.benchmarks.reporting.table_format import (
    LATE_FRACTION, MISSING, PROTOCOLS, SKIPPED_WHY, Table, best_flags, cell_label, column_best, dataset_label, difference_text, interval, mean_std,
    number, ordered_cells, ordered_datasets, ordered_methods, profile_setup, ratio_label,
)


def natural_key(text: str) -> list[Any]:
    """Sort key putting ``Class2`` before ``Class10`` (metrics.json stores classes in key order)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _protocol_statistics(statistics: CellStatistics, protocol: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cells (index dataset, ratio, method) and comparisons (index ..., baseline) of one protocol."""
    cells = statistics.cells[statistics.cells["protocol"] == protocol].set_index(["dataset", "ratio", "method"])
    comparisons = statistics.comparisons[statistics.comparisons["protocol"] == protocol]
    return cells, comparisons.set_index(["dataset", "ratio", "method", "baseline"])


def main_table(runs: pd.DataFrame, profile: str, protocol: str, statistics: CellStatistics, baseline: str) -> Table | None:
    metric, description = PROTOCOLS[protocol]
    runs = main_runs(runs)
    if runs.empty:
        return None
    cells = aggregate(runs, ["dataset", "ratio", "method"], [metric]).set_index(["dataset", "ratio", "method"])
    columns = ordered_cells(runs)
    methods = ordered_methods(runs["method"])
    grid = cells.reindex(pd.MultiIndex.from_tuples([(d, r, m) for d, r in columns for m in methods], names=cells.index.names))
    grid["seeds"] = grid["seeds"].fillna(0).astype(int)
    grid["best"] = column_best(grid, f"{metric}_mean")
    intervals, comparisons = _protocol_statistics(statistics, protocol)
    grid = grid.join(intervals[["ci_low", "ci_high", "note"]].rename(columns={"note": "ci_note"}))
    tests = comparisons[comparisons.index.get_level_values("baseline") == baseline].droplevel("baseline")
    grid = grid.join(tests[["diff", "diff_ci_low", "diff_ci_high", "p_improvement", "mark", "note"]].rename(columns={"note": "test_note"}))
    for column in ("mark", "ci_note", "test_note"):
        grid[column] = grid[column].astype(object).fillna("")
    header = ["Method", *(cell_label(d, r) for d, r in columns)]
    rows, bold = [], []
    for m in methods:
        entries = [grid.loc[(d, r, m)] for d, r in columns]
        rows.append([m, *(f"{mean_std(e[f'{metric}_mean'], e[f'{metric}_std'], e['seeds'])} {e['mark']}".strip() for e in entries)])
        bold.append([False, *(bool(e["best"]) for e in entries)])
    data = grid.reset_index().rename(columns={f"{metric}_mean": "miou_mean", f"{metric}_std": "miou_std"})
    data.insert(0, "protocol", protocol)
    data.insert(0, "profile", profile)
    data["baseline"] = baseline
    caption = (
        f"mIoU (%) over the defect classes, {description}; mean ± std over units (n = units, each a labelled subset with a training seed); "
        f"best mean per column in bold; marks against {baseline}: {RULE}. 95 % CIs and the tests against every "
        f"baseline: table significance_{protocol}. Profile {profile} ({profile_setup(runs)})."
    )
    return Table(f"main_{protocol}", caption, header, rows, data, bold)


def _difference_cell(test: pd.Series | None) -> tuple[str, str]:
    """``("+3.10 [+1.20, +5.00] ▲", "0.89")``, or why there is no test."""
    if test is None:
        return MISSING, MISSING
    if test["note"] == TOO_FEW_UNITS:
        return f"{TOO_FEW_UNITS} (n={int(test['units'])})", MISSING
    if test["note"]:
        return test["note"], MISSING
    return difference_text(test), number(test["p_improvement"])


def difference_table(runs: pd.DataFrame, profile: str, protocol: str, statistics: CellStatistics, baseline: str) -> Table | None:
    """Method x (dataset, ratio): the paired difference from ``baseline`` with its CI and mark; None without comparisons.

    The first row gives the baseline's own mIoU (mean ± std over units), so the table reads alone.
    """
    metric, description = PROTOCOLS[protocol]
    runs = main_runs(runs)
    _, comparisons = _protocol_statistics(statistics, protocol)
    tests = comparisons[comparisons.index.get_level_values("baseline") == baseline].droplevel("baseline")
    if runs.empty or tests.empty:
        return None
    columns = ordered_cells(runs)
    methods = [m for m in ordered_methods(runs["method"]) if m != baseline]
    header = ["Method", *(cell_label(d, r) for d, r in columns)]
    own = aggregate(runs[runs["method"] == baseline], ["dataset", "ratio"], [metric]).set_index(["dataset", "ratio"])
    rows = [[f"{baseline} (mIoU)", *(
        mean_std(own.loc[c, f"{metric}_mean"], own.loc[c, f"{metric}_std"], own.loc[c, "seeds"]) if c in own.index else MISSING
        for c in columns
    )]]
    records = []
    for m in methods:
        row = [m]
        for d, r in columns:
            test = tests.loc[(d, r, m)] if (d, r, m) in tests.index else None
            row.append(_difference_cell(test)[0])
            records.append({"profile": profile, "protocol": protocol, "dataset": d, "ratio": r, "method": m, "baseline": baseline,
                            **{f: None if test is None else test[f] for f in COMPARISON_COLUMNS}})
        rows.append(row)
    data = pd.DataFrame(records)
    data["units"] = data["units"].astype("Int64")
    caption = (
        f"Difference from {baseline} in mIoU points, {description} (first row: {baseline}'s own mIoU, mean ± std over units): "
        f"paired over the same units (labelled subset, seed) and test images, with its {INTERVALS}; {RULE}; {DETECTABLE}; "
        f"— where {baseline} or the method has no run. Means, CIs of the means, p-values and "
        f"P(improvement): table significance_{protocol}. Profile {profile} ({profile_setup(runs)})."
    )
    return Table(f"difference_{protocol}", caption, header, rows, data)


def significance_table(runs: pd.DataFrame, profile: str, protocol: str, statistics: CellStatistics, baselines: Sequence[str]) -> Table | None:
    metric, description = PROTOCOLS[protocol]
    runs = main_runs(runs)
    if runs.empty:
        return None
    cells = aggregate(runs, ["dataset", "ratio", "method"], [metric]).set_index(["dataset", "ratio", "method"])
    intervals, comparisons = _protocol_statistics(statistics, protocol)
    order = [(d, r, m) for d, r in ordered_cells(runs) for m in ordered_methods(runs.loc[(runs["dataset"] == d) & (runs["ratio"] == r), "method"])]
    header = ["Dataset", "Labels", "Method", "mIoU (%)", "95 % CI",
              *(h for b in baselines for h in (f"Δ vs {b} [95 % CI] (MDE)", f"p Holm vs {b}", f"P(> {b})"))]
    rows, records = [], []
    for key in order:
        cell, ci = cells.loc[key], intervals.loc[key]
        row = [dataset_label(key[0]), ratio_label(key[1]), key[2], mean_std(cell[f"{metric}_mean"], cell[f"{metric}_std"], cell["seeds"]),
               ci["note"] or interval(ci["ci_low"], ci["ci_high"])]
        record = {"profile": profile, "protocol": protocol, "dataset": key[0], "ratio": key[1], "method": key[2],
                  "miou_mean": cell[f"{metric}_mean"], "miou_std": cell[f"{metric}_std"], "seeds": int(cell["seeds"]),
                  "ci_low": ci["ci_low"], "ci_high": ci["ci_high"], "ci_note": ci["note"]}
        for b in baselines:
            test = comparisons.loc[(*key, b)] if (*key, b) in comparisons.index else None
            text, improvement = ("(baseline)", MISSING) if b == key[2] else _difference_cell(test)
            tested = test is not None and not test["note"]
            row += [text, number(test["p_holm"], 3) if tested else MISSING, improvement]
            record.update({f"vs_{b}_{f}": None if test is None else test[f] for f in COMPARISON_COLUMNS})
        rows.append(row)
        records.append(record)
    caption = (
        f"Is a difference real? mIoU (%), {description}: mean ± std over n units; {INTERVALS}, of the mean and of Δ, the "
        f"paired difference from the baseline (same units, same test images) in points; p Holm: the two-sided p-value of "
        f"Δ = 0 after Holm's correction over this table's comparisons with that baseline; {DETECTABLE}; P(> b): probability "
        f"that a run of the method beats a run of the baseline (all pairs of runs at the paired units, ties ½). {RULE}. "
        f"Profile {profile} ({profile_setup(runs)})."
    )
    data = pd.DataFrame(records)
    for b in baselines:
        data[f"vs_{b}_units"] = data[f"vs_{b}_units"].astype("Int64")
    return Table(f"significance_{protocol}", caption, header, rows, data, label_columns=3)


def best_steps_table(runs: pd.DataFrame, profile: str) -> Table | None:
    """Method (ablation variants included) x (dataset, ratio): the seeds' best validation steps and how many
    are late in the run."""
    runs = runs.dropna(subset=["best_step"])
    if runs.empty:
        return None
    columns = ordered_cells(runs)
    rows, records = [], []
    for m in ordered_methods(runs["method"]):
        row = [m]
        for d, r in columns:
            cell = runs[(runs["dataset"] == d) & (runs["ratio"] == r) & (runs["method"] == m)]
            if cell.empty:
                row.append(MISSING)
                continue
            late = cell["best_step"] > (1 - LATE_FRACTION) * cell["iterations"]
            low, high = int(cell["best_step"].min()), int(cell["best_step"].max())
            row.append(f"{low:,}{'' if low == high else f'–{high:,}'} ({int(late.sum())} of {len(cell)} late)")
            records += [{"profile": profile, "dataset": d, "ratio": r, "method": m, "seed": run.seed, "best_step": int(run.best_step),
                         "iterations": int(run.iterations), "late": bool(is_late)}
                        for run, is_late in zip(cell.itertuples(), late)]
        rows.append(row)
    header = ["Method", *(cell_label(d, r) for d, r in columns)]
    caption = (
        f"Best validation step (the tested checkpoint) of each method's seeds: range over seeds, and how many seeds "
        f"peaked in the last {LATE_FRACTION:.0%} of the run (late: the run may not have levelled off; the validation "
        f"curves figure shows the curves). Profile {profile} ({profile_setup(runs)})."
    )
    return Table("best_steps", caption, header, rows, pd.DataFrame(records))


def ranks_table(runs: pd.DataFrame, profile: str, protocol: str, ranks: tuple[pd.DataFrame, RankAnalysis]) -> Table | None:
    """Average ranks and the Friedman test from ``ranks`` (``ResultsView.ranks``: the cell means and their analysis)."""
    _, description = PROTOCOLS[protocol]
    runs = main_runs(runs)
    if runs.empty:
        return None
    scores, analysis = ranks
    if analysis.average_ranks.size < 2:
        return None
    best = analysis.average_ranks.index[0]
    means = scores.loc[analysis.blocks].mean()
    rows, records = [], []
    for method, rank in analysis.average_ranks.items():
        differs = MISSING if not analysis.testable or method == best else (
            "yes" if rank - analysis.average_ranks[best] > analysis.critical_difference else "no")
        rows.append([method, number(rank), number(means[method]), differs])
        records.append({"profile": profile, "protocol": protocol, "method": method, "average_rank": rank, "mean_miou": means[method],
                        "differs_from_best": differs, "cells": len(analysis.blocks), "friedman_statistic": analysis.friedman_statistic,
                        "friedman_p": analysis.friedman_p, "friedman_p_error": analysis.friedman_p_error,
                        "critical_difference": analysis.critical_difference,
                        **({f"nemenyi_p_{m}": analysis.nemenyi_p.loc[method, m] for m in analysis.nemenyi_p} if analysis.testable else {})})
    cells = ", ".join(cell_label(d, r) for d, r in analysis.blocks)
    if math.isnan(analysis.friedman_p):
        test = f"no Friedman test: {analysis.note}"
    else:
        test = (f"Friedman χ² = {analysis.friedman_statistic:.2f}, permutation p = {analysis.friedman_p:.3f} "
                f"(± {analysis.friedman_p_error:.3f} Monte-Carlo error, {N_PERMUTATIONS:,} permutations of the methods within "
                f"each cell, cells of one dataset permuted together as they share its test set)")
        if analysis.testable:
            test += (f"; Nemenyi critical difference CD = {analysis.critical_difference:.2f} at α = {ALPHA:g}: methods whose "
                     f"average ranks differ by more than CD differ significantly (read only when the Friedman test rejects)")
        else:
            test += f"; {analysis.note}"
    caption = (
        f"Average rank (1 = best) of each method over the {len(analysis.blocks)} dataset × ratio cells where every method "
        f"ran ({cells}), by mean mIoU (%), {description}; {test}. Profile {profile} ({profile_setup(runs)})."
    )
    excluded = ", ".join(cell_label(d, r) for d, r in analysis.excluded)
    notes = [f"left out (not every method ran): {excluded}"] if analysis.excluded else []
    header = ["Method", "Average rank", "Mean mIoU (%)", f"Differs from {best} (Nemenyi)"]
    return Table(f"ranks_{protocol}", caption, header, rows, pd.DataFrame(records), notes=notes)


def per_class_tables(runs: pd.DataFrame, profile: str) -> list[Table]:
    runs = main_runs(runs)
    tables = []
    for dataset in ordered_datasets(runs["dataset"]):
        subset = runs[runs["dataset"] == dataset]
        long = pd.DataFrame(
            [
                {"ratio": run.ratio, "method": run.method, "seed": run.seed, "protocol": protocol, "class": name,
                 "iou": float("nan") if value is None else 100 * value}
                for run in subset.itertuples()
                for protocol, column in (("standard", "per_class_iou"), ("paper", "paper_per_class_iou"))
                for name, value in getattr(run, column).items()
            ]
        )
        if long.empty:
            continue
        cells = aggregate(long, ["ratio", "method", "protocol", "class"], ["iou"])
        standard = cells[cells["protocol"] == "standard"]
        classes = sorted({c for c in long.loc[long["protocol"] == "standard", "class"] if c != "background"}, key=natural_key)
        lookup = standard.set_index(["ratio", "method", "class"])
        header = ["Labels", "Method", *classes, "mIoU", "n"]
        rows, bold = [], []
        methods = ordered_methods(subset["method"])
        for ratio in sorted(subset["ratio"].unique()):
            block = [[lookup["iou_mean"].get((ratio, m, c), float("nan")) for c in classes] for m in methods]
            flags = [best_flags(column) for column in zip(*block)] if block else []
            for i, m in enumerate(methods):
                miou = subset[(subset["ratio"] == ratio) & (subset["method"] == m)]["miou"]
                rows.append([ratio_label(ratio), m, *(number(v) for v in block[i]), number(miou.mean()) if len(miou) else MISSING, str(len(miou))])
                bold.append([False, False, *(f[i] for f in flags), False, False])
        data = cells.assign(profile=profile, dataset=dataset)[
            ["profile", "dataset", "ratio", "method", "protocol", "class", "iou_mean", "iou_std", "seeds"]]
        caption = (
            f"Per-class IoU (%) on {dataset_label(dataset)}, standard protocol, mean over n seeds (std and the "
            f"paper protocol in the CSV); best per class and ratio in bold. Profile {profile} ({profile_setup(subset)})."
        )
        tables.append(Table(f"per_class_iou_{dataset}", caption, header, rows, data, bold, label_columns=2))
    return tables


def build_tables(view: ResultsView, profile: str, sections: Sequence[ReportSection] = ()) -> tuple[list[Table], list[str]]:
    """Every table of one profile's runs (the generic ones, then each section's), and the names of the tables
    left out for lack of data."""
    runs = view.profile_runs(profile)
    statistics, baseline = view.statistics(profile), view.baseline
    has_main = not main_runs(runs).empty
    spread = spread_records(view.spread_points(profile), profile)
    candidates: list[tuple[str, Table | None]] = [
        *((f"main_{p}", main_table(runs, profile, p, statistics, baseline)) for p in PROTOCOLS),
        *((f"difference_{p}", difference_table(runs, profile, p, statistics, baseline)) for p in PROTOCOLS),
        *((f"significance_{p}", significance_table(runs, profile, p, statistics, view.baselines)) for p in PROTOCOLS),
        *((f"ranks_{p}", ranks_table(runs, profile, p, view.ranks(profile, p)) if has_main else None) for p in PROTOCOLS),
        *((f"selection_{p}", selection_table(view.selection_tests(profile), main_runs(runs), profile, p, baseline)) for p in PROTOCOLS),
        ("selection_leaders", leaders_table(view.selection_tests(profile), main_runs(runs), profile, baseline)),
        *((f"spread_{p}", spread_table(spread, runs, profile, p)) for p in PROTOCOLS),
        *((f"resolution_{p}", resolution_table(view.resolution_tests(profile), runs, profile, p)) for p in PROTOCOLS),
        ("best_steps", best_steps_table(runs, profile)),
        *((t.name, t) for t in per_class_tables(runs, profile)),
        *(candidate for section in sections for candidate in section.tables(view, profile)),
    ]
    tables = [table for _, table in candidates if table is not None]
    return tables, [name for name, table in candidates if table is None]


@dataclass(frozen=True)
class ProfileTables:
    """One profile's tables, the names of those left out for lack of data, and the files written."""

    tables: list[Table]
    skipped: list[str]
    files: list[Path]


def write_tables(view: ResultsView, out: Path, sections: Sequence[ReportSection] = ()) -> tuple[dict[str, ProfileTables], list[str]]:
    """Write every profile's tables to ``out/<profile>/``; returns them per profile, and notes."""
    built: dict[str, ProfileTables] = {}
    notes: list[str] = []
    for profile in view.profiles:
        if not view.has_runs(profile):
            notes.append(f"profile {profile}: no completed runs under {view.results_dir / 'runs' / profile}; no tables")
            continue
        tables, skipped = build_tables(view, profile, sections)
        files = [path for table in tables for path in table.write(Path(out) / profile)]
        built[profile] = ProfileTables(tables, skipped, files)
        notes += [f"profile {profile}: table {name} skipped: nothing to show ({SKIPPED_WHY})" for name in skipped]
        stale = remove_stale(Path(out) / profile, files, (".csv", ".md", ".tex"))
        notes += [f"profile {profile}: removed {path}, an earlier build's table not made from these runs" for path in stale]
    return built, notes
