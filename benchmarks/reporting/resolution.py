"""Does the ordering hold at another image size? Each method's gain over the baseline at two sizes, unit by unit.

A profile that trains the same units as another at a different ``train.image_size`` (the second edition's
``label_scarcity_units_128`` beside ``label_scarcity_units``) asks whether the methods' gains depend on the
resolution. Runs of two profiles in one results folder are the same unit at two sizes when their hashed configs
differ only in profile, config hash and ``train.image_size``: same method, dataset, ratio, seed and split seed,
so the same labelled images and the same test images. Per method, checkpoint-selection policy and protocol, on
the units where the method and the baseline ran at both sizes:

* ``gain_there`` / ``gain_here``: the paired difference method - baseline at the other size and at this
  profile's, with both sides' checkpoints chosen by the policy (as in the selection tables);
* ``change`` = gain here - gain there, per unit, with its interval from the four runs' per-image influences
  (``statistics.contrast``: all four score the same test images), Holm over the methods of one protocol,
  policy and pair of sizes. No evidence of a change, with its detectable effect, is the reading "the ordering
  holds"; the gains at this size, with their own Holm marks, are in the selection tables.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from defectseg.benchmarks.engine.config import config_key
from defectseg.benchmarks.reporting.selection import POLICY_LABELS
from defectseg.benchmarks.reporting.statistics import (
    BETTER, DETECTABLE, INTERVALS, NO_EVIDENCE, TOO_FEW_UNITS, WORSE, RunRecords, UnitInterval, contrast, holm,
)
from defectseg.benchmarks.reporting.table_format import (
    MISSING, PROTOCOLS, Table, dataset_label, difference_text, interval, ordered_cells, ordered_methods, profile_setup, ratio_label,
    signed,
)

POLICIES = ("final", "val_budget", "full_val")  # those a user can apply (best on test is only a bound)
UNMATCHED = ("profile", "config_hash", "train.image_size")  # what may differ between the two sizes' runs of one unit
SIZE_COLUMNS = ["here_size", "there_size", "there_profile"]


def _unit_and_size(config: dict) -> tuple[str, int]:
    """(the run's hashed config without ``UNMATCHED`` keys, as canonical JSON; its image size)."""
    return config_key(config, UNMATCHED), int(config["train"]["image_size"])


def resolution_partners(runs: pd.DataFrame, profile: str) -> pd.DataFrame:
    """``profile``'s runs matched with the same unit's runs at another image size in ``runs`` (any profile that ran at
    least as many runs: the check is read in the smaller profile, against the study it checks): one row per pair with
    ``here_path``, ``there_path`` and ``SIZE_COLUMNS``; empty when there is none."""
    runs = runs[runs["config"].map(bool)]
    if not (runs["profile"] == profile).any():  # e.g. a profile of ablation variants only
        return pd.DataFrame(columns=["here_path", "there_path", *SIZE_COLUMNS])
    units, sizes = zip(*(_unit_and_size(config) for config in runs["config"]))
    keyed = runs.assign(unit=list(units), size=list(sizes))
    here, there = keyed[keyed["profile"] == profile], keyed[keyed["profile"] != profile]
    pairs = here.merge(there, on="unit", suffixes=("_here", "_there"))
    runs_per_profile = keyed["profile"].value_counts()
    pairs = pairs[(pairs["size_here"] != pairs["size_there"])
                  & (runs_per_profile[profile] <= pairs["profile_there"].map(runs_per_profile))]
    return pd.DataFrame({"here_path": pairs["path_here"].to_numpy(), "there_path": pairs["path_there"].to_numpy(),
                         "here_size": pairs["size_here"].to_numpy(), "there_size": pairs["size_there"].to_numpy(),
                         "there_profile": pairs["profile_there"].to_numpy()})


def _by_run(records: pd.DataFrame, paths: set[str]) -> pd.DataFrame:
    """The policy records (``selection.policy_records``) of the runs in ``paths``, with their run folder."""
    run = records["records"].map(lambda r: str(Path(r.path).parent))
    return records.assign(run=run)[run.isin(paths)]


def _chosen(records: pd.DataFrame, key: dict[str, object], method: str, seeds: set[int] | None = None) -> list[RunRecords]:
    """The run records of one method under one cell, protocol and policy (``key``), in seed order, of ``seeds`` if given."""
    mask = records["method"] == method
    for column, value in key.items():
        mask &= records[column] == value
    chosen = [r for r in records.loc[mask, "records"] if seeds is None or r.seed in seeds]
    return sorted(chosen, key=lambda r: r.seed)


def _interval_columns(name: str, result: UnitInterval) -> dict[str, float]:
    return {name: 100 * float(result.estimate), f"{name}_low": 100 * float(result.low), f"{name}_high": 100 * float(result.high)}


TEST_COLUMNS = ["units", "gain_there", "gain_there_low", "gain_there_high", "gain_here", "gain_here_low", "gain_here_high",
                "diff", "diff_ci_low", "diff_ci_high", "se", "df", "p_value", "mark", "note"]


def resolution_tests(here: pd.DataFrame, there: pd.DataFrame, partners: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per (dataset, ratio, method, protocol, policy, pair of sizes): the gains at both sizes and their change (module
    doc), from the policy records of this profile's runs (``here``) and of the other profiles' runs (``there``)."""
    if partners.empty or here.empty or there.empty:
        return pd.DataFrame()
    rows = []
    for sizes, pairs in partners.groupby(SIZE_COLUMNS, sort=True):
        ours, theirs = _by_run(here, set(pairs["here_path"])), _by_run(there, set(pairs["there_path"]))
        cells = ours[(ours["method"] != baseline) & ours["policy"].isin(POLICIES)]
        for (profile, dataset, ratio, method, protocol, policy), _ in cells.groupby(
                ["profile", "dataset", "ratio", "method", "protocol", "policy"], sort=False):
            key = {"dataset": dataset, "ratio": ratio, "protocol": protocol, "policy": policy}
            change = contrast([(1.0, _chosen(ours, key, method)), (-1.0, _chosen(ours, key, baseline)),
                               (-1.0, _chosen(theirs, key, method)), (1.0, _chosen(theirs, key, baseline))], protocol)
            row = {"profile": profile, "dataset": dataset, "ratio": ratio, "method": method, "protocol": protocol, "policy": policy,
                   "baseline": baseline, **dict(zip(SIZE_COLUMNS, sizes)), **dict.fromkeys(TEST_COLUMNS, math.nan),
                   "units": len(change.seeds), "mark": "", "note": ""}
            if change.interval is None:
                rows.append({**row, "note": TOO_FEW_UNITS})
                continue
            seeds = set(change.seeds)
            for name, records in (("gain_there", theirs), ("gain_here", ours)):
                gain = contrast([(1.0, _chosen(records, key, method, seeds)), (-1.0, _chosen(records, key, baseline, seeds))], protocol)
                row |= _interval_columns(name, gain.interval)
            result = change.interval
            rows.append({**row, "diff": 100 * float(result.estimate), "diff_ci_low": 100 * float(result.low),
                         "diff_ci_high": 100 * float(result.high), "se": 100 * float(result.se), "df": float(result.df),
                         "p_value": float(result.p_value)})
    if not rows:
        return pd.DataFrame()
    return holm(pd.DataFrame(rows), ["profile", "protocol", "policy", *SIZE_COLUMNS])


def _gain_text(row: pd.Series, name: str) -> str:
    return f"{signed(row[name])} {interval(row[f'{name}_low'], row[f'{name}_high'], sign=True)}"


def resolution_table(tests: pd.DataFrame, runs: pd.DataFrame, profile: str, protocol: str) -> Table | None:
    """(dataset, ratio, method, policy): the gain over the baseline at the other image size and at this profile's, and
    the change with its interval and Holm mark; None without runs of the same units at another size."""
    if tests.empty:
        return None
    data = tests[tests["protocol"] == protocol]
    rows = []
    for dataset, ratio in ordered_cells(data):
        cell = data[(data["dataset"] == dataset) & (data["ratio"] == ratio)]
        for method in ordered_methods(cell["method"]):
            chosen = cell[cell["method"] == method].sort_values(
                [*SIZE_COLUMNS, "policy"], key=lambda column: column.map(POLICIES.index) if column.name == "policy" else column)
            for _, row in chosen.iterrows():
                sizes = f"{row['there_size']} → {row['here_size']} px"
                if row["note"] == TOO_FEW_UNITS:
                    texts = [MISSING, MISSING, f"{TOO_FEW_UNITS} (n={int(row['units'])})"]
                else:
                    texts = [_gain_text(row, "gain_there"), _gain_text(row, "gain_here"),
                             f"{difference_text(row)} (n={int(row['units'])})"]
                rows.append([dataset_label(dataset), ratio_label(ratio), method, POLICY_LABELS[row["policy"]], sizes, *texts])
    baseline = data["baseline"].iloc[0]
    _, description = PROTOCOLS[protocol]
    caption = (
        f"Does the ordering hold at another image size? {description}: each method's gain over {baseline} (points) at the "
        f"other image size and at this profile's, on the units trained at both (same labelled subset, seed and test "
        f"images), both sides' checkpoints chosen by the policy; and the change (gain here - gain there) with its "
        f"{INTERVALS}: {BETTER} / {WORSE} where the gain is significantly larger / smaller at this size (two-sided t-test, "
        f"Holm over the methods of one policy), {NO_EVIDENCE} no evidence of a change; {DETECTABLE}. Gains with their unadjusted "
        f"95 % intervals; their marks against {baseline} are in the selection table. Profile {profile} ({profile_setup(runs)})."
    )
    header = ["Dataset", "Labels", "Method", "Policy", "Sizes", "gain, other size", "gain, this size", "change"]
    return Table(f"resolution_{protocol}", caption, header, rows, data.drop(columns="protocol"), label_columns=5)
