"""Figures from the runs on disk (PNG + PDF, seaborn style; no pyplot, so no global backend), per profile.

Under ``<out>/<profile>/``:

1. ``miou_vs_ratio_standard`` / ``miou_vs_ratio_paper``: label-efficiency curves, mIoU against
   the labelled ratio, one line per method (error bars: std over units; band: 95 % CI over units
   of the mean, where the runs have per-image records), one panel per dataset; a point
   significantly better / worse than the baseline (first ``--baseline``, default supervised) is
   drawn as an up / down triangle (rule: ``benchmarks.reporting.statistics``).
2. ``critical_difference_standard`` / ``critical_difference_paper``: average ranks over the cells
   where every method ran, methods not told apart by the Nemenyi test joined by a bar, the
   critical difference drawn above (needs 3 methods and 2 such cells, no two of one dataset: the
   Nemenyi test assumes independent cells).
3. ``difference_standard`` / ``difference_paper``: each method's paired difference from the
   baseline with its 95 % CI as a horizontal bar, a panel per (dataset, ratio), coloured by the mark
   (better / worse / no evidence); cells without a test are listed, not drawn.
4. ``selection_standard`` / ``selection_paper`` (runs with ``trajectory.npz`` only): each method's
   paired difference from the baseline under each checkpoint-selection policy, a panel per cell.
   ``spread_standard`` / ``spread_paper`` (cells joined by runs sharing a labelled subset): each
   method's runs, one per labelled subset beside the seed replicates of a shared subset.
   ``resolution_standard`` / ``resolution_paper`` (units another profile trained at another image size): each
   method's gain over the baseline at both sizes, a panel per checkpoint-selection policy.
5. ``validation_curves``: validation mean Dice against the step, a panel per (dataset, ratio); the
   last 10 % of the run is shaded (a best step there means the run had not levelled off). For a
   profile of ablation variants only, a panel per group of variants a section names (e.g. one UAPS
   ablation) and cell, a line per setting.
6. the figures of each report section the command hands in (``benchmarks.reporting.sections``;
   ``run_all.py``: the UAPS ablations).

Only results on disk are drawn. A cell without runs is a gap in a line, or a hatched "n/a" slot
among bars, and is listed in the panel ("no runs: ..."); nothing is interpolated. A figure with
no data at all is skipped with a note. Numbers published elsewhere (a section's ``published_points``)
are overlaid as markers labelled as such where they exist. The runs and their statistics come from one
``benchmarks.reporting.results_view.ResultsView``; the look of the figures and how they are saved from
``benchmarks.reporting.figure_style``.
"""
from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scikit_posthocs
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from defectseg.benchmarks.engine.io import remove_stale
from defectseg.benchmarks.reporting.aggregate import aggregate, main_runs
from defectseg.benchmarks.reporting.figure_style import note_missing, panels, save, theme, titled_legend, zero_nan
from defectseg.benchmarks.reporting.results_view import ResultsView, read_train_log
from defectseg.benchmarks.reporting.sections import PublishedPoints, ReportSection
from defectseg.benchmarks.reporting.resolution import POLICIES as RESOLUTION_POLICIES
from defectseg.benchmarks.reporting.selection import POLICIES, POLICY_LABELS
from defectseg.benchmarks.reporting.statistics import ALPHA, BETTER, NO_EVIDENCE, WORSE, CellStatistics, RankAnalysis
from defectseg.benchmarks.reporting.table_format import (
    LATE_FRACTION, PROTOCOLS, SKIPPED_WHY, dataset_label, is_missing, ordered_cells, ordered_datasets, ordered_methods, ratio_label,
)


# ---------------------------------------------------------------------------------------------
# label efficiency and ranks


SIGNIFICANCE_MARKERS = {BETTER: "^", WORSE: "v"}


def _significance_handles(baseline: str) -> list[Line2D]:
    return [Line2D([], [], marker=SIGNIFICANCE_MARKERS[symbol], color="0.3", linestyle="none", markersize=9,
                   label=f"{words} than {baseline} (95 % CI)")
            for symbol, words in ((BETTER, "significantly better"), (WORSE, "significantly worse"))]


def plot_miou_vs_ratio(runs: pd.DataFrame, profile: str, protocol: str, published: Sequence[PublishedPoints],
                       statistics: CellStatistics, baseline: str) -> Figure | None:
    """Label-efficiency curves with their bands and significance marks, and the ``published`` points of ``protocol``."""
    metric, _ = PROTOCOLS[protocol]
    runs = main_runs(runs)
    if runs.empty:
        return None
    cells = aggregate(runs, ["dataset", "ratio", "method"], [metric]).set_index(["dataset", "ratio", "method"])
    intervals = statistics.cells[statistics.cells["protocol"] == protocol].set_index(["dataset", "ratio", "method"])
    tests = statistics.comparisons[(statistics.comparisons["protocol"] == protocol) & (statistics.comparisons["baseline"] == baseline)]
    marks = tests.set_index(["dataset", "ratio", "method"])["mark"]
    methods = ordered_methods(runs["method"])
    colors = dict(zip(methods, sns.color_palette("tab10", len(methods))))
    datasets = ordered_datasets(runs["dataset"])
    fig, axes = panels(len(datasets))
    published = [source for source in published if source.protocol == protocol]
    published_shown: dict[str, PublishedPoints] = {}
    significance_shown = False
    for ax, dataset in zip(axes, datasets):
        ratios = sorted(runs.loc[runs["dataset"] == dataset, "ratio"].unique())
        xs = [100 * r for r in ratios]
        missing = []
        for method in methods:
            keys = [(dataset, r, method) for r in ratios]
            means = [cells[f"{metric}_mean"].get(k, float("nan")) for k in keys]
            stds = [cells[f"{metric}_std"].get(k, float("nan")) for k in keys]
            missing += [f"{method} @ {ratio_label(r)}" for r, m in zip(ratios, means) if is_missing(m)]
            ax.errorbar(xs, means, yerr=zero_nan(stds), label=method, color=colors[method], marker="o", capsize=3)
            low = [intervals["ci_low"].get(k, float("nan")) for k in keys]
            high = [intervals["ci_high"].get(k, float("nan")) for k in keys]
            ax.fill_between(xs, low, high, color=colors[method], alpha=0.15, linewidth=0)
            for x, mean, key in zip(xs, means, keys):
                symbol = marks.get(key, "")
                if symbol in SIGNIFICANCE_MARKERS:
                    ax.plot(x, mean, marker=SIGNIFICANCE_MARKERS[symbol], color=colors[method], markersize=9, linestyle="none", zorder=4)
                    significance_shown = True
        ticks = set(xs)
        for source in published:
            for point in source.points:
                if point["dataset"] == dataset and point["method"] in colors:
                    ax.plot(100 * point["ratio"], point["miou"], **{**source.style, "markerfacecolor": colors[point["method"]]})
                    ticks.add(100 * point["ratio"])
                    published_shown[source.label] = source
        ax.set_title(dataset_label(dataset))
        ax.set_xlabel("labelled training images (%)")
        note_missing(ax, missing)
        ax.set_xticks(sorted(ticks))
    axes[0].set_ylabel(f"mIoU (%), {protocol} protocol")
    handles, _ = axes[0].get_legend_handles_labels()
    handles += [Line2D([], [], **{**source.style, "markerfacecolor": "white"}, label=f"{source.label}, method colour")
                for source in published_shown.values()]
    if significance_shown:
        handles += _significance_handles(baseline)
    titled_legend(fig, handles, f"mIoU against labelled ratio (profile {profile}; mean ± std over units, band: 95 % CI over units)",
                  min(len(handles), 5))
    return fig


def plot_critical_difference(profile: str, protocol: str, analysis: RankAnalysis) -> Figure | None:
    """Critical-difference diagram of the methods' average ranks (``ResultsView.ranks``); None without a Nemenyi
    test (independent cells)."""
    if not analysis.testable:
        return None
    ranks = analysis.average_ranks
    fig = Figure(figsize=(7.5, 1.6 + 0.35 * len(ranks)))
    ax = fig.subplots()
    artists = scikit_posthocs.critical_difference_diagram(ranks, analysis.nemenyi_p, alpha=ALPHA, ax=ax,
                                                          label_fmt_left="{label} ({rank:.2f})",
                                                          label_fmt_right="({rank:.2f}) {label}")
    # the library draws each crossbar through its methods in set order (salted by PYTHONHASHSEED):
    # redraw it left to right so the figure's bytes repeat across processes
    for (crossbar,) in artists["crossbars"]:
        crossbar.set_xdata(sorted(crossbar.get_xdata()))
    cd, start = analysis.critical_difference, ranks.iloc[0]
    ax.plot([start, start + cd], [1.6, 1.6], color="black", linewidth=2)  # above the rank tick labels
    ax.text(start + cd / 2, 1.8, f"CD = {cd:.2f}", ha="center", va="bottom")
    ax.set_ylim(top=2.6)
    ax.grid(False)
    ax.set_xlim(0.5, len(ranks) + 0.5)
    fig.suptitle(
        f"Average rank over {len(analysis.blocks)} dataset × ratio cells, mIoU {protocol} protocol (profile {profile}; 1 = best)\n"
        f"Friedman χ² = {analysis.friedman_statistic:.2f}, permutation p = {analysis.friedman_p:.3f}; bars join methods the Nemenyi "
        f"test does not separate (α = {ALPHA:g}, CD = {analysis.critical_difference:.2f})", fontsize="small")
    return fig


# ---------------------------------------------------------------------------------------------
# paired differences


def _forest_panel(ax: Any, methods: list[str], first: bool, dataset: str, ratio: float, baseline: str,
                  units: dict[str, int]) -> None:
    """The frame of one cell's forest plot: zero line, a row per method (named in the first panel), its paired
    units at the right edge, title, x label."""
    ax.axvline(0.0, color="black", linewidth=0.8)
    for y, method in enumerate(methods):
        if method in units:
            ax.annotate(f"n={units[method]}", xy=(1.0, y), xycoords=("axes fraction", "data"), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=8, color="0.3")
    ax.set_yticks(range(len(methods)))
    ax.set_yticklabels(methods if first else [])
    ax.set_ylim(len(methods) - 0.5, -0.5)
    ax.set_title(f"{dataset_label(dataset)}, {ratio_label(ratio)} labels")
    ax.set_xlabel(f"Δ mIoU vs {baseline} (points)")


MARK_COLORS = {BETTER: "tab:green", WORSE: "tab:red", NO_EVIDENCE: "0.45"}


def plot_differences(runs: pd.DataFrame, profile: str, protocol: str, statistics: CellStatistics, baseline: str) -> Figure | None:
    """Forest plot: each method's paired difference from ``baseline`` with its 95 % CI, a panel per cell.

    None when no method has a test against ``baseline`` (too few paired units everywhere, or no records).
    """
    runs = main_runs(runs)
    tests = statistics.comparisons[(statistics.comparisons["protocol"] == protocol) & (statistics.comparisons["baseline"] == baseline)]
    tested = tests[tests["note"] == ""]
    if runs.empty or tested.empty:
        return None
    cells = ordered_cells(runs)
    methods = [m for m in ordered_methods(runs["method"]) if m != baseline]
    fig, axes = panels(len(cells), width=3.6, height=max(2.4, 0.9 + 0.4 * len(methods)))  # room for the legend above
    tests = tests.set_index(["dataset", "ratio", "method"])
    for ax, (dataset, ratio) in zip(axes, cells):
        untested, units = [], {}
        for y, method in enumerate(methods):
            test = tests.loc[(dataset, ratio, method)] if (dataset, ratio, method) in tests.index else None
            if test is None or test["note"]:
                untested.append(f"{method} ({'no run' if test is None else test['note']})")
                continue
            color, units[method] = MARK_COLORS[test["mark"]], int(test["units"])
            ax.plot([test["diff_ci_low"], test["diff_ci_high"]], [y, y], color=color, linewidth=2.5, solid_capstyle="butt")
            ax.plot(test["diff"], y, "o", color=color, markersize=6)
        _forest_panel(ax, methods, ax is axes[0], dataset, ratio, baseline, units)
        if untested:
            ax.set_xlabel("\n".join([ax.get_xlabel(), *textwrap.wrap("no test: " + "; ".join(untested), 45)]))
    handles = [Line2D([], [], color=MARK_COLORS[symbol], marker="o", linewidth=2.5, label=words)
               for symbol, words in ((BETTER, f"better than {baseline}"), (WORSE, f"worse than {baseline}"),
                                     (NO_EVIDENCE, "no evidence either way"))]
    titled_legend(fig, handles, f"Paired difference from {baseline}, mIoU {protocol} protocol (profile {profile})\n"
                  "dot: estimate, bar: unadjusted 95 % CI over units (colour: mark after Holm)", 3)
    return fig


POLICY_COLORS = dict(zip(POLICIES, ("tab:blue", "tab:orange", "tab:green", "0.55")))


def plot_selection(runs: pd.DataFrame, profile: str, protocol: str, tests: pd.DataFrame, baseline: str) -> Figure | None:
    """Each method's paired difference from ``baseline`` under each checkpoint-selection policy (both sides
    choose by that policy), a panel per cell: how much a gain depends on the checkpoint rule. None without
    trajectories or without a tested comparison."""
    if tests.empty:
        return None
    tested = tests[(tests["protocol"] == protocol) & (tests["note"] == "")]
    if tested.empty:
        return None
    cells = ordered_cells(tested)
    methods = [m for m in ordered_methods(tested["method"]) if m != baseline]
    fig, axes = panels(len(cells), width=4.0, height=max(3.0, 1.8 + 0.6 * len(methods)))
    offsets = dict(zip(POLICIES, (-0.27, -0.09, 0.09, 0.27)))
    for ax, (dataset, ratio) in zip(axes, cells):
        cell = tested[(tested["dataset"] == dataset) & (tested["ratio"] == ratio)].set_index(["method", "policy"])
        for y, method in enumerate(methods):
            for policy in POLICIES:
                if (method, policy) not in cell.index:
                    continue
                test, at = cell.loc[(method, policy)], y + offsets[policy]
                ax.plot([test["diff_ci_low"], test["diff_ci_high"]], [at, at], color=POLICY_COLORS[policy], linewidth=2)
                ax.plot(test["diff"], at, "o" if test["mark"] == NO_EVIDENCE else "D", color=POLICY_COLORS[policy], markersize=5)
        units = {method: int(n) for (method, _), n in cell["units"].items()}
        _forest_panel(ax, methods, ax is axes[0], dataset, ratio, baseline, units)
    handles = [Line2D([], [], color=POLICY_COLORS[p], marker="o", linewidth=2, label=POLICY_LABELS[p]) for p in POLICIES]
    titled_legend(fig, handles, f"Difference from {baseline} by checkpoint-selection policy, mIoU {protocol} protocol (profile "
                  f"{profile})\nbar: unadjusted 95 % CI over units; diamond: significant after Holm (per policy)", 4)
    return fig


def plot_spread(points: pd.DataFrame, profile: str, protocol: str) -> Figure | None:
    """Each method's runs of a cell: one per labelled subset (circles) and the seed replicates of a shared subset
    (triangles), a panel per cell; None without a shared subset (``benchmarks.reporting.spread``)."""
    if points.empty:
        return None
    column = "miou" if protocol == "standard" else "paper_miou"
    cells = ordered_cells(points)
    fig, axes = panels(len(cells), width=max(3.0, 1.0 + 0.55 * points["method"].nunique()), height=3.6)
    for ax, (dataset, ratio) in zip(axes, cells):
        cell = points[(points["dataset"] == dataset) & (points["ratio"] == ratio)]
        methods = ordered_methods(cell["method"])
        for x, method in enumerate(methods):
            runs = cell[cell["method"] == method]
            units = runs[~runs["shared"] | (runs["seed"] == runs["split_seed"])]
            replicates = runs[runs["shared"]]
            ax.plot(np.full(len(units), x - 0.12), units[column], "o", color="tab:blue", alpha=0.75, markersize=5)
            ax.plot(np.full(len(replicates), x + 0.12), replicates[column], "^", color="tab:orange", alpha=0.85, markersize=5)
        ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right")
        ax.set_xlim(-0.5, len(methods) - 0.5)
        ax.set_title(f"{dataset_label(dataset)}, {ratio_label(ratio)} labels")
        ax.set_ylabel(f"test mIoU (%), {protocol}" if ax is axes[0] else "")
    handles = [Line2D([], [], color="tab:blue", marker="o", linestyle="", label="one run per labelled subset"),
               Line2D([], [], color="tab:orange", marker="^", linestyle="", label="seeds on one shared subset")]
    titled_legend(fig, handles, f"Which images are labelled against which seed trained, mIoU {protocol} protocol (profile {profile})", 2)
    return fig


SIZE_COLORS = ("0.5", "tab:purple")  # the gain at the other image size, at this profile's


def plot_resolution(tests: pd.DataFrame, profile: str, protocol: str, baseline: str) -> Figure | None:
    """Each method's gain over ``baseline`` at the other image size and at this profile's, on the same units, a panel per
    (cell, pair of sizes, checkpoint-selection policy) (``benchmarks.reporting.resolution``); None without such runs."""
    if tests.empty:
        return None
    tested = tests[(tests["protocol"] == protocol) & (tests["note"] == "")]
    if tested.empty:
        return None
    methods = ordered_methods(tested["method"])
    sizes = sorted(set(zip(tested["there_size"], tested["here_size"])))
    present = set(zip(tested["dataset"], tested["ratio"], tested["there_size"], tested["here_size"], tested["policy"]))
    keys = [(dataset, ratio, there, here, policy) for dataset, ratio in ordered_cells(tested) for there, here in sizes
            for policy in RESOLUTION_POLICIES if (dataset, ratio, there, here, policy) in present]
    fig, axes = panels(len(keys), width=3.8, height=max(2.6, 1.4 + 0.5 * len(methods)))
    for ax, (dataset, ratio, there, here, policy) in zip(axes, keys):
        cell = tested[(tested["dataset"] == dataset) & (tested["ratio"] == ratio) & (tested["there_size"] == there)
                      & (tested["here_size"] == here) & (tested["policy"] == policy)].set_index("method")
        for y, method in enumerate(methods):
            if method not in cell.index:
                continue
            test = cell.loc[method]
            for name, offset, color in (("gain_there", -0.15, SIZE_COLORS[0]), ("gain_here", 0.15, SIZE_COLORS[1])):
                ax.plot([test[f"{name}_low"], test[f"{name}_high"]], [y + offset] * 2, color=color, linewidth=2)
                changed = name == "gain_here" and test["mark"] != NO_EVIDENCE
                ax.plot(test[name], y + offset, "D" if changed else "o", color=color, markersize=5)
        _forest_panel(ax, methods, ax is axes[0], dataset, ratio, baseline, {m: int(n) for m, n in cell["units"].items()})
        ax.set_title(f"{ax.get_title()}\n{POLICY_LABELS[policy]}")
    handles = [Line2D([], [], color=SIZE_COLORS[0], marker="o", linewidth=2, label=" / ".join(f"{t} px" for t, _ in sizes)),
               Line2D([], [], color=SIZE_COLORS[1], marker="o", linewidth=2, label=" / ".join(f"{h} px" for _, h in sizes))]
    titled_legend(fig, handles, f"Gain over {baseline} at two image sizes on the same units, mIoU {protocol} protocol (profile "
                  f"{profile})\nbar: unadjusted 95 % CI over units; diamond: the gain changed significantly (Holm, per policy)", 2)
    return fig


# ---------------------------------------------------------------------------------------------
# validation curves


TrainLog = Callable[[str], pd.DataFrame]


def validation_curves(runs: pd.DataFrame, train_log: TrainLog = read_train_log) -> pd.DataFrame:
    """step, val_mdice (%) of every run's ``train_log.csv`` (read by ``train_log``, e.g. ``ResultsView.train_log``),
    with the run's dataset, ratio, method, seed."""
    frames = []
    for row in runs.itertuples():
        log = train_log(row.path)
        frames.append(log.assign(dataset=row.dataset, ratio=row.ratio, method=row.method, seed=row.seed, val_mdice=100 * log["val_mdice"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _variant_panels(runs: pd.DataFrame, sections: Sequence[ReportSection]) -> list[tuple[str, pd.DataFrame]]:
    """(title, runs with a ``line`` label and a ``reference`` flag) per panel of a profile of variants: one
    per group of variants a section names (``ReportSection.variant_groups``) and (dataset, ratio), a line per
    setting; then one per cell for the variants of no such group, a line per variant."""
    found = []
    shown: set[str] = set()
    for group in (group for section in sections for group in section.variant_groups(runs)):
        shown |= set(group.runs["method"])
        for dataset, ratio in ordered_cells(group.runs):
            cell = group.runs[(group.runs["dataset"] == dataset) & (group.runs["ratio"] == ratio)]
            found.append((f"{group.title}\n{dataset_label(dataset)}, {ratio_label(ratio)} labels", cell))
    others = runs[~runs["method"].isin(shown)]
    others = others.assign(line=others["method"], reference=False, order=[ordered_methods(others["method"]).index(m) for m in others["method"]])
    for dataset, ratio in ordered_cells(others):
        cell = others[(others["dataset"] == dataset) & (others["ratio"] == ratio)].sort_values("order", kind="stable")
        found.append((f"{'Variants' if not found else 'Other variants'}\n{dataset_label(dataset)}, {ratio_label(ratio)} labels", cell))
    return found


def _draw_curves(ax: Any, curves: pd.DataFrame, lines: Sequence[str], colors: dict[str, Any]) -> None:
    """A line per label in ``lines`` (mean over units), a dot per unit's best step, the run's last part shaded."""
    for label in lines:
        runs_of_line = curves[curves["line"] == label]
        mean = runs_of_line.groupby("step")["val_mdice"].mean()
        ax.plot(mean.index, mean.values, color=colors[label], linewidth=1.2, label=label)
        for _, seed_log in runs_of_line.groupby("seed"):
            best = seed_log.loc[seed_log["val_mdice"].idxmax()]
            ax.plot(best["step"], best["val_mdice"], "o", color=colors[label], markersize=3)
    last = curves["step"].max()
    ax.axvspan((1 - LATE_FRACTION) * last, last, color="0.9", zorder=0, linewidth=0)
    ax.set_xlabel("iteration")


def _with_lines(runs: pd.DataFrame, train_log: TrainLog) -> pd.DataFrame:
    """``validation_curves`` of ``runs``, each step labelled with its run's ``line``."""
    curves = validation_curves(runs, train_log)
    line_of = {(r.dataset, r.ratio, r.method, r.seed): r.line for r in runs.itertuples()}
    return curves.assign(line=[line_of[key] for key in zip(curves["dataset"], curves["ratio"], curves["method"], curves["seed"])])


def plot_validation_curves(runs: pd.DataFrame, profile: str, train_log: TrainLog = read_train_log,
                           sections: Sequence[ReportSection] = ()) -> Figure | None:
    """Validation mean Dice against the step, a panel per (dataset, ratio), a line per method (mean over units).

    A dot marks each unit's best step (the tested checkpoint); the last ``LATE_FRACTION`` of the run
    is shaded: a best step there means the run may not have reached its plateau. A profile of
    variants only (no plain method) gets a panel per group of variants of the ``sections`` (e.g. one UAPS
    ablation) and cell, a line per setting (the default in black), and a panel per cell for the variants
    of no such group, a line per variant.
    """
    if runs.empty:
        return None
    title = (f"Validation curves (profile {profile}; line: mean over units, dot: each unit's best step; "
             f"shaded: last {LATE_FRACTION:.0%} of the run)")
    plain = main_runs(runs)
    if plain.empty:
        variant_panels = _variant_panels(runs, sections)
        fig, axes = panels(len(variant_panels), width=4.2, height=3.4, columns=4)
        for ax, (panel_title, cell) in zip(axes, variant_panels):
            lines = list(dict.fromkeys(cell["line"]))
            default = set(cell.loc[cell["reference"], "line"])
            others = iter(sns.color_palette("tab10" if len(lines) <= 10 else "husl", len(lines)))
            colors = {line: "black" if line in default else next(others) for line in lines}
            _draw_curves(ax, _with_lines(cell, train_log), lines, colors)
            ax.set_title(panel_title)
            ax.legend(fontsize=7, loc="lower right")
        for ax in axes[::4]:
            ax.set_ylabel("validation mean Dice (%)")
        fig.suptitle("\n".join(textwrap.wrap(title, 55 * min(len(variant_panels), 4))), fontsize="medium")
        return fig
    curves = _with_lines(plain.assign(line=plain["method"]), train_log)
    methods = ordered_methods(plain["method"])
    colors = dict(zip(methods, sns.color_palette("tab10" if len(methods) <= 10 else "husl", len(methods))))
    cells = ordered_cells(plain)
    fig, axes = panels(len(cells), width=4.8)
    for ax, (dataset, ratio) in zip(axes, cells):
        cell = curves[(curves["dataset"] == dataset) & (curves["ratio"] == ratio)]
        _draw_curves(ax, cell, [m for m in methods if (cell["line"] == m).any()], colors)
        ax.set_title(f"{dataset_label(dataset)}, {ratio_label(ratio)} labels")
    axes[0].set_ylabel("validation mean Dice (%)")
    handles = [Line2D([], [], color=colors[method], linewidth=1.2, label=method) for method in methods]  # all panels
    titled_legend(fig, handles, title, min(len(handles), 5))
    return fig


# ---------------------------------------------------------------------------------------------
# all figures


def build_figures(view: ResultsView, profile: str, sections: Sequence[ReportSection] = ()) -> dict[str, Figure | None]:
    """Every figure of one profile's runs by file name (the generic ones, then each section's); None for a figure
    without data. The curves mark significance against the view's first baseline."""
    runs = view.profile_runs(profile)
    statistics, baseline = view.statistics(profile), view.baseline
    published = [points for section in sections for points in section.published_points()]
    has_main = not main_runs(runs).empty
    spread = view.spread_points(profile)
    return {
        **{f"miou_vs_ratio_{p}": plot_miou_vs_ratio(runs, profile, p, published, statistics, baseline) for p in PROTOCOLS},
        **{f"difference_{p}": plot_differences(runs, profile, p, statistics, baseline) for p in PROTOCOLS},
        **{f"critical_difference_{p}": plot_critical_difference(profile, p, view.ranks(profile, p)[1]) if has_main else None
           for p in PROTOCOLS},
        **{f"selection_{p}": plot_selection(runs, profile, p, view.selection_tests(profile), baseline) for p in PROTOCOLS},
        **{f"spread_{p}": plot_spread(spread, profile, p) for p in PROTOCOLS},
        **{f"resolution_{p}": plot_resolution(view.resolution_tests(profile), profile, p, baseline) for p in PROTOCOLS},
        "validation_curves": plot_validation_curves(runs, profile, view.train_log, sections),
        **{name: fig for section in sections for name, fig in section.figures(view, profile).items()},
    }


def write_figures(view: ResultsView, out: Path, sections: Sequence[ReportSection] = ()) -> tuple[dict[str, list[Path]], list[str]]:
    """Write every profile's figures to ``out/<profile>/``; returns the files per profile and notes."""
    written: dict[str, list[Path]] = {}
    notes: list[str] = []
    for profile in view.profiles:
        if not view.has_runs(profile):
            notes.append(f"profile {profile}: no completed runs under {view.results_dir / 'runs' / profile}; no figures")
            continue
        written[profile] = []
        with theme():
            for name, fig in build_figures(view, profile, sections).items():
                if fig is None:
                    notes.append(f"profile {profile}: figure {name} skipped: nothing to draw ({SKIPPED_WHY})")
                else:
                    written[profile] += save(fig, Path(out) / profile, name)
        stale = remove_stale(Path(out) / profile, written[profile], (".png", ".pdf"))
        notes += [f"profile {profile}: removed {path}, an earlier build's figure not drawn from these runs" for path in stale]
    return written, notes
