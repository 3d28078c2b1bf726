"""Figures from the runs on disk (PNG + PDF, seaborn style; no pyplot, so no global backend), per profile.

Under ``<out>/<profile>/``:

1. ``miou_vs_ratio_standard`` / ``miou_vs_ratio_paper``: label-efficiency curves, mIoU against
   the labelled ratio, one line per method (error bars: std over seeds; band: 95 % bootstrap CI
   of the mean, where the runs have per-image records), one panel per dataset; a point
   significantly better / worse than the baseline (first ``--baseline``, default supervised) is
   drawn as an up / down triangle (rule: ``benchmarks.reporting.statistics``).
2. ``critical_difference_standard`` / ``critical_difference_paper``: average ranks over the cells
   where every method ran, methods not told apart by the Nemenyi test joined by a bar, the
   critical difference drawn above (needs 3 methods and 2 such cells).
3. ``ablation_losses``: UAPS loss combinations (bars).
4. ``ablation_lambdas``: λ1 and λ2 over {0, 0.1, 0.3, 0.5, 1.0} (two panels).
5. ``ablation_mixing``: dynamic mixing against averaging at 10/30/50% labels.
6. ``ablation_aux_decoders``: D = 0..4: main and ensemble mIoU, inference time, parameters, MACs.

Only results on disk are drawn. A cell without runs is a gap in a line, or a hatched "n/a" slot
among bars, and is listed in the panel ("no runs: ..."); nothing is interpolated. A figure with
no data at all is skipped with a note. The UAPS authors' published numbers (``benchmarks.reporting.paper``)
are overlaid as black markers labelled as the paper's where they exist. Ablation figures use the
paper protocol (as the published ablations do).
"""
from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
import scikit_posthocs
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from benchmarks.engine import layout
from benchmarks.reporting.aggregate import ResultsError, ablation_runs, aggregate, collect_runs, find_profiles, main_runs, variant_metric
from benchmarks.reporting.statistics import (
    ALPHA, BETTER, WORSE, CellStatistics, cell_scores, cell_statistics, primary_baseline, rank_analysis,
)
from benchmarks.reporting.paper import (
    DECODER_COUNTS, LAMBDA_VALUES, MIXING_RATIOS, MIXING_VALUES, PAPER_LABEL, PAPER_STYLE, load_paper_reference, losses_tick,
    ordered_values, value_label,
)
from benchmarks.reporting.tables import PROTOCOLS, dataset_label, is_missing, ordered_datasets, ordered_methods, ratio_label

MISSING_HATCH = {"hatch": "//", "fill": False, "edgecolor": "0.6", "linewidth": 0.8}


def _theme() -> contextlib.AbstractContextManager:
    """seaborn's whitegrid/paper look for the figures drawn (and saved) inside, without global state."""
    return matplotlib.rc_context({**sns.axes_style("whitegrid"), **sns.plotting_context("paper", font_scale=1.1)})


def _panels(count: int, width: float = 4.3, height: float = 3.5) -> tuple[Figure, list[Axes]]:
    """A figure (no pyplot: rendered by Agg/PDF canvases when saved) with ``count`` panels in a row."""
    fig = Figure(figsize=(width * count, height))
    return fig, list(fig.subplots(1, count, squeeze=False)[0])


def _note_missing(ax: Axes, missing: Sequence[str]) -> None:
    """List the cells without runs under the panel's x label (call after ``set_xlabel``)."""
    if missing:
        lines = textwrap.wrap("no runs: " + "; ".join(missing), 60)
        ax.set_xlabel("\n".join([ax.get_xlabel(), *lines]).strip())


def _empty_panel(ax: Axes, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "n/a (no runs)", transform=ax.transAxes, ha="center", va="center", color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _zero_nan(values: Sequence[float]) -> list[float]:
    return [0.0 if is_missing(v) else v for v in values]


def _save(fig: Figure, directory: Path, name: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    png, pdf = directory / f"{name}.png", directory / f"{name}.pdf"
    fig.tight_layout()
    fig.savefig(png, dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(pdf, bbox_inches="tight", metadata={"Creator": None, "Producer": None, "CreationDate": None})
    return [png, pdf]


def _bar_group(ax: Axes, slots: Sequence[Any], groups: Sequence[Any], value: Callable[[Any, Any], tuple[float, float]],
               colors: Sequence[Any], labels: Sequence[str]) -> list[tuple[Any, Any]]:
    """Grouped bars (mean ± std) at x = slot index; a missing (slot, group) is a hatched "n/a" slot.

    Returns the missing (slot, group) pairs.
    """
    width = 0.8 / max(len(groups), 1)
    missing = []
    for g, group in enumerate(groups):
        labelled = False
        for s, slot in enumerate(slots):
            x = s - 0.4 + width * (g + 0.5)
            mean, std = value(slot, group)
            if is_missing(mean):
                ax.axvspan(x - width / 2, x + width / 2, **MISSING_HATCH)
                ax.text(x, 0.03, "n/a", transform=ax.get_xaxis_transform(), ha="center", fontsize=7, color="0.35")
                missing.append((slot, group))
                continue
            ax.bar(x, mean, width * 0.95, yerr=None if is_missing(std) else std, color=colors[g], capsize=3,
                   label=None if labelled else labels[g])
            labelled = True
    return missing


def _bar_limits(ax: Axes, values: Sequence[float]) -> None:
    """Zoom the value axis onto the data (differences of a few points matter), within [0, 100]."""
    present = [v for v in values if not is_missing(v)]
    if present:
        ax.set_ylim(max(0.0, min(present) - 5.0), min(100.0, max(present) + 3.0))


# ---------------------------------------------------------------------------------------------
# 1. mIoU against the labelled ratio


SIGNIFICANCE_MARKERS = {BETTER: "^", WORSE: "v"}


def _significance_handles(baseline: str) -> list[Line2D]:
    return [Line2D([], [], marker=SIGNIFICANCE_MARKERS[symbol], color="0.3", linestyle="none", markersize=9,
                   label=f"{words} than {baseline} (95 % CI)")
            for symbol, words in ((BETTER, "significantly better"), (WORSE, "significantly worse"))]


def plot_miou_vs_ratio(runs: pd.DataFrame, profile: str, protocol: str, reference: dict[str, Any],
                       statistics: CellStatistics, baseline: str) -> Figure | None:
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
    fig, axes = _panels(len(datasets))
    paper_shown = significance_shown = False
    for ax, dataset in zip(axes, datasets):
        ratios = sorted(runs.loc[runs["dataset"] == dataset, "ratio"].unique())
        xs = [100 * r for r in ratios]
        missing = []
        for method in methods:
            keys = [(dataset, r, method) for r in ratios]
            means = [cells[f"{metric}_mean"].get(k, float("nan")) for k in keys]
            stds = [cells[f"{metric}_std"].get(k, float("nan")) for k in keys]
            missing += [f"{method} @ {ratio_label(r)}" for r, m in zip(ratios, means) if is_missing(m)]
            ax.errorbar(xs, means, yerr=_zero_nan(stds), label=method, color=colors[method], marker="o", capsize=3)
            low = [intervals["ci_low"].get(k, float("nan")) for k in keys]
            high = [intervals["ci_high"].get(k, float("nan")) for k in keys]
            ax.fill_between(xs, low, high, color=colors[method], alpha=0.15, linewidth=0)
            for x, mean, key in zip(xs, means, keys):
                symbol = marks.get(key, "")
                if symbol in SIGNIFICANCE_MARKERS:
                    ax.plot(x, mean, marker=SIGNIFICANCE_MARKERS[symbol], color=colors[method], markersize=9, linestyle="none", zorder=4)
                    significance_shown = True
        if protocol == "paper":
            for ref in reference["main"]:
                if ref["dataset"] == dataset and ref["method"] in colors:
                    ax.plot(100 * ref["ratio"], ref["miou"], **{**PAPER_STYLE, "markerfacecolor": colors[ref["method"]]})
                    paper_shown = True
        ax.set_title(dataset_label(dataset))
        ax.set_xlabel("labelled training images (%)")
        _note_missing(ax, missing)
        ax.set_xticks(xs)
    axes[0].set_ylabel(f"mIoU (%), {protocol} protocol")
    handles, labels = axes[0].get_legend_handles_labels()
    if paper_shown:
        handles.append(Line2D([], [], **{**PAPER_STYLE, "markerfacecolor": "white"}))
        labels.append(f"{PAPER_LABEL}, method colour")
    if significance_shown:
        extra = _significance_handles(baseline)
        handles += extra
        labels += [h.get_label() for h in extra]
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 5), bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.suptitle(f"mIoU against labelled ratio (profile {profile}; mean ± std over seeds, band: 95 % bootstrap CI)",
                 y=1.1, fontsize="medium")
    return fig


def plot_critical_difference(runs: pd.DataFrame, profile: str, protocol: str) -> Figure | None:
    """Critical-difference diagram of the methods' average ranks; None without a Friedman test."""
    metric, _ = PROTOCOLS[protocol]
    runs = main_runs(runs)
    if runs.empty:
        return None
    analysis = rank_analysis(cell_scores(runs, metric))
    if not analysis.testable:
        return None
    ranks = analysis.average_ranks
    fig = Figure(figsize=(7.5, 1.6 + 0.35 * len(ranks)))
    ax = fig.subplots()
    scikit_posthocs.critical_difference_diagram(ranks, analysis.nemenyi_p, alpha=ALPHA, ax=ax,
                                                label_fmt_left="{label} ({rank:.2f})", label_fmt_right="({rank:.2f}) {label}")
    cd, start = analysis.critical_difference, ranks.iloc[0]
    ax.plot([start, start + cd], [1.6, 1.6], color="black", linewidth=2)  # above the rank tick labels
    ax.text(start + cd / 2, 1.8, f"CD = {cd:.2f}", ha="center", va="bottom")
    ax.set_ylim(top=2.6)
    ax.grid(False)
    ax.set_xlim(0.5, len(ranks) + 0.5)
    fig.suptitle(
        f"Average rank over {len(analysis.blocks)} dataset × ratio cells, mIoU {protocol} protocol (profile {profile}; 1 = best)\n"
        f"Friedman χ² = {analysis.friedman_statistic:.2f}, p = {analysis.friedman_p:.3g}; bars join methods the Nemenyi "
        f"test does not separate (α = {ALPHA:g}, CD = {analysis.critical_difference:.2f})", fontsize="small")
    return fig


# ---------------------------------------------------------------------------------------------
# 2. loss combinations


def plot_losses(runs: pd.DataFrame, profile: str, reference: dict[str, Any]) -> Figure | None:
    ablation = ablation_runs(runs, "losses")
    if ablation.empty:
        return None
    spec = reference["loss_ablation"]
    combos = ordered_values("losses", [row["losses"] for row in spec["rows"]] + list(ablation["value"]))
    cells = aggregate(ablation, ["dataset", "ratio", "value"], ["paper_miou"]).set_index(["dataset", "ratio", "value"])
    datasets = ordered_datasets(ablation["dataset"])
    fig, axes = _panels(len(datasets), width=max(4.3, 0.9 * len(combos)), height=4.2)
    for ax, dataset in zip(axes, datasets):
        ratios = sorted(ablation.loc[ablation["dataset"] == dataset, "ratio"].unique())
        colors = sns.color_palette("crest", len(ratios))

        def value(combo: str, ratio: float) -> tuple[float, float]:
            key = (dataset, ratio, combo)
            return cells["paper_miou_mean"].get(key, float("nan")), cells["paper_miou_std"].get(key, float("nan"))

        labels = [f"ours, {ratio_label(r)} labels" for r in ratios]
        missing = _bar_group(ax, combos, ratios, value, colors, labels)
        shown = [value(c, r)[0] for c in combos for r in ratios]
        paper = [row for row in spec["rows"] if dataset in row["miou"]] if spec["ratio"] in ratios else []
        if paper:
            width = 0.8 / len(ratios)
            offset = -0.4 + width * (ratios.index(spec["ratio"]) + 0.5)
            ax.plot([combos.index(row["losses"]) + offset for row in paper], [row["miou"][dataset] for row in paper],
                    **PAPER_STYLE, label=f"{PAPER_LABEL}, {ratio_label(spec['ratio'])}")
            shown += [row["miou"][dataset] for row in paper]
        _bar_limits(ax, shown)
        ax.set_xticks(range(len(combos)), [losses_tick(c) for c in combos], rotation=30, ha="right")
        _note_missing(ax, [value_label("losses", c) + (f" @ {ratio_label(r)}" if len(ratios) > 1 else "") for c, r in missing])
        ax.set_title(dataset_label(dataset))
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("mIoU (%), paper protocol")
    fig.suptitle(f"UAPS loss combinations (profile {profile})", fontsize="medium")
    return fig


# ---------------------------------------------------------------------------------------------
# line ablations: λ1 / λ2, and D


def _lines(ax: Axes, ablation: pd.DataFrame, column: str, xs: Sequence[Any], *, linestyle: str = "-", marker: str = "o",
           label_suffix: str = "", colors: dict[Any, Any] | None = None) -> list[Any]:
    """One line (mean ± std over seeds) per (dataset, ratio) cell over ``xs``; returns the x with no run anywhere."""
    cells = aggregate(ablation, ["dataset", "ratio", "value"], [column]).set_index(["dataset", "ratio", "value"])
    keys = sorted({(d, r) for d, r in zip(ablation["dataset"], ablation["ratio"])},
                  key=lambda k: (ordered_datasets(ablation["dataset"]).index(k[0]), k[1]))
    palette = colors or dict(zip(keys, sns.color_palette("tab10", len(keys))))
    seen = set()
    for key in keys:
        means = [cells[f"{column}_mean"].get((*key, x), float("nan")) for x in xs]
        stds = [cells[f"{column}_std"].get((*key, x), float("nan")) for x in xs]
        seen |= {x for x, m in zip(xs, means) if not is_missing(m)}
        if all(is_missing(m) for m in means):
            continue  # not recorded at all: no legend entry; the caller notes it
        ax.errorbar(list(xs), means, yerr=_zero_nan(stds), marker=marker, capsize=3, linestyle=linestyle, color=palette[key],
                    label=f"{dataset_label(key[0])} {ratio_label(key[1])}{label_suffix}")
    return [x for x in xs if x not in seen]


def plot_lambdas(runs: pd.DataFrame, profile: str) -> Figure | None:
    studies = {option: ablation_runs(runs, option) for option in ("lambda1", "lambda2")}
    if all(frame.empty for frame in studies.values()):
        return None
    fig, axes = _panels(2)
    symbols = {"lambda1": "λ1 (pseudo-label losses)", "lambda2": "λ2 (uncertainty loss ℓ_un)"}
    for ax, (option, ablation) in zip(axes, studies.items()):
        if ablation.empty:
            _empty_panel(ax, symbols[option])
            continue
        xs = sorted(set(LAMBDA_VALUES) | {float(v) for v in ablation["value"]})
        missing = _lines(ax, ablation.assign(value=ablation["value"].astype(float)), "paper_miou", xs)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.set_xlabel(symbols[option])
        _note_missing(ax, [f"{symbols[option].split()[0]} = {x:g}" for x in missing])
        ax.set_title(symbols[option])
        ax.legend(fontsize=7)
    axes[0].set_ylabel("mIoU (%), paper protocol")
    fig.suptitle(f"UAPS loss coefficients (profile {profile}; mean ± std over seeds)", fontsize="medium")
    return fig


def plot_mixing(runs: pd.DataFrame, profile: str) -> Figure | None:
    ablation = ablation_runs(runs, "mixing", per_ratio=False)
    if ablation.empty:
        return None
    cells = aggregate(ablation, ["dataset", "ratio", "value"], ["paper_miou"]).set_index(["dataset", "ratio", "value"])
    modes = [*MIXING_VALUES, *sorted(set(ablation["value"]) - set(MIXING_VALUES))]
    datasets = ordered_datasets(ablation["dataset"])
    fig, axes = _panels(len(datasets))
    colors = sns.color_palette("Set2", len(modes))
    for ax, dataset in zip(axes, datasets):
        ratios = sorted(set(MIXING_RATIOS) | set(ablation.loc[ablation["dataset"] == dataset, "ratio"]))

        def value(ratio: float, mode: str) -> tuple[float, float]:
            key = (dataset, ratio, mode)
            return cells["paper_miou_mean"].get(key, float("nan")), cells["paper_miou_std"].get(key, float("nan"))

        missing = _bar_group(ax, ratios, modes, value, colors, modes)
        _bar_limits(ax, [value(r, m)[0] for r in ratios for m in modes])
        ax.set_xticks(range(len(ratios)), [ratio_label(r) for r in ratios])
        ax.set_xlabel("labelled training images")
        _note_missing(ax, [f"{mode} @ {ratio_label(r)}" for r, mode in missing])
        ax.set_title(dataset_label(dataset))
        ax.legend(fontsize=7, title="mixing", loc="upper left")
    axes[0].set_ylabel("mIoU (%), paper protocol")
    fig.suptitle(f"UAPS pseudo-label mixing (profile {profile})", fontsize="medium")
    return fig


def plot_aux_decoders(runs: pd.DataFrame, profile: str, reference: dict[str, Any]) -> Figure | None:
    ablation = ablation_runs(runs, "aux_decoders")
    if ablation.empty:
        return None
    spec, timing = reference["aux_decoders"], reference["inference_ms"]
    ablation = ablation.assign(value=ablation["value"].astype(int))
    size = spec["macs_image_size"]
    scale = (size / ablation["image_size"].astype(float)) ** 2
    columns = {
        "main_miou": variant_metric(ablation, "main", "paper_miou"),
        "ensemble_miou": variant_metric(ablation, "ensemble", "paper_miou"),
        "main_ms": variant_metric(ablation, "main", "eval_ms"),
        "ensemble_ms": variant_metric(ablation, "ensemble", "eval_ms"),
        "main_gmacs": variant_metric(ablation, "main", "gmacs") * scale,
        "ensemble_gmacs": variant_metric(ablation, "ensemble", "gmacs") * scale,
    }
    frame = ablation.assign(**columns)
    xs = sorted(set(DECODER_COUNTS) | set(frame["value"]))
    keys = sorted({(d, r) for d, r in zip(frame["dataset"], frame["ratio"])}, key=lambda k: (ordered_datasets(frame["dataset"]).index(k[0]), k[1]))
    colors = dict(zip(keys, sns.color_palette("tab10", len(keys))))
    fig = Figure(figsize=(10, 8))
    grid = fig.subplots(2, 2)
    axes = list(grid.flat)
    panels = [
        (axes[0], "main_miou", "ensemble_miou", "mIoU (%), paper protocol", "main_miou"),
        (axes[1], "main_ms", "ensemble_ms", "inference ms / image (this profile's device)", None),
        (axes[2], "params_m", None, "trainable parameters (M)", "params_m"),
        (axes[3], "main_gmacs", "ensemble_gmacs", f"GMACs / {size}×{size} image (scaled)", "gmacs"),
    ]
    paper_cell = any(d == spec["dataset"] and r == spec["ratio"] for d, r in keys)
    for ax, main, ensemble, ylabel, paper_key in panels:
        missing = _lines(ax, frame, main, xs, colors=colors, label_suffix=", main" if ensemble else "")
        unrecorded = ["main"] if len(missing) == len(xs) and ensemble else []
        if ensemble:
            missing_ensemble = _lines(ax, frame, ensemble, xs, linestyle="--", marker="s", colors=colors, label_suffix=", ensemble")
            unrecorded += ["ensemble"] if len(missing_ensemble) == len(xs) else []
            missing = [x for x in missing if x in missing_ensemble]
        if paper_key == "main_miou" and not paper_cell:
            pass  # the published accuracy is for another dataset/ratio: not overlaid
        elif paper_key:
            rows = [row for row in spec["rows"] if paper_key in row]
            ax.plot([row["aux_decoders"] for row in rows], [row[paper_key] for row in rows], **PAPER_STYLE,
                    label=f"{PAPER_LABEL}" + (f", {dataset_label(spec['dataset'])} {ratio_label(spec['ratio'])}" if paper_key == "main_miou" else ""))
        elif main == "main_ms":
            ax.plot([timing["aux_decoders"]] * 2, [timing["main"], timing["ensemble"]], **PAPER_STYLE,
                    label=f"{PAPER_LABEL} (their GPU)")
        ax.set_xticks(xs)
        ax.set_xlabel("auxiliary decoders D")
        _note_missing(ax, [f"D = {x}" for x in missing] + [f"{name} (not recorded)" for name in unrecorded])
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=6)
    fig.suptitle(f"UAPS: number of auxiliary decoders (profile {profile}; solid/circles: main decoder, dashed/squares: ensemble)", fontsize="medium")
    return fig


# ---------------------------------------------------------------------------------------------
# validation curves


def validation_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """step, val_mdice (%) of every run's ``train_log.csv``, with the run's dataset, ratio, method, seed."""
    frames = []
    for row in runs.itertuples():
        log_path = Path(row.path) / layout.TRAIN_LOG
        try:
            log = pd.read_csv(log_path, usecols=["step", "val_mdice"]).dropna()
        except (OSError, ValueError) as error:
            raise ResultsError(f"{log_path}: cannot read the validation curve ({error})") from error
        frames.append(log.assign(dataset=row.dataset, ratio=row.ratio, method=row.method, seed=row.seed, val_mdice=100 * log["val_mdice"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def plot_validation_curves(runs: pd.DataFrame, profile: str) -> Figure | None:
    """Validation mean Dice against the step, a panel per (dataset, ratio), a line per method (mean over seeds).

    A dot marks each seed's best step (the tested checkpoint): whether a method reached its plateau
    within the run can be read off (best steps in the last 10 % of the run mean it had not).
    """
    runs = main_runs(runs)
    if runs.empty:
        return None
    curves = validation_curves(runs)
    cells = runs[["dataset", "ratio"]].drop_duplicates().sort_values(["dataset", "ratio"]).itertuples(index=False)
    cells = list(cells)
    methods = ordered_methods(runs["method"])
    colors = dict(zip(methods, sns.color_palette("tab10", len(methods))))
    fig, axes = _panels(len(cells), width=4.8)
    for ax, (dataset, ratio) in zip(axes, cells):
        cell = curves[(curves["dataset"] == dataset) & (curves["ratio"] == ratio)]
        for method in methods:
            lines = cell[cell["method"] == method]
            if lines.empty:
                continue
            mean = lines.groupby("step")["val_mdice"].mean()
            ax.plot(mean.index, mean.values, color=colors[method], label=method, linewidth=1.2)
            for seed, seed_log in lines.groupby("seed"):
                best = seed_log.loc[seed_log["val_mdice"].idxmax()]
                ax.plot(best["step"], best["val_mdice"], "o", color=colors[method], markersize=3)
        ax.set_title(f"{dataset_label(dataset)}, {ratio_label(ratio)} labels")
        ax.set_xlabel("iteration")
    axes[0].set_ylabel("validation mean Dice (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 5), bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.suptitle(f"Validation curves (profile {profile}; line: mean over seeds, dot: each seed's best step)", y=1.1, fontsize="medium")
    return fig


# ---------------------------------------------------------------------------------------------
# all figures


def build_figures(runs: pd.DataFrame, profile: str, reference: dict[str, Any] | None = None,
                  baselines: Sequence[str] = ()) -> dict[str, Figure | None]:
    """Every figure of one profile's runs by file name; None for a figure without data.

    ``baselines``: methods named with ``--baseline``; the curves mark significance against the first
    (default ``supervised``).
    """
    reference = reference or load_paper_reference()
    runs = runs[runs["profile"] == profile]
    baseline = primary_baseline(baselines)
    statistics = cell_statistics(main_runs(runs), [baseline])
    return {
        **{f"miou_vs_ratio_{p}": plot_miou_vs_ratio(runs, profile, p, reference, statistics, baseline) for p in PROTOCOLS},
        **{f"critical_difference_{p}": plot_critical_difference(runs, profile, p) for p in PROTOCOLS},
        "validation_curves": plot_validation_curves(runs, profile),
        "ablation_losses": plot_losses(runs, profile, reference),
        "ablation_lambdas": plot_lambdas(runs, profile),
        "ablation_mixing": plot_mixing(runs, profile),
        "ablation_aux_decoders": plot_aux_decoders(runs, profile, reference),
    }


def write_figures(results_dir: Path, out: Path, profiles: Sequence[str] | None = None,
                  baselines: Sequence[str] = ()) -> tuple[dict[str, list[Path]], list[str]]:
    """Write every profile's figures to ``out/<profile>/``; returns the files per profile and notes."""
    runs = collect_runs(results_dir, profiles)
    reference = load_paper_reference()
    written: dict[str, list[Path]] = {}
    notes: list[str] = []
    for profile in list(profiles) if profiles else find_profiles(results_dir):
        if runs.empty or not (runs["profile"] == profile).any():
            notes.append(f"profile {profile}: no completed runs under {Path(results_dir) / 'runs' / profile}; no figures")
            continue
        written[profile] = []
        with _theme():
            for name, fig in build_figures(runs, profile, reference, baselines).items():
                if fig is None:
                    notes.append(f"profile {profile}: figure {name} skipped: no matching runs")
                else:
                    written[profile] += _save(fig, Path(out) / profile, name)
    return written, notes
