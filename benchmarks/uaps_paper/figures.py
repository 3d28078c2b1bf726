"""The figures of the UAPS ablations, drawn as the paper draws them, with its published numbers overlaid.

``ablation_losses`` (loss combinations, bars), ``ablation_lambdas`` (λ1 and λ2 over the paper's
values), ``ablation_mixing`` (dynamic mixing against averaging per labelled ratio) and
``ablation_aux_decoders`` (D = 0..4: mIoU, inference time, parameters, MACs); paper protocol
throughout, as the published ablations use. The settings shown come from ``benchmarks.uaps_paper.ablations``,
the published numbers from ``benchmarks.uaps_paper.published``; ``build_paper_figures`` gives them all to the
report section (``benchmarks.uaps_paper.section``), ``ABLATION_FIGURE_CAPTIONS`` their captions in the report.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from defectseg.benchmarks.reporting.aggregate import aggregate, variant_metric
from defectseg.benchmarks.reporting.figure_style import bar_group, bar_limits, empty_panel, note_missing, panels, zero_nan
from defectseg.benchmarks.reporting.table_format import dataset_label, is_missing, ordered_datasets, ratio_label
from defectseg.benchmarks.uaps_paper.ablations import (
    DECODER_COUNTS, LAMBDA_VALUES, MIXING_RATIOS, MIXING_VALUES, ablation_runs, losses_tick, ordered_values, value_label,
)
from defectseg.benchmarks.uaps_paper.published import PAPER_LABEL, PAPER_STYLE

ABLATION_FIGURE_CAPTIONS = {
    "ablation_losses": ("UAPS loss combinations (paper protocol; bars: mean, whiskers: std over seeds); diamonds: published, "
                        "drawn only beside runs at the paper's labelled ratio; hatched: no runs."),
    "ablation_lambdas": "UAPS loss coefficients λ1 and λ2 (paper protocol; mean ± std over seeds).",
    "ablation_mixing": "UAPS dynamic mixing against averaging over labelled ratios (paper protocol; mean ± std over seeds).",
    "ablation_aux_decoders": ("UAPS auxiliary decoders D: mIoU, inference time, parameters, MACs (mean ± std over seeds); "
                              "diamonds: published (their mIoU only beside runs at the paper's dataset and ratio)."),
}


def plot_losses(runs: pd.DataFrame, profile: str, reference: dict[str, Any]) -> Figure | None:
    ablation = ablation_runs(runs, "losses")
    if ablation.empty:
        return None
    spec = reference["loss_ablation"]
    combos = ordered_values("losses", [row["losses"] for row in spec["rows"]] + list(ablation["value"]))
    cells = aggregate(ablation, ["dataset", "ratio", "value"], ["paper_miou"]).set_index(["dataset", "ratio", "value"])
    datasets = ordered_datasets(ablation["dataset"])
    fig, axes = panels(len(datasets), width=max(4.3, 0.9 * len(combos)), height=4.2)
    for ax, dataset in zip(axes, datasets):
        ratios = sorted(ablation.loc[ablation["dataset"] == dataset, "ratio"].unique())
        colors = sns.color_palette("crest", len(ratios))

        def value(combo: str, ratio: float) -> tuple[float, float]:
            key = (dataset, ratio, combo)
            return cells["paper_miou_mean"].get(key, float("nan")), cells["paper_miou_std"].get(key, float("nan"))

        labels = [f"ours, {ratio_label(r)} labels" for r in ratios]
        missing = bar_group(ax, combos, ratios, value, colors, labels)
        shown = [value(c, r) for c in combos for r in ratios]
        paper = [row for row in spec["rows"] if dataset in row["miou"]] if spec["ratio"] in ratios else []
        if paper:
            width = 0.8 / len(ratios)
            offset = -0.4 + width * (ratios.index(spec["ratio"]) + 0.5)
            ax.plot([combos.index(row["losses"]) + offset for row in paper], [row["miou"][dataset] for row in paper],
                    **PAPER_STYLE, label=f"{PAPER_LABEL}, {ratio_label(spec['ratio'])}")
            shown += [(row["miou"][dataset], 0.0) for row in paper]
        bar_limits(ax, shown)
        ax.set_xticks(range(len(combos)), [losses_tick(c) for c in combos], rotation=30, ha="right")
        note_missing(ax, [value_label("losses", c) + (f" @ {ratio_label(r)}" if len(ratios) > 1 else "") for c, r in missing])
        ax.set_title(dataset_label(dataset))
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("mIoU (%), paper protocol")
    fig.suptitle(f"UAPS loss combinations (profile {profile})", fontsize="medium")
    return fig


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
        ax.errorbar(list(xs), means, yerr=zero_nan(stds), marker=marker, capsize=3, linestyle=linestyle, color=palette[key],
                    label=f"{dataset_label(key[0])} {ratio_label(key[1])}{label_suffix}")
    return [x for x in xs if x not in seen]


def plot_lambdas(runs: pd.DataFrame, profile: str) -> Figure | None:
    studies = {option: ablation_runs(runs, option) for option in ("lambda1", "lambda2")}
    if all(frame.empty for frame in studies.values()):
        return None
    fig, axes = panels(2)
    symbols = {"lambda1": "λ1 (pseudo-label losses)", "lambda2": "λ2 (uncertainty loss ℓ_un)"}
    for ax, (option, ablation) in zip(axes, studies.items()):
        if ablation.empty:
            empty_panel(ax, symbols[option])
            continue
        xs = sorted(set(LAMBDA_VALUES) | {float(v) for v in ablation["value"]})
        missing = _lines(ax, ablation.assign(value=ablation["value"].astype(float)), "paper_miou", xs)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.set_xlabel(symbols[option])
        note_missing(ax, [f"{symbols[option].split()[0]} = {x:g}" for x in missing])
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
    fig, axes = panels(len(datasets))
    colors = sns.color_palette("Set2", len(modes))
    for ax, dataset in zip(axes, datasets):
        ratios = set(ablation.loc[ablation["dataset"] == dataset, "ratio"])
        ratios = sorted(ratios | set(MIXING_RATIOS) if ratios & set(MIXING_RATIOS) else ratios)

        def value(ratio: float, mode: str) -> tuple[float, float]:
            key = (dataset, ratio, mode)
            return cells["paper_miou_mean"].get(key, float("nan")), cells["paper_miou_std"].get(key, float("nan"))

        missing = bar_group(ax, ratios, modes, value, colors, modes)
        bar_limits(ax, [value(r, m) for r in ratios for m in modes])
        ax.set_xticks(range(len(ratios)), [ratio_label(r) for r in ratios])
        ax.set_xlabel("labelled training images")
        note_missing(ax, [f"{mode} @ {ratio_label(r)}" for r, mode in missing])
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
        note_missing(ax, [f"D = {x}" for x in missing] + [f"{name} (not recorded)" for name in unrecorded])
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=6)
    fig.suptitle(f"UAPS: number of auxiliary decoders (profile {profile}; solid/circles: main decoder, dashed/squares: ensemble)", fontsize="medium")
    return fig


def build_paper_figures(runs: pd.DataFrame, profile: str, reference: dict[str, Any]) -> dict[str, Figure | None]:
    """The ablation figures of one profile's runs by file name; None for a figure without data."""
    return {
        "ablation_losses": plot_losses(runs, profile, reference),
        "ablation_lambdas": plot_lambdas(runs, profile),
        "ablation_mixing": plot_mixing(runs, profile),
        "ablation_aux_decoders": plot_aux_decoders(runs, profile, reference),
    }
