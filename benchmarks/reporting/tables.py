"""Result tables from the runs on disk: CSV (numbers), Markdown and LaTeX booktabs (display).

Per profile, under ``<out>/<profile>/``:

* ``main_standard`` / ``main_paper``: method x (dataset, labelled ratio), mIoU (%) mean ± std
  over seeds with the seed count, under the standard (dataset-level confusion matrix) and the
  paper (per-image) protocol; the best mean of each column in bold (CSV: ``best`` column).
* ``significance_standard`` / ``significance_paper``: per (dataset, ratio, method) the mean ± std,
  the 95 % bootstrap CI of the mean, and against ``supervised`` and every ``--baseline`` the
  paired difference with its 95 % CI, P(improvement) and the mark (▲ / ▼ / ·, see
  ``benchmarks.reporting.statistics``); "too few seeds" or "no per-image records" where there is no test.
  The main tables carry the mark against the first ``--baseline`` (default ``supervised``).
* ``ranks_standard`` / ``ranks_paper``: average rank of each method over the cells where all
  ran, the Friedman test and the Nemenyi critical difference.
* ``per_class_iou_<dataset>``: per-class IoU (standard protocol) of each method and ratio.
* ``paper_main``, ``paper_losses``, ``paper_aux_decoders``, ``paper_cost``: the UAPS authors'
  published numbers beside ours for the same cells.
* ``ablation_<option>``: the UAPS ablations found among the runs (losses, lambda1, lambda2,
  mixing, aux_decoders), told apart by their ``method_options``; each setting marked against the
  default of its column (paired test, paper protocol).

The published numbers, the ablation options and their labels come from ``benchmarks.reporting.paper``.

A cell without a completed run is shown as "—" (empty in CSV, with ``seeds`` 0), never filled.
A table with none of our numbers at all is not written (a note says so).
"""
from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.reporting.aggregate import ablation_runs, aggregate, collect_runs, find_profiles, main_runs, variant_metric
from benchmarks.reporting.paper import (
    ABLATION_OPTIONS, OPTION_LABELS, load_paper_reference, losses_label, ordered_values, paper_source, value_label,
)
from benchmarks.reporting.statistics import (
    ALPHA, N_RESAMPLES, RULE, TOO_FEW_SEEDS, Bootstrap, CellStatistics, baselines_for, cell_scores, cell_statistics, compare,
    primary_baseline, rank_analysis, run_set_records,
)

MISSING = "—"
DATASET_LABELS = {"neu": "NEU-Seg", "mtiles": "MTiles", "dagm": "DAGM", "synthetic": "Synthetic"}
PROTOCOLS = {"standard": ("miou", "standard protocol (one confusion matrix over the test set)"),
             "paper": ("paper_miou", "paper protocol (per-image IoU over the defect classes present, averaged over images)")}


# ---------------------------------------------------------------------------------------------
# labels and cells


def dataset_label(name: str) -> str:
    return DATASET_LABELS.get(name, name)


def ratio_label(ratio: float) -> str:
    return f"{100 * ratio:g}%"


def natural_key(text: str) -> list[Any]:
    """Sort key putting ``Class2`` before ``Class10`` (metrics.json stores classes in key order)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def ordered_datasets(names: Iterable[str]) -> list[str]:
    known = list(DATASET_LABELS)
    return sorted(set(names), key=lambda n: (known.index(n) if n in known else len(known), n))


def ordered_methods(names: Iterable[str]) -> list[str]:
    """Supervised baseline first, UAPS (the studied method) last, the rest alphabetically."""
    return sorted(set(names), key=lambda n: (0 if n == "supervised" else 2 if n == "uaps" else 1, n))


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def mean_std(mean: float, std: float, seeds: int, digits: int = 2) -> str:
    """``"62.00 ± 2.00 (n=3)"``; one seed: ``"62.00 (n=1)"``; no run: "—"."""
    if not seeds or is_missing(mean):
        return MISSING
    spread = "" if is_missing(std) else f" ± {std:.{digits}f}"
    return f"{mean:.{digits}f}{spread} (n={int(seeds)})"


def number(value: Any, digits: int = 2) -> str:
    return MISSING if is_missing(value) else f"{value:.{digits}f}"


def best_flags(means: Sequence[float]) -> list[bool]:
    """True where the mean equals the column's maximum (ties all marked); missing never best."""
    present = [m for m in means if not is_missing(m)]
    top = max(present) if present else None
    return [top is not None and not is_missing(m) and math.isclose(m, top, rel_tol=0, abs_tol=1e-9) for m in means]


# ---------------------------------------------------------------------------------------------
# the table and its renderings


@dataclass
class Table:
    """One table: display cells (with bold marks) for Markdown/LaTeX/HTML and numbers for CSV."""

    name: str
    caption: str
    header: list[str]
    rows: list[list[str]]
    data: pd.DataFrame
    bold: list[list[bool]] = field(default_factory=list)
    label_columns: int = 1  # leading columns that are labels (left-aligned)
    notes: list[str] = field(default_factory=list)

    def _bold(self, r: int, c: int) -> bool:
        return bool(self.bold) and self.bold[r][c]

    def markdown(self, caption: bool = True) -> str:
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

        align = [":--" if c < self.label_columns else "--:" for c in range(len(self.header))]
        body = [
            line([f"**{cell}**" if self._bold(r, c) and cell != MISSING else cell for c, cell in enumerate(row)])
            for r, row in enumerate(self.rows)
        ]
        parts = [f"**Table: {self.caption}**", ""] if caption and self.caption else []
        parts += [line(self.header), line(align), *body]
        if self.notes:
            parts += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(parts) + "\n"

    def latex(self) -> str:
        spec = "l" * self.label_columns + "r" * (len(self.header) - self.label_columns)
        lines = [
            "% generated by benchmarks/reporting/tables.py; needs \\usepackage{booktabs} and \\usepackage{amssymb}",
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{{latex_escape(self.caption)}}}",
            f"\\label{{tab:{self.name}}}",
            f"\\begin{{tabular}}{{{spec}}}",
            "\\toprule",
            " & ".join(latex_escape(h) for h in self.header) + " \\\\",
            "\\midrule",
        ]
        for r, row in enumerate(self.rows):
            cells = [latex_escape(cell) for cell in row]
            cells = [f"\\textbf{{{cell}}}" if self._bold(r, c) and row[c] != MISSING else cell for c, cell in enumerate(cells)]
            lines.append(" & ".join(cells) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        if self.notes:
            lines.append("\\par\\smallskip{\\footnotesize " + " ".join(latex_escape(n) for n in self.notes) + "}")
        lines.append("\\end{table}")
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = []
        for r, row in enumerate(self.rows):
            cells = []
            for c, cell in enumerate(row):
                text = html.escape(cell)
                text = f"<strong>{text}</strong>" if self._bold(r, c) and cell != MISSING else text
                cells.append(f'<td class="{"label" if c < self.label_columns else "num"}">{text}</td>')
            body.append("<tr>" + "".join(cells) + "</tr>")
        notes = "".join(f"<p class=\"note\">{html.escape(n)}</p>" for n in self.notes)
        return (
            f"<table>{f'<caption>{html.escape(self.caption)}</caption>' if self.caption else ''}<thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>{notes}\n"
        )

    def write(self, directory: Path) -> list[Path]:
        """``<name>.csv``, ``<name>.md`` and ``<name>.tex`` in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = [directory / f"{self.name}.{ext}" for ext in ("csv", "md", "tex")]
        self.data.to_csv(paths[0], index=False, float_format="%.4f")
        paths[1].write_text(self.markdown())
        paths[2].write_text(self.latex())
        return paths


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_UNICODE = {"±": r"$\pm$", "—": "---", "–": "--", "ℓ": r"$\ell$", "λ": r"$\lambda$", "Δ": r"$\Delta$",
                  "×": r"$\times$", "²": r"$^2$", "≥": r"$\geq$", "≤": r"$\leq$", "→": r"$\rightarrow$",
                  "▲": r"$\blacktriangle$", "▼": r"$\blacktriangledown$", "·": r"$\cdot$", "χ": r"$\chi$", "α": r"$\alpha$"}


def latex_escape(text: str) -> str:
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    return "".join(_LATEX_UNICODE.get(ch, ch) for ch in out)


# ---------------------------------------------------------------------------------------------
# builders


def profile_setup(runs: pd.DataFrame) -> str:
    """``"64×64 images, 300 iterations, bf16"`` from the runs (all values found)."""

    def values(column: str) -> str:
        found = sorted({int(v) for v in runs[column] if not is_missing(v)})
        return "/".join(str(v) for v in found) or "?"

    size = values("image_size")
    precisions = "/".join(sorted({str(v) for v in runs["precision"] if not is_missing(v)})) or "?"
    return f"{size}×{size} images, {values('iterations')} iterations, {precisions}"


def _column_best(grid: pd.DataFrame, column: str) -> pd.Series:
    """Best flags of ``column`` within each (dataset, ratio) block of a (dataset, ratio, row) index."""
    return grid.groupby(level=[0, 1], sort=False)[column].transform(lambda s: pd.Series(best_flags(s.tolist()), index=s.index)).astype(bool)


def signed(value: float, digits: int = 2) -> str:
    return MISSING if is_missing(value) else f"{value:+.{digits}f}"


def interval(low: float, high: float, digits: int = 2, sign: bool = False) -> str:
    """``"[60.12, 63.88]"`` (``sign``: ``"[+1.20, +5.00]"``)."""
    text = signed if sign else number
    return f"[{text(low, digits)}, {text(high, digits)}]"


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
    columns = [(d, r) for d in ordered_datasets(runs["dataset"]) for r in sorted(runs.loc[runs["dataset"] == d, "ratio"].unique())]
    methods = ordered_methods(runs["method"])
    grid = cells.reindex(pd.MultiIndex.from_tuples([(d, r, m) for d, r in columns for m in methods], names=cells.index.names))
    grid["seeds"] = grid["seeds"].fillna(0).astype(int)
    grid["best"] = _column_best(grid, f"{metric}_mean")
    intervals, comparisons = _protocol_statistics(statistics, protocol)
    grid = grid.join(intervals[["ci_low", "ci_high", "note"]].rename(columns={"note": "ci_note"}))
    tests = comparisons[comparisons.index.get_level_values("baseline") == baseline].droplevel("baseline")
    grid = grid.join(tests[["diff", "diff_ci_low", "diff_ci_high", "p_improvement", "mark", "note"]].rename(columns={"note": "test_note"}))
    for column in ("mark", "ci_note", "test_note"):
        grid[column] = grid[column].astype(object).fillna("")
    header = ["Method", *(f"{dataset_label(d)} {ratio_label(r)}" for d, r in columns)]
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
        f"mIoU (%) over the defect classes, {description}; mean ± std over seeds (n = seeds); "
        f"best mean per column in bold; marks against {baseline}: {RULE}. 95 % CIs and the tests against every "
        f"baseline: table significance_{protocol}. Profile {profile} ({profile_setup(runs)})."
    )
    return Table(f"main_{protocol}", caption, header, rows, data, bold)


def _difference_cell(test: pd.Series | None) -> tuple[str, str]:
    """``("+3.10 [+1.20, +5.00] ▲", "0.89")``, or why there is no test."""
    if test is None:
        return MISSING, MISSING
    if test["note"] == TOO_FEW_SEEDS:
        return f"{TOO_FEW_SEEDS} (n={int(test['paired_seeds'])})", MISSING
    if test["note"]:
        return test["note"], MISSING
    return f"{signed(test['diff'])} {interval(test['diff_ci_low'], test['diff_ci_high'], sign=True)} {test['mark']}", number(test["p_improvement"])


def significance_table(runs: pd.DataFrame, profile: str, protocol: str, statistics: CellStatistics, baselines: Sequence[str]) -> Table | None:
    metric, description = PROTOCOLS[protocol]
    runs = main_runs(runs)
    if runs.empty:
        return None
    cells = aggregate(runs, ["dataset", "ratio", "method"], [metric]).set_index(["dataset", "ratio", "method"])
    intervals, comparisons = _protocol_statistics(statistics, protocol)
    order = [(d, r, m) for d in ordered_datasets(runs["dataset"]) for r in sorted(runs.loc[runs["dataset"] == d, "ratio"].unique())
             for m in ordered_methods(runs.loc[(runs["dataset"] == d) & (runs["ratio"] == r), "method"])]
    header = ["Dataset", "Labels", "Method", "mIoU (%)", "95 % CI", *(h for b in baselines for h in (f"Δ vs {b} [95 % CI]", f"P(> {b})"))]
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
            row += ["(baseline)", MISSING] if b == key[2] else _difference_cell(test)
            fields = ("diff", "diff_ci_low", "diff_ci_high", "p_improvement", "paired_seeds", "mark", "note")
            record.update({f"vs_{b}_{f}": None if test is None else test[f] for f in fields})
        rows.append(row)
        records.append(record)
    caption = (
        f"Is a difference real? mIoU (%), {description}: mean ± std over n seeds; 95 % CI of the mean from a stratified "
        f"bootstrap ({N_RESAMPLES} replicates: seeds with replacement, then test images with replacement within each seed; "
        f"percentile interval). Δ: paired difference from the baseline (same seeds, same test images, resampled jointly) "
        f"in points with its 95 % CI; P(> b): probability that a run of the method beats a run of the baseline (all pairs "
        f"of runs at the paired seeds, ties ½). {RULE}. Profile {profile} ({profile_setup(runs)})."
    )
    data = pd.DataFrame(records)
    for b in baselines:
        data[f"vs_{b}_paired_seeds"] = data[f"vs_{b}_paired_seeds"].astype("Int64")
    return Table(f"significance_{protocol}", caption, header, rows, data, label_columns=3)


def ranks_table(runs: pd.DataFrame, profile: str, protocol: str) -> Table | None:
    metric, description = PROTOCOLS[protocol]
    runs = main_runs(runs)
    if runs.empty:
        return None
    scores = cell_scores(runs, metric)
    analysis = rank_analysis(scores)
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
                        "friedman_p": analysis.friedman_p, "critical_difference": analysis.critical_difference,
                        **({f"nemenyi_p_{m}": analysis.nemenyi_p.loc[method, m] for m in analysis.nemenyi_p} if analysis.testable else {})})
    cells = ", ".join(f"{dataset_label(d)} {ratio_label(r)}" for d, r in analysis.blocks)
    if analysis.testable:
        test = (f"Friedman χ² = {analysis.friedman_statistic:.2f} (df {len(rows) - 1}), p = {analysis.friedman_p:.3g}; Nemenyi "
                f"critical difference CD = {analysis.critical_difference:.2f} at α = {ALPHA:g}: methods whose average ranks "
                f"differ by more than CD differ significantly (read only when the Friedman test rejects)")
    else:
        test = f"no Friedman test: {analysis.note}"
    caption = (
        f"Average rank (1 = best) of each method over the {len(analysis.blocks)} dataset × ratio cells where every method "
        f"ran ({cells}), by mean mIoU (%), {description}; {test}. Profile {profile} ({profile_setup(runs)})."
    )
    excluded = ", ".join(f"{dataset_label(d)} {ratio_label(r)}" for d, r in analysis.excluded)
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


# ---------------------------------------------------------------------------------------------
# the published numbers beside ours, and the UAPS ablations (definitions: benchmarks.reporting.paper)


def _ours(runs: pd.DataFrame, column: str) -> tuple[float, float, int]:
    values = runs[column].dropna() if column in runs else pd.Series(dtype=float)
    return (values.mean(), values.std(), len(values)) if len(values) else (float("nan"), float("nan"), 0)


def _delta(ours: float, paper: float) -> str:
    return MISSING if is_missing(ours) or is_missing(paper) else f"{ours - paper:+.2f}"


def paper_main_table(runs: pd.DataFrame, profile: str, reference: dict[str, Any]) -> Table | None:
    plain = main_runs(runs)
    rows, records = [], []
    for ref in reference["main"]:
        cell = plain[(plain["dataset"] == ref["dataset"]) & (plain["ratio"] == ref["ratio"]) & (plain["method"] == ref["method"])]
        mean, std, seeds = _ours(cell, "paper_miou")
        rows.append([dataset_label(ref["dataset"]), ratio_label(ref["ratio"]), ref["method"], number(ref["miou"]),
                     mean_std(mean, std, seeds), _delta(mean, ref["miou"])])
        records.append({"profile": profile, **{k: ref[k] for k in ("dataset", "ratio", "method")}, "paper_miou": ref["miou"],
                        "ours_miou_mean": mean, "ours_miou_std": std, "ours_seeds": seeds})
    if not any(r["ours_seeds"] for r in records):
        return None
    caption = (
        f"Published UAPS results against ours: mIoU (%), paper protocol. Ours: profile {profile} "
        f"({profile_setup(runs)}), mean ± std over n seeds, default prediction (UAPS: main decoder). "
        f"{paper_source(reference)}"
    )
    header = ["Dataset", "Labels", "Method", "Paper", f"Ours ({profile})", "Ours − paper"]
    return Table("paper_main", caption, header, rows, pd.DataFrame(records), label_columns=3)


def paper_losses_table(runs: pd.DataFrame, profile: str, reference: dict[str, Any]) -> Table | None:
    spec = reference["loss_ablation"]
    ablation = ablation_runs(runs, "losses")
    datasets = ordered_datasets({d for row in spec["rows"] for d in row["miou"]})
    header = ["Loss terms", *(f"{dataset_label(d)} {side}" for d in datasets for side in ("paper", "ours"))]
    rows, records = [], []
    for row in spec["rows"]:
        cells = [losses_label(row["losses"])]
        for dataset in datasets:
            match = ablation[(ablation["dataset"] == dataset) & (ablation["ratio"] == spec["ratio"]) & (ablation["value"] == row["losses"])]
            mean, std, seeds = _ours(match, "paper_miou")
            paper = row["miou"].get(dataset)
            cells += [number(paper), mean_std(mean, std, seeds)]
            records.append({"profile": profile, "dataset": dataset, "ratio": spec["ratio"], "losses": row["losses"],
                            "paper_miou": paper, "ours_miou_mean": mean, "ours_miou_std": std, "ours_seeds": seeds})
        rows.append(cells)
    if not any(r["ours_seeds"] for r in records):
        return None
    caption = (
        f"Loss-combination ablation of UAPS at {ratio_label(spec['ratio'])} labels: mIoU (%), paper protocol, paper "
        f"against ours (profile {profile}, {profile_setup(runs)}; UAPS runs differing only in the losses option, "
        f"mean ± std over n seeds). {paper_source(reference)}"
    )
    return Table("paper_losses", caption, header, rows, pd.DataFrame(records))


def _decoder_cells(runs: pd.DataFrame, dataset: str, ratio: float) -> pd.DataFrame:
    """Per D: main/ensemble mIoU (paper protocol), params, GMACs and ms of the UAPS D ablation."""
    ablation = ablation_runs(runs, "aux_decoders")
    ablation = ablation[(ablation["dataset"] == dataset) & (ablation["ratio"] == ratio)]
    if ablation.empty:
        return pd.DataFrame()
    frame = pd.DataFrame({
        "aux_decoders": ablation["value"].astype(int),
        "seed": ablation["seed"],
        "image_size": ablation["image_size"],
        "main_miou": variant_metric(ablation, "main", "paper_miou"),
        "ensemble_miou": variant_metric(ablation, "ensemble", "paper_miou"),
        "params_m": ablation["params_m"],
        "main_gmacs": variant_metric(ablation, "main", "gmacs"),
        "ensemble_gmacs": variant_metric(ablation, "ensemble", "gmacs"),
        "main_ms": variant_metric(ablation, "main", "eval_ms"),
        "ensemble_ms": variant_metric(ablation, "ensemble", "eval_ms"),
    })
    return aggregate(frame, ["aux_decoders"], [c for c in frame if c not in ("aux_decoders", "seed")])


def paper_decoder_tables(runs: pd.DataFrame, profile: str, reference: dict[str, Any]) -> list[Table]:
    spec, timing = reference["aux_decoders"], reference["inference_ms"]
    ours = _decoder_cells(runs, spec["dataset"], spec["ratio"])
    if ours.empty:
        return []
    ours = ours.set_index("aux_decoders")
    paper = {row["aux_decoders"]: row for row in spec["rows"]}
    counts = sorted(set(paper) | set(ours.index))
    size = reference["aux_decoders"]["macs_image_size"]
    cell = f"{dataset_label(spec['dataset'])} at {ratio_label(spec['ratio'])} labels"
    accuracy_rows, cost_rows, records = [], [], []
    for d in counts:
        p = paper.get(d, {})
        o = ours.loc[d] if d in ours.index else None

        def get(column: str, o: pd.Series | None = o) -> float:
            return float("nan") if o is None else o[column]

        scale = (size / get("image_size_mean")) ** 2
        accuracy_rows.append([str(d), number(p.get("main_miou")),
                              mean_std(get("main_miou_mean"), get("main_miou_std"), 0 if o is None else o["seeds"]),
                              mean_std(get("ensemble_miou_mean"), get("ensemble_miou_std"), 0 if o is None else o["seeds"])])
        paper_ms = timing if d == timing["aux_decoders"] else {}
        cost_rows.append([str(d), number(p.get("params_m")), number(get("params_m_mean")),
                          number(p.get("gmacs")), number(get("main_gmacs_mean") * scale), number(get("ensemble_gmacs_mean") * scale),
                          number(paper_ms.get("main")), number(get("main_ms_mean")),
                          number(paper_ms.get("ensemble")), number(get("ensemble_ms_mean"))])
        records.append({
            "profile": profile, "dataset": spec["dataset"], "ratio": spec["ratio"], "aux_decoders": d,
            "paper_main_miou": p.get("main_miou"), "ours_main_miou_mean": get("main_miou_mean"),
            "ours_main_miou_std": get("main_miou_std"), "ours_ensemble_miou_mean": get("ensemble_miou_mean"),
            "ours_ensemble_miou_std": get("ensemble_miou_std"), "ours_seeds": 0 if o is None else int(o["seeds"]),
            "paper_params_m": p.get("params_m"), "ours_params_m": get("params_m_mean"),
            "paper_gmacs_256": p.get("gmacs"), "ours_image_size": get("image_size_mean"),
            "ours_main_gmacs": get("main_gmacs_mean"), "ours_ensemble_gmacs": get("ensemble_gmacs_mean"),
            "ours_main_gmacs_256": get("main_gmacs_mean") * scale, "ours_ensemble_gmacs_256": get("ensemble_gmacs_mean") * scale,
            "paper_main_ms": paper_ms.get("main"), "ours_main_ms": get("main_ms_mean"),
            "paper_ensemble_ms": paper_ms.get("ensemble"), "ours_ensemble_ms": get("ensemble_ms_mean"),
        })
    data = pd.DataFrame(records)
    accuracy = Table(
        "paper_aux_decoders",
        f"Number of auxiliary decoders D, {cell}: mIoU (%), paper protocol, of the main decoder (paper) against "
        f"ours (main decoder and ensemble of all decoders; profile {profile}, {profile_setup(runs)}; mean ± std "
        f"over n seeds). {paper_source(reference)}",
        ["D", "Main (paper)", f"Main ({profile})", f"Ensemble ({profile})"], accuracy_rows, data,
    )
    cost = Table(
        "paper_cost",
        f"Cost against D: trainable parameters (M), GMACs per {size}×{size} image (ours measured at the run's "
        f"image size and scaled by pixel count, exact for a fully convolutional network) and inference ms per "
        f"image (paper: the authors' GPU, full model only; ours: profile {profile} on its device). "
        f"{paper_source(reference)}",
        ["D", "Params paper", "Params ours", "GMACs paper", "GMACs ours main", "GMACs ours ensemble",
         "ms main paper", "ms main ours", "ms ensemble paper", "ms ensemble ours"],
        cost_rows, data,
    )
    return [accuracy, cost]


def _ablation_tests(ablation: pd.DataFrame, base_method: str) -> dict[tuple, dict[str, Any]]:
    """Each setting of an ablation against its cell's default (the plain ``base_method`` runs), paper protocol."""
    bootstrap, tests = Bootstrap(), {}
    for (dataset, ratio), cell in ablation.groupby(["dataset", "ratio"]):
        default = cell.loc[cell["method"] == base_method, "value_key"]
        if default.empty:
            continue
        baseline = run_set_records(cell.loc[cell["value_key"] == default.iloc[0], "path"])
        for value, setting in cell[cell["value_key"] != default.iloc[0]].groupby("value_key"):
            tests[(dataset, ratio, value)] = compare(run_set_records(setting["path"]), baseline, "paper", bootstrap)
    return tests


def ablation_table(runs: pd.DataFrame, profile: str, option: str, base_method: str = "uaps") -> Table | None:
    ablation = ablation_runs(runs, option, base_method, per_ratio=option != "mixing")
    if ablation.empty:
        return None
    ablation = ablation.assign(value_key=ablation["value"].astype(str))
    cells = aggregate(ablation, ["dataset", "ratio", "value_key"], ["paper_miou", "miou"]).set_index(["dataset", "ratio", "value_key"])
    columns = [(d, r) for d in ordered_datasets(ablation["dataset"]) for r in sorted(ablation.loc[ablation["dataset"] == d, "ratio"].unique())]
    values = ordered_values(option, ablation["value"])
    defaults = set(ablation.loc[ablation["method"] == base_method, "value"].astype(str))
    grid = cells.reindex(pd.MultiIndex.from_tuples([(d, r, str(v)) for d, r in columns for v in values], names=cells.index.names))
    grid["seeds"] = grid["seeds"].fillna(0).astype(int)
    grid["best"] = _column_best(grid, "paper_miou_mean")
    tests = _ablation_tests(ablation, base_method)
    untested = {"diff": math.nan, "diff_ci_low": math.nan, "diff_ci_high": math.nan, "p_improvement": math.nan, "mark": "", "note": ""}
    for column, empty in untested.items():
        grid["test_note" if column == "note" else column] = [tests[key][column] if key in tests else empty for key in grid.index]
    header = [OPTION_LABELS.get(option, option), *(f"{dataset_label(d)} {ratio_label(r)}" for d, r in columns)]
    rows, bold = [], []
    for v in values:
        label = value_label(option, v) + (" (default)" if str(v) in defaults else "")
        entries = [grid.loc[(d, r, str(v))] for d, r in columns]
        rows.append([label, *(f"{mean_std(e['paper_miou_mean'], e['paper_miou_std'], e['seeds'])} {e['mark']}".strip()
                              for e in entries)])
        bold.append([False, *(bool(e["best"]) for e in entries)])
    data = grid.reset_index().rename(columns={"value_key": option})
    data.insert(0, "profile", profile)
    caption = (
        f"UAPS ablation over {OPTION_LABELS.get(option, option)}: mIoU (%), paper protocol (standard protocol in the "
        f"CSV), mean ± std over n seeds; runs differ from the default only in this option; best per column in bold; "
        f"marks against the default of the column (paired, paper protocol): {RULE}. Profile {profile} ({profile_setup(ablation)})."
    )
    return Table(f"ablation_{option}", caption, header, rows, data, bold)


def aux_decoder_table(runs: pd.DataFrame, profile: str) -> Table | None:
    """The D ablation in every cell where it was run: accuracy of main decoder and ensemble, and cost."""
    ablation = ablation_runs(runs, "aux_decoders")
    cells = [(d, r) for d in ordered_datasets(ablation["dataset"]) for r in sorted(ablation.loc[ablation["dataset"] == d, "ratio"].unique())]
    if not cells:
        return None
    parts = [_decoder_cells(runs, d, r).assign(dataset=d, ratio=r) for d, r in cells]
    data = pd.concat(parts, ignore_index=True)
    default = set(ablation.loc[ablation["method"] == "uaps", "value"].astype(int))
    rows = [
        [dataset_label(c.dataset), ratio_label(c.ratio), f"{c.aux_decoders}" + (" (default)" if c.aux_decoders in default else ""),
         mean_std(c.main_miou_mean, c.main_miou_std, c.seeds), mean_std(c.ensemble_miou_mean, c.ensemble_miou_std, c.seeds),
         number(c.params_m_mean), number(c.main_gmacs_mean), number(c.ensemble_gmacs_mean),
         number(c.main_ms_mean), number(c.ensemble_ms_mean)]
        for c in data.itertuples()
    ]
    bold = []
    for d, r in cells:
        block = data[(data["dataset"] == d) & (data["ratio"] == r)]
        main, ensemble = best_flags(block["main_miou_mean"].tolist()), best_flags(block["ensemble_miou_mean"].tolist())
        bold += [[False, False, False, m, e, False, False, False, False, False] for m, e in zip(main, ensemble)]
    data.insert(0, "profile", profile)
    caption = (
        f"UAPS with D auxiliary decoders: mIoU (%), paper protocol, of the main decoder and of the ensemble of all "
        f"decoders (mean ± std over n seeds; best per cell in bold); trainable parameters (M); GMACs per image and "
        f"inference ms per image at the run's image size, per prediction. Profile {profile} ({profile_setup(ablation)})."
    )
    header = ["Dataset", "Labels", "D", "Main", "Ensemble", "Params (M)", "GMACs main", "GMACs ensemble", "ms main", "ms ensemble"]
    return Table("ablation_aux_decoders", caption, header, rows, data, bold, label_columns=3)


def build_tables(runs: pd.DataFrame, profile: str, reference: dict[str, Any] | None = None,
                 baselines: Sequence[str] = ()) -> tuple[list[Table], list[str]]:
    """Every table of one profile's runs, and the names of the tables left out for lack of data.

    ``baselines``: methods named with ``--baseline`` (``supervised`` is always one).
    """
    reference = reference or load_paper_reference()
    runs = runs[runs["profile"] == profile]
    statistics = cell_statistics(main_runs(runs), baselines_for(baselines))
    candidates: list[tuple[str, Table | None]] = [
        *((f"main_{p}", main_table(runs, profile, p, statistics, primary_baseline(baselines))) for p in PROTOCOLS),
        *((f"significance_{p}", significance_table(runs, profile, p, statistics, baselines_for(baselines))) for p in PROTOCOLS),
        *((f"ranks_{p}", ranks_table(runs, profile, p)) for p in PROTOCOLS),
        *((t.name, t) for t in per_class_tables(runs, profile)),
        ("paper_main", paper_main_table(runs, profile, reference)),
        ("paper_losses", paper_losses_table(runs, profile, reference)),
    ]
    decoder_tables = paper_decoder_tables(runs, profile, reference)
    candidates += [(t.name, t) for t in decoder_tables] or [("paper_aux_decoders", None), ("paper_cost", None)]
    candidates += [(f"ablation_{option}", ablation_table(runs, profile, option)) for option in ABLATION_OPTIONS if option != "aux_decoders"]
    candidates.append(("ablation_aux_decoders", aux_decoder_table(runs, profile)))
    tables = [table for _, table in candidates if table is not None]
    return tables, [name for name, table in candidates if table is None]


def write_tables(results_dir: Path, out: Path, profiles: Sequence[str] | None = None,
                 baselines: Sequence[str] = ()) -> tuple[dict[str, list[Path]], list[str]]:
    """Write every profile's tables to ``out/<profile>/``; returns the files per profile and notes."""
    runs = collect_runs(results_dir, profiles)
    reference = load_paper_reference()
    written: dict[str, list[Path]] = {}
    notes: list[str] = []
    names = list(profiles) if profiles else find_profiles(results_dir)
    for profile in names:
        if runs.empty or not (runs["profile"] == profile).any():
            notes.append(f"profile {profile}: no completed runs under {Path(results_dir) / 'runs' / profile}; no tables")
            continue
        tables, skipped = build_tables(runs, profile, reference, baselines)
        written[profile] = [path for table in tables for path in table.write(Path(out) / profile)]
        notes += [f"profile {profile}: table {name} skipped: no matching runs" for name in skipped]
    return written, notes
