"""The tables that set our runs beside the UAPS paper: its published numbers and its ablations.

``paper_main``, ``paper_losses``, ``paper_aux_decoders`` and ``paper_cost`` put the authors'
published numbers (``benchmarks.uaps_paper.published``) beside ours for the same cells;
``ablation_<option>`` show the UAPS ablations found among the runs (told apart by their
``method_options``), each setting with its paired difference from the default of its column (95 %
t-interval over units, mark after Holm over the table's settings, detectable effect; paper
protocol), and ``ablation_aux_decoders`` the accuracy (the main decoder's likewise against the default D) and cost against the number of decoders D.
``build_paper_tables`` gives them all to the report section (``benchmarks.uaps_paper.section``).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

from defectseg.benchmarks.reporting.aggregate import aggregate, main_runs, variant_metric
from defectseg.benchmarks.reporting.statistics import (
    COMPARISON_COLUMNS, DETECTABLE, INTERVALS, RULE, RunRecords, compare, holm, run_set_records,
)
from defectseg.benchmarks.reporting.table_format import (
    MISSING, Table, best_flags, cell_label, column_best, dataset_label, difference_text, is_missing, mean_std, number, ordered_cells,
    ordered_datasets, profile_setup, ratio_label,
)
from defectseg.benchmarks.uaps_paper.ablations import ABLATION_OPTIONS, OPTION_LABELS, ablation_runs, losses_label, ordered_values, value_label
from defectseg.benchmarks.uaps_paper.published import paper_source

RunSet = Callable[[Iterable[str]], list[RunRecords] | None]  # a cell's per-image records, e.g. ResultsView.run_set_records


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


def _ablation_tests(ablation: pd.DataFrame, run_set: RunSet) -> dict[tuple, dict[str, Any]]:
    """Each setting of an ablation against its cell's default (the reference setting), paper protocol; the
    marks after Holm over all the settings tested in the table."""
    tests = []
    for (dataset, ratio), cell in ablation.groupby(["dataset", "ratio"]):
        default = cell.loc[cell["reference"], "value_key"]
        if default.empty:
            continue
        baseline = run_set(cell.loc[cell["value_key"] == default.iloc[0], "path"])
        for value, setting in cell[cell["value_key"] != default.iloc[0]].groupby("value_key"):
            tests.append({"key": (dataset, ratio, value), **compare(run_set(setting["path"]), baseline, "paper")})
    if not tests:
        return {}
    adjusted = holm(pd.DataFrame(tests).assign(family=0), ["family"])
    return {row["key"]: row[list(COMPARISON_COLUMNS)].to_dict() for _, row in adjusted.iterrows()}


def ablation_cell(entry: pd.Series) -> str:
    """``"66.07 ± 0.67 (n=3); -0.31 [-0.83, +0.17] · (MDE 2.10)"``: the setting's mIoU, then (where it was
    tested) its paired difference from the default with the 95 % CI, the mark and the detectable effect."""
    text = mean_std(entry["paper_miou_mean"], entry["paper_miou_std"], entry["seeds"])
    return f"{text}; {difference_text(entry)}" if entry["mark"] else text


def ablation_table(runs: pd.DataFrame, profile: str, option: str, base_method: str = "uaps",
                   run_set: RunSet = run_set_records) -> Table | None:
    ablation = ablation_runs(runs, option, base_method, per_ratio=option != "mixing")
    if ablation.empty:
        return None
    ablation = ablation.assign(value_key=ablation["value"].astype(str))
    cells = aggregate(ablation, ["dataset", "ratio", "value_key"], ["paper_miou", "miou"]).set_index(["dataset", "ratio", "value_key"])
    columns = ordered_cells(ablation)
    values = ordered_values(option, ablation["value"])
    defaults = set(ablation.loc[ablation["reference"], "value"].astype(str))
    grid = cells.reindex(pd.MultiIndex.from_tuples([(d, r, str(v)) for d, r in columns for v in values], names=cells.index.names))
    grid["seeds"] = grid["seeds"].fillna(0).astype(int)
    grid["best"] = column_best(grid, "paper_miou_mean")
    tests = _ablation_tests(ablation, run_set)
    untested = {column: math.nan for column in COMPARISON_COLUMNS} | {"units": 0, "mark": "", "note": ""}
    for column, empty in untested.items():
        grid["test_note" if column == "note" else column] = [tests[key][column] if key in tests else empty for key in grid.index]
    header = [OPTION_LABELS.get(option, option), *(cell_label(d, r) for d, r in columns)]
    rows, bold = [], []
    for v in values:
        label = value_label(option, v) + (" (default)" if str(v) in defaults else "")
        entries = [grid.loc[(d, r, str(v))] for d, r in columns]
        rows.append([label, *(ablation_cell(e) for e in entries)])
        bold.append([False, *(bool(e["best"]) for e in entries)])
    data = grid.reset_index().rename(columns={"value_key": option})
    data.insert(0, "profile", profile)
    caption = (
        f"UAPS ablation over {OPTION_LABELS.get(option, option)}: mIoU (%), paper protocol (standard protocol in the "
        f"CSV), mean ± std over n seeds; runs differ from the default only in this option; best per column in bold; "
        f"after the semicolon, the paired difference from the default of the column in points (paper protocol, same "
        f"units and test images) with its {INTERVALS}, mark and MDE: {RULE} (here: over the table's settings); {DETECTABLE}. "
        f"Profile {profile} ({profile_setup(ablation)})."
    )
    return Table(f"ablation_{option}", caption, header, rows, data, bold)


def aux_decoder_table(runs: pd.DataFrame, profile: str, run_set: RunSet = run_set_records) -> Table | None:
    """The D ablation in every cell where it was run: accuracy of main decoder and ensemble, the main
    decoder's paired difference from the default D, and cost."""
    ablation = ablation_runs(runs, "aux_decoders")
    cells = [(d, r) for d in ordered_datasets(ablation["dataset"]) for r in sorted(ablation.loc[ablation["dataset"] == d, "ratio"].unique())]
    if not cells:
        return None
    tests = _ablation_tests(ablation.assign(value_key=ablation["value"].astype(int).astype(str)), run_set)
    parts = [_decoder_cells(runs, d, r).assign(dataset=d, ratio=r) for d, r in cells]
    data = pd.concat(parts, ignore_index=True)
    default = set(ablation.loc[ablation["reference"], "value"].astype(int))
    differences = [tests.get((c.dataset, c.ratio, str(c.aux_decoders))) for c in data.itertuples()]
    for column in COMPARISON_COLUMNS:
        data[f"main_{column}"] = [math.nan if t is None else t[column] for t in differences]
    rows = [
        [dataset_label(c.dataset), ratio_label(c.ratio), f"{c.aux_decoders}" + (" (default)" if c.aux_decoders in default else ""),
         mean_std(c.main_miou_mean, c.main_miou_std, c.seeds), "" if test is None else test["note"] or difference_text(test),
         mean_std(c.ensemble_miou_mean, c.ensemble_miou_std, c.seeds),
         number(c.params_m_mean), number(c.main_gmacs_mean), number(c.ensemble_gmacs_mean),
         number(c.main_ms_mean), number(c.ensemble_ms_mean)]
        for c, test in zip(data.itertuples(), differences)
    ]
    bold = []
    for d, r in cells:
        block = data[(data["dataset"] == d) & (data["ratio"] == r)]
        main, ensemble = best_flags(block["main_miou_mean"].tolist()), best_flags(block["ensemble_miou_mean"].tolist())
        bold += [[False, False, False, m, False, e, False, False, False, False, False] for m, e in zip(main, ensemble)]
    data.insert(0, "profile", profile)
    caption = (
        f"UAPS with D auxiliary decoders: mIoU (%), paper protocol, of the main decoder and of the ensemble of all "
        f"decoders (mean ± std over n seeds; best per cell in bold); the main decoder's paired difference from the "
        f"default D in points (same units and test images, {INTERVALS}): {RULE} (here: over the table's settings); "
        f"{DETECTABLE}; trainable parameters (M); "
        f"GMACs per image and inference ms per image at the run's image size, per prediction. "
        f"Profile {profile} ({profile_setup(ablation)})."
    )
    header = ["Dataset", "Labels", "D", "Main", "Main vs default", "Ensemble", "Params (M)", "GMACs main", "GMACs ensemble",
              "ms main", "ms ensemble"]
    return Table("ablation_aux_decoders", caption, header, rows, data, bold, label_columns=3)


def build_paper_tables(runs: pd.DataFrame, profile: str, reference: dict[str, Any],
                       run_set: RunSet = run_set_records) -> list[tuple[str, Table | None]]:
    """The paper-comparison and ablation tables of one profile's runs by name; None for a table without data."""
    candidates: list[tuple[str, Table | None]] = [
        ("paper_main", paper_main_table(runs, profile, reference)),
        ("paper_losses", paper_losses_table(runs, profile, reference)),
    ]
    decoder_tables = paper_decoder_tables(runs, profile, reference)
    candidates += [(t.name, t) for t in decoder_tables] or [("paper_aux_decoders", None), ("paper_cost", None)]
    candidates += [(f"ablation_{option}", ablation_table(runs, profile, option, run_set=run_set))
                   for option in ABLATION_OPTIONS if option != "aux_decoders"]
    candidates.append(("ablation_aux_decoders", aux_decoder_table(runs, profile, run_set)))
    return candidates
