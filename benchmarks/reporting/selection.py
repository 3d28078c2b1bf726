"""How much a method's result depends on how its checkpoint was chosen: the four selection policies.

For runs trained with ``train.record_every`` (``trajectory.npz``), each policy of
``benchmarks.engine.trajectory`` picks a checkpoint per run, and its test counts give that run's
metric under the policy. Per cell, protocol and policy this module compares each method with the
baseline exactly as the main tables do (``statistics.compare``: paired over units, Holm over the
comparisons of one policy in one table), with both sides chosen by the same policy:

* ``full_val``: best on the whole validation split (the runs' own rule; equals the main tables
  when every validation step was recorded);
* ``val_budget``: best on as many validation images as labelled training images, one subset per
  unit: what a practitioner with that few labels could afford;
* ``final``: the last checkpoint;
* ``test_best``: best on the test set itself (per protocol): an upper bound, the inflation that
  selecting on the test set gives, not a policy anyone should report.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.trajectory import run_policies
from defectseg.benchmarks.reporting.aggregate import CELL_KEYS
from defectseg.benchmarks.reporting.statistics import (
    COMPARISON_COLUMNS, DETECTABLE, INTERVALS, PROTOCOLS as STATISTICS_PROTOCOLS, RULE, TOO_FEW_UNITS, RunRecords, compare, holm, run_metric,
)
from defectseg.benchmarks.reporting.table_format import (
    MISSING, PROTOCOLS, Table, dataset_label, difference_text, mean_std, ordered_cells, ordered_methods, profile_setup,
    ratio_label,
)

POLICIES = ("full_val", "val_budget", "final", "test_best")
POLICY_LABELS = {
    "full_val": "full validation split",
    "val_budget": "validation budget",
    "final": "final checkpoint",
    "test_best": "best on test (bound)",
}


def policy_records(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, protocol, policy) of the runs that recorded a trajectory: the cell keys, seed, the
    ``step`` chosen, the run's metric (%) at that step and its ``records`` (``RunRecords``) for the tests."""
    rows = []
    for run in runs.itertuples():
        directory = Path(run.path)
        if not (directory / layout.TRAJECTORY).is_file():
            continue
        choices = run_policies(directory)
        for protocol, spec in STATISTICS_PROTOCOLS.items():
            for policy in POLICIES:
                choice = choices[f"test_best_{protocol}" if policy == "test_best" else policy]
                records = RunRecords.from_counts(int(run.seed), directory / layout.TRAJECTORY, choice.test_ids, choice.test)
                rows.append({**{key: getattr(run, key) for key in CELL_KEYS}, "seed": int(run.seed), "protocol": protocol,
                             "policy": policy, "step": choice.step, "miou": 100 * run_metric(records.features[protocol], spec),
                             "records": records})
    return pd.DataFrame(rows)


def selection_tests(records: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per (cell, protocol, policy): the method's mean metric (%) and units under that policy, and its paired
    comparison with ``baseline`` under the same policy; marks after Holm over each profile, protocol and policy."""
    rows = []
    for (profile, dataset, ratio, method, protocol, policy), group in records.groupby([*CELL_KEYS, "protocol", "policy"], sort=False):
        ours = sorted(group["records"], key=lambda r: r.seed)
        theirs = records[(records["profile"] == profile) & (records["dataset"] == dataset) & (records["ratio"] == ratio)
                         & (records["method"] == baseline) & (records["protocol"] == protocol) & (records["policy"] == policy)]
        test = {column: math.nan for column in COMPARISON_COLUMNS} | {"units": 0, "mark": "", "note": "(baseline)"}
        if method != baseline:
            test = compare(ours, sorted(theirs["records"], key=lambda r: r.seed), protocol) if len(theirs) else {**test, "note": "no run"}
        rows.append({"profile": profile, "dataset": dataset, "ratio": ratio, "method": method, "protocol": protocol, "policy": policy,
                     "baseline": baseline, "miou_mean": group["miou"].mean(), "miou_std": group["miou"].std(), "seeds": len(group),
                     "step_mean": group["step"].mean(), **test})
    return holm(pd.DataFrame(rows), ["profile", "protocol", "policy"])


def _cell_text(test: pd.Series) -> str:
    """``"67.10 ± 0.40 (n=8); +1.20 [+0.40, +2.00] ▲ (MDE 0.90)"``: the mean under the policy, then the test."""
    text = mean_std(test["miou_mean"], test["miou_std"], test["seeds"])
    if test["note"] == "(baseline)":
        return f"{text} (baseline)"
    if test["note"] == TOO_FEW_UNITS:
        return f"{text}; {TOO_FEW_UNITS}"
    return f"{text}; {test['note'] or difference_text(test)}"


def selection_table(records: pd.DataFrame, runs: pd.DataFrame, profile: str, protocol: str, baseline: str) -> Table | None:
    """(dataset, ratio, method) x policy: each method's mIoU and its difference from ``baseline`` when both
    choose their checkpoints by that policy, from ``policy_records`` of ``runs``; None when no run recorded a
    trajectory."""
    if records.empty:
        return None
    tests = selection_tests(records[records["protocol"] == protocol], baseline)
    indexed = tests.set_index(["dataset", "ratio", "method", "policy"])
    rows = []
    for dataset, ratio in ordered_cells(tests):
        for method in ordered_methods(tests.loc[(tests["dataset"] == dataset) & (tests["ratio"] == ratio), "method"]):
            rows.append([dataset_label(dataset), ratio_label(ratio), method, *(
                _cell_text(indexed.loc[(dataset, ratio, method, policy)]) if (dataset, ratio, method, policy) in indexed.index else MISSING
                for policy in POLICIES)])
    _, description = PROTOCOLS[protocol]
    caption = (
        f"Checkpoint selection, {description}: per policy, each method's test mIoU (%, mean ± std over n units) with the "
        f"checkpoint that policy picks, and its paired difference from {baseline} when {baseline} picks by the same policy "
        f"(points, {INTERVALS}; {RULE}, the Holm family being one policy's comparisons; {DETECTABLE}). Policies: full "
        f"validation split (the runs' own rule); validation budget (as many validation images as labelled training "
        f"images, one subset per unit: what a practitioner could afford); final checkpoint; best on test (selects on the "
        f"test set: an upper bound, not a result). Mean chosen steps in the CSV. Profile {profile} ({profile_setup(runs)})."
    )
    data = tests.assign(units=tests["units"].astype("Int64"))
    header = ["Dataset", "Labels", "Method", *(POLICY_LABELS[p] for p in POLICIES)]
    return Table(f"selection_{protocol}", caption, header, rows, data, label_columns=3)
