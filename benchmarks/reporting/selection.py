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

``selection_leaders`` ranks the methods of each cell by their final-checkpoint difference from the baseline,
averaged over the two protocols: the rule docs/study.md fixes for choosing the methods of the follow-up cells.
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
    ratio_label, signed,
)

POLICIES = ("full_val", "val_budget", "final", "test_best")
LEADER_POLICY = "final"
FOLLOW_UP = 3  # how many leaders go on to the follow-up cells
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


def selection_table(tests: pd.DataFrame, runs: pd.DataFrame, profile: str, protocol: str, baseline: str) -> Table | None:
    """(dataset, ratio, method) x policy: each method's mIoU and its difference from ``baseline`` when both
    choose their checkpoints by that policy, from ``selection_tests`` of the profile's runs; None when no run
    recorded a trajectory."""
    if tests.empty:
        return None
    tests = tests[tests["protocol"] == protocol]
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


def leader_ranking(tests: pd.DataFrame, policy: str = LEADER_POLICY) -> pd.DataFrame:
    """Per cell, each method but the baseline with its difference from the baseline under ``policy`` in each
    protocol (``diff_<protocol>``), their mean (``mean_diff``), the fewest units of the two and its ``rank``
    (1 = largest mean); methods without a difference in every protocol are left out; empty without tests."""
    if tests.empty:
        return pd.DataFrame()
    rows = []
    chosen = tests[(tests["policy"] == policy) & (tests["method"] != tests["baseline"])]
    for (dataset, ratio, method), group in chosen.groupby(["dataset", "ratio", "method"], sort=False):
        diffs = group.set_index("protocol")["diff"]
        if set(diffs.dropna().index) != set(STATISTICS_PROTOCOLS):
            continue
        rows.append({"dataset": dataset, "ratio": ratio, "method": method, "baseline": group["baseline"].iloc[0],
                     "policy": policy, **{f"diff_{p}": diffs[p] for p in STATISTICS_PROTOCOLS},
                     "mean_diff": diffs[list(STATISTICS_PROTOCOLS)].mean(), "units": int(group["units"].min())})
    if not rows:
        return pd.DataFrame()
    ranking = pd.DataFrame(rows).sort_values(["dataset", "ratio", "mean_diff"], ascending=[True, True, False], kind="stable")
    ranking.insert(3, "rank", ranking.groupby(["dataset", "ratio"]).cumcount() + 1)
    return ranking.reset_index(drop=True)


def leaders(ranking: pd.DataFrame, dataset: str, ratio: float, count: int = FOLLOW_UP) -> list[str]:
    """The ``count`` best-ranked methods of one cell of a ``leader_ranking``."""
    cell = ranking[(ranking["dataset"] == dataset) & (ranking["ratio"] == ratio)]
    return list(cell.sort_values("rank")["method"].head(count))


def leaders_table(tests: pd.DataFrame, runs: pd.DataFrame, profile: str, baseline: str) -> Table | None:
    """(dataset, ratio) x method: the methods ranked by their final-checkpoint difference from ``baseline``,
    averaged over the protocols, the first ``FOLLOW_UP`` marked; None without such differences."""
    ranking = leader_ranking(tests)
    if ranking.empty:
        return None
    rows = []
    for dataset, ratio in ordered_cells(ranking):
        cell = ranking[(ranking["dataset"] == dataset) & (ranking["ratio"] == ratio)]
        rows += [[dataset_label(dataset), ratio_label(ratio), str(r.rank), r.method, *(signed(getattr(r, f"diff_{p}")) for p in STATISTICS_PROTOCOLS),
                  signed(r.mean_diff), str(r.units), "yes" if r.rank <= FOLLOW_UP else ""] for r in cell.itertuples()]
    caption = (
        f"Leaders: the methods ranked by their paired difference from {baseline} (points) when both take the "
        f"{POLICY_LABELS[LEADER_POLICY]}, in each protocol and averaged over the two; the first {FOLLOW_UP} lead "
        f"(the rule that chooses the methods of the study's follow-up cells, docs/study.md). Estimates only: the "
        f"intervals are in the selection tables. Profile {profile} ({profile_setup(runs)})."
    )
    header = ["Dataset", "Labels", "Rank", "Method", *(f"{p} protocol" for p in STATISTICS_PROTOCOLS), "mean", "units",
              f"top {FOLLOW_UP}"]
    return Table("selection_leaders", caption, header, rows, ranking.assign(profile=profile), label_columns=4)
