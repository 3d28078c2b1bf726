"""The benchmark report: ``<out>/index.md`` and ``<out>/index.html`` from the runs on disk.

It (re)writes the tables and figures first (``benchmarks.reporting.tables``, ``benchmarks.reporting.plots``),
all three from one ``benchmarks.reporting.results_view.ResultsView`` and with the same report sections
(``benchmarks.reporting.sections``, e.g. the UAPS paper's tables and figures), then a page with: how to
regenerate everything (``benchmarks.reporting.regenerate``: commands that retrain exactly the reported runs),
the environment of the runs and of this checkout, per profile its setup, tables, the statistical tests read
out per cell (``benchmarks.reporting.statistics``) and figures (relative links), and the failed or incomplete
runs with their reasons. The HTML is rendered from the same blocks as the Markdown (no extra dependency).
"""
from __future__ import annotations

import html
import os
import platform
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from defectseg.datasets.base import DATA_ROOT_ENV

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.environment import git_commit, git_output
from defectseg.benchmarks.reporting.plots import write_figures
from defectseg.benchmarks.reporting.regenerate import benchmark_commands
from defectseg.benchmarks.reporting.results_view import ResultsView
from defectseg.benchmarks.reporting.sections import ReportSection
from defectseg.benchmarks.reporting.statistics import BETTER, DETECTABLE, INTERVALS, MIN_UNITS, RULE, TOO_FEW_UNITS, WORSE
from defectseg.benchmarks.reporting.table_format import (
    PROTOCOLS, Table, dataset_label, interval, number, ordered_datasets, ordered_methods, ratio_label, signed,
)
from defectseg.benchmarks.reporting.tables import ProfileTables, write_tables

ENVIRONMENT_KEYS = ("python", "torch", "segmentation_models_pytorch", "device", "cpu", "platform", "git_commit")
REASON_CHARS = 300
FIGURE_CAPTIONS = {
    "miou_vs_ratio_standard": "Label efficiency: mIoU (standard protocol) against the labelled ratio; error bars: std over "
                              "units; bands: 95 % CI over units; triangles: significantly better / worse than the baseline.",
    "miou_vs_ratio_paper": "Label efficiency: mIoU (paper protocol) against the labelled ratio; bands: 95 % CI over units; "
                           "triangles: significantly better / worse than the baseline; diamonds: published numbers.",
    "critical_difference_standard": "Critical-difference diagram (standard protocol): average ranks over the cells where "
                                    "every method ran; bars join methods the Nemenyi test does not separate (drawn only for independent cells).",
    "critical_difference_paper": "Critical-difference diagram (paper protocol): average ranks over the cells where every "
                                 "method ran; bars join methods the Nemenyi test does not separate (drawn only for independent cells).",
    "difference_standard": "Paired difference from the baseline (standard protocol), per dataset and ratio: dot: estimate, "
                           "bar: unadjusted 95 % CI over units; green / red: significantly better / worse after Holm, grey: no evidence.",
    "difference_paper": "Paired difference from the baseline (paper protocol), per dataset and ratio: dot: estimate, "
                        "bar: unadjusted 95 % CI over units; green / red: significantly better / worse after Holm, grey: no evidence.",
    "selection_standard": "Difference from the baseline (standard protocol) when both choose their checkpoint by each policy: "
                          "full validation split, validation budget, final checkpoint, best on test (an upper bound).",
    "selection_paper": "Difference from the baseline (paper protocol) when both choose their checkpoint by each policy: "
                       "full validation split, validation budget, final checkpoint, best on test (an upper bound).",
    "spread_standard": "Each unit's mIoU (standard protocol; circles: one labelled subset each) beside the runs that share "
                       "one subset and differ only in their training seed (triangles): the labelled subset's spread against the seed's.",
    "spread_paper": "Each unit's mIoU (paper protocol; circles: one labelled subset each) beside the runs that share "
                    "one subset and differ only in their training seed (triangles): the labelled subset's spread against the seed's.",
    "resolution_standard": "Gain over the baseline (standard protocol) at the other image size (grey) and at this profile's "
                           "(purple) on the same units, per checkpoint-selection policy; diamond: the gain changed significantly.",
    "resolution_paper": "Gain over the baseline (paper protocol) at the other image size (grey) and at this profile's "
                        "(purple) on the same units, per checkpoint-selection policy; diamond: the gain changed significantly.",
    "validation_curves": "Validation mean Dice against the iteration (mean over units); dots: each unit's best step; "
                         "shaded: the last 10 % of the run, where a best step means the run may not have levelled off.",
}
# the headings of the generic tables of a profile, with which tables go under each; a section's come before the last
TableGroups = Sequence[tuple[str, Callable[[str], bool]]]
TABLE_GROUPS: TableGroups = (
    ("Main results", lambda n: n.startswith("main_")),
    ("Is a difference real?", lambda n: n.startswith(("difference_", "significance_", "ranks_"))),
    ("How was the checkpoint chosen?", lambda n: n.startswith("selection_")),
    ("Does it matter which images are labelled?", lambda n: n.startswith("spread_")),
    ("Does the ordering hold at another image size?", lambda n: n.startswith("resolution_")),
    ("Did training level off?", lambda n: n == "best_steps"),
)
LAST_TABLE_GROUPS: TableGroups = (("Per-class IoU", lambda n: n.startswith("per_class_")),)


# ---------------------------------------------------------------------------------------------
# a tiny document model rendered to Markdown and HTML


@dataclass
class Block:
    kind: str  # heading | text | code | list | table | image
    text: str = ""
    level: int = 2
    items: Sequence[str] = ()
    table: Table | None = None


def heading(text: str, level: int = 2) -> Block:
    return Block("heading", text, level=level)


def _inline_html(text: str) -> str:
    """Escape, then render Markdown's `code` and [label](link) spans."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', out)


def to_markdown(blocks: Sequence[Block]) -> str:
    parts = []
    for b in blocks:
        if b.kind == "heading":
            parts.append(f"{'#' * b.level} {b.text}")
        elif b.kind == "text":
            parts.append(b.text)
        elif b.kind == "code":
            parts.append(f"```bash\n{b.text}\n```")
        elif b.kind == "list":
            parts.append("\n".join(f"- {item}" for item in b.items))
        elif b.kind == "table":
            parts.append(b.table.markdown().rstrip())
        elif b.kind == "image":
            parts.append(f"![{b.text}]({b.items[0]})\n\n*{b.text}* ([PDF]({b.items[1]}))")
    return "\n\n".join(parts) + "\n"


def to_html(blocks: Sequence[Block], title: str) -> str:
    parts = []
    for b in blocks:
        if b.kind == "heading":
            parts.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif b.kind == "text":
            parts.append(f"<p>{_inline_html(b.text)}</p>")
        elif b.kind == "code":
            parts.append(f"<pre><code>{html.escape(b.text)}</code></pre>")
        elif b.kind == "list":
            parts.append("<ul>" + "".join(f"<li>{_inline_html(item)}</li>" for item in b.items) + "</ul>")
        elif b.kind == "table":
            parts.append(b.table.html())
        elif b.kind == "image":
            png, pdf = (html.escape(p) for p in b.items)
            parts.append(f'<figure><img src="{png}" alt="{html.escape(b.text)}"><figcaption>{html.escape(b.text)} '
                         f'(<a href="{pdf}">PDF</a>)</figcaption></figure>')
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.4}"
        "table{border-collapse:collapse;margin:1em 0;font-size:90%}caption{text-align:left;padding:.3em 0}"
        "th,td{border-top:1px solid #ccc;border-bottom:1px solid #ccc;padding:.2em .6em}td.num{text-align:right}"
        "img{max-width:100%}pre{background:#f5f5f5;padding:.6em;overflow-x:auto}.note{font-size:85%;color:#555}"
    )
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def simple_table(name: str, header: list[str], rows: list[list[str]], data: pd.DataFrame | None = None, label_columns: int = 1) -> Table:
    return Table(name, "", header, rows, data if data is not None else pd.DataFrame(rows, columns=header), label_columns=label_columns)


# ---------------------------------------------------------------------------------------------
# sections


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()


def _git_dirty() -> bool | None:
    status = git_output(["status", "--porcelain", "--untracked-files=no"])
    return None if status is None else bool(status)


def reproduce_section(results_dir: Path, profiles: Sequence[str], out: Path, tables_dir: Path, figures_dir: Path,
                      runs: pd.DataFrame, baselines: Sequence[str] = ()) -> list[Block]:
    selection = "".join(f" --profile {p}" for p in profiles) + "".join(f" --baseline {b}" for b in baselines)
    dirs = f"--results-dir {results_dir} --out {out} --tables-dir {tables_dir} --figures-dir {figures_dir}"
    commands, notes = [], []
    for profile in profiles:
        found = benchmark_commands(runs, profile, results_dir) if not runs.empty else ([], [])
        commands += found[0]
        notes += found[1]
    blocks = [
        heading("How to regenerate"),
        Block("text", f"From a clone of the repository at the git commit of the runs (under Environment) (data under `data/` or `${DATA_ROOT_ENV}`, "
                      "see `make data`): train exactly the runs reported here (each command names their datasets, methods, ratios "
                      "and seeds, and every setting that differs from the profile as `--set`; checked against each run's config "
                      "hash), then rebuild tables, figures and this page. Runs already completed with the same resolved config are skipped."),
        Block("code", "\n".join(["make setup", *commands, f".venv/bin/python run_all.py report {dirs}{selection}"])),
    ]
    if notes:
        blocks.append(Block("list", items=notes))
    return blocks + [
        Block("text", f"Tables alone: `run_all.py tables --results-dir {results_dir} --out {tables_dir}{selection}`; "
                      f"figures alone: `run_all.py plots --results-dir {results_dir} --out {figures_dir}{selection}` "
                      "(or `make tables`, `make plots`, `make report` with `RESULTS=<dir>`)."),
    ]


def environment_section(runs: pd.DataFrame) -> list[Block]:
    dirty = _git_dirty()
    current = [
        f"python {platform.python_version()}, torch {torch.__version__}",
        f"git commit {git_commit() or 'unknown'}" + (" (with uncommitted changes)" if dirty else ""),
    ]
    blocks = [heading("Environment"), Block("text", "This checkout (where the report was built):"), Block("list", items=current)]
    if runs.empty:
        return blocks
    envs = pd.DataFrame([{k: str(env.get(k, "?")) for k in ENVIRONMENT_KEYS} for env in runs["environment"]])
    envs.insert(0, "profile", runs["profile"].values)
    counts = envs.groupby(["profile", *ENVIRONMENT_KEYS], sort=True).size().reset_index(name="runs")
    header = ["Profile", "Python", "torch", "smp", "Device", "CPU", "Platform", "Git commit", "Runs"]
    rows = [[str(v) for v in row] for row in counts.itertuples(index=False)]
    table = simple_table("environment", header, rows, counts, label_columns=len(header) - 1)
    blocks += [Block("text", "The runs (from each run's `metrics.json`):"), Block("table", table=table)]
    return blocks


def setup_blocks(runs: pd.DataFrame, failures: pd.DataFrame, profile: str) -> list[Block]:
    mine = runs[runs["profile"] == profile]
    failed = failures[failures["profile"] == profile]
    iterations = sorted({int(v) for v in mine["iterations"].dropna()})
    sizes = sorted({int(v) for v in mine["image_size"].dropna()})
    plain = mine["method"] == mine["base_method"]
    items = [
        f"completed runs: {len(mine)}; failed: {int((failed['status'] == 'failed').sum())}; "
        f"incomplete: {int((failed['status'] == 'incomplete').sum())}",
        "datasets: " + ", ".join(dataset_label(d) for d in ordered_datasets(mine["dataset"])),
        "labelled ratios: " + ", ".join(ratio_label(r) for r in sorted(mine["ratio"].unique())),
        "methods: " + (", ".join(ordered_methods(mine.loc[plain, "method"])) or "none (ablation variants only)"),
        "ablation variants: " + (", ".join(sorted(set(mine.loc[~plain, "method"]))) or "none"),
        "seeds: " + ", ".join(str(s) for s in sorted(mine["seed"].unique())),
        f"training: {'/'.join(map(str, iterations))} iterations on {'/'.join(map(str, sizes))}-pixel square images "
        "(full settings: each run's `config.yaml`)",
    ]
    return [Block("list", items=items)]


def failure_section(failures: pd.DataFrame, out: Path) -> list[Block]:
    blocks = [heading("Failed and incomplete runs")]
    if failures.empty:
        return blocks + [Block("text", "None.")]
    rows = []
    for f in failures.itertuples():
        reason = " ".join(f"{f.error}: {f.reason}".strip(": ").split())
        reason = reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 1] + "…"
        rows.append([f.profile, dataset_label(f.dataset), ratio_label(f.ratio), f.method, str(f.seed), f.status, reason,
                     _relative(Path(f.path), out)])
    header = ["Profile", "Dataset", "Labels", "Method", "Seed", "Status", "Reason", "Run directory"]
    return blocks + [
        Block("text", "Full tracebacks are in each run directory's `failure.json`. These runs are left out of every mean; "
                      "a cell with no completed seed is shown as —."),
        Block("table", table=simple_table("failures", header, rows, failures, label_columns=len(header))),
    ]


def _test_sentence(record: pd.Series, baseline: str) -> str | None:
    """One cell's comparison with ``baseline`` in words, or None where there is none (self, no baseline run)."""
    where = f"On {dataset_label(record['dataset'])} at {ratio_label(record['ratio'])} labels"
    note, method = record[f"vs_{baseline}_note"], record["method"]
    if method == baseline or pd.isna(note):
        return None
    if note == TOO_FEW_UNITS:
        units = int(record[f"vs_{baseline}_units"])
        return f"{where}, {method} against {baseline}: {TOO_FEW_UNITS} ({units} paired; a test needs {MIN_UNITS})"
    if note:
        return f"{where}, {method} against {baseline}: {note}"
    symbol = record[f"vs_{baseline}_mark"]
    verb = {BETTER: "beats", WORSE: "is worse than"}.get(symbol)
    claim = f"{verb} {baseline} by" if verb else f"shows no evidence of a difference from {baseline}:"
    ci = interval(record[f"vs_{baseline}_diff_ci_low"], record[f"vs_{baseline}_diff_ci_high"], sign=True)
    return (f"{where}, {method} {claim} {signed(record[f'vs_{baseline}_diff'])} mIoU [95 % CI {ci[1:-1]}], "
            f"Holm p {number(record[f'vs_{baseline}_p_holm'], 3)}, detectable {number(record[f'vs_{baseline}_mde'])}, "
            f"P(improvement) {number(record[f'vs_{baseline}_p_improvement'])} {symbol}")


def statistics_blocks(tables: Sequence[Table], baselines: Sequence[str]) -> list[Block]:
    """The rule, then every cell's comparison with every baseline in words, per protocol."""
    blocks = [Block("text", f"How to read the tests: {RULE}. Intervals: {INTERVALS}, paired across methods (same units, "
                            f"same images). {DETECTABLE}. P(improvement): how often a run of the method beats a run of the "
                            "baseline. Ranks and the Friedman test use the cell means.")]
    for protocol in PROTOCOLS:
        table = next((t for t in tables if t.name == f"significance_{protocol}"), None)
        if table is None:
            continue
        sentences = [s for _, record in table.data.iterrows() for b in baselines if (s := _test_sentence(record, b))]
        if sentences:
            blocks += [Block("text", f"Per cell, {protocol} protocol:"), Block("list", items=sentences)]
    return blocks


def profile_section(view: ResultsView, profile: str, out: Path, tables_dir: Path, built: ProfileTables, figures: list[Path],
                    sections: Sequence[ReportSection] = ()) -> list[Block]:
    """One profile's setup, its tables under their headings (``TABLE_GROUPS``, each section's, then
    ``LAST_TABLE_GROUPS``), the tests in words, and its figures with their captions."""
    tables, skipped = built.tables, built.skipped
    blocks = [heading(f"Profile {profile}"), *setup_blocks(view.runs, view.failures, profile)]
    groups = [*TABLE_GROUPS, *(group for section in sections for group in section.table_groups), *LAST_TABLE_GROUPS]
    for title, selected in groups:
        chosen = [t for t in tables if selected(t.name)]
        if chosen:
            blocks.append(heading(title, 3))
            blocks += [Block("table", table=t) for t in chosen]
            if title == "Is a difference real?":
                blocks += statistics_blocks(chosen, view.baselines)
    files = f"[{_relative(tables_dir / profile, out)}/]({_relative(tables_dir / profile, out)}/)"
    blocks.append(Block("text", f"Every table as CSV (numbers, std, seed counts, best flags), Markdown and LaTeX: {files}."))
    if skipped:
        blocks.append(Block("text", f"Not built for lack of matching runs: {', '.join(skipped)}."))
    pngs = [p for p in figures if p.suffix == ".png"]
    captions: Mapping[str, str] = {**FIGURE_CAPTIONS, **{name: text for section in sections for name, text in section.figure_captions.items()}}
    if pngs:
        blocks.append(heading("Figures", 3))
        for png in pngs:
            caption = captions.get(png.stem, png.stem)
            blocks.append(Block("image", caption, items=(_relative(png, out), _relative(png.with_suffix(".pdf"), out))))
    return blocks


def write_report(view: ResultsView, out: Path, sections: Sequence[ReportSection] = (), tables_dir: Path | None = None,
                 figures_dir: Path | None = None) -> tuple[list[Path], list[str]]:
    """Write tables, figures, ``out/index.md`` and ``out/index.html`` from ``view``; returns the pages and notes."""
    results_dir, out, names = view.results_dir, Path(out), view.profiles
    tables_dir = Path(tables_dir or layout.tables_dir(results_dir))
    figures_dir = Path(figures_dir or layout.figures_dir(results_dir))
    tables, table_notes = write_tables(view, tables_dir, sections)
    figures, figure_notes = write_figures(view, figures_dir, sections)
    runs = view.runs
    title = "Semi-supervised defect segmentation benchmark"
    blocks = [
        heading(title, 1),
        Block("text", f"Built from `{results_dir}/runs` (profiles: {', '.join(names) or 'none found'}). mIoU is over the "
                      "defect classes, in %. Standard protocol: one confusion matrix over the whole test set; paper protocol: "
                      "per-image IoU over the defect classes present, averaged over images (as the UAPS authors computed "
                      "theirs). Means and stds come from the runs' `metrics.json`, confidence intervals and tests from their "
                      "`per_image.npz` (see \"Is a difference real?\"); cells without runs are shown as —."),
        *reproduce_section(results_dir, names, out, tables_dir, figures_dir, runs, view.named_baselines),
        *environment_section(runs),
    ]
    for profile in names:
        if profile not in tables:
            blocks += [heading(f"Profile {profile}"), Block("text", "No completed runs.")]
            continue
        blocks += profile_section(view, profile, out, tables_dir, tables[profile], figures.get(profile, []), sections)
    blocks += failure_section(view.failures, out)
    out.mkdir(parents=True, exist_ok=True)
    pages = [out / "index.md", out / "index.html"]
    pages[0].write_text(to_markdown(blocks))
    pages[1].write_text(to_html(blocks, title))
    return pages, table_notes + figure_notes
