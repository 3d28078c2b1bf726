"""The checkpoint-selection tables, on a real grid of smoke runs that recorded their test scores along training,
each seed its own labelled subset."""
import pandas as pd
import pytest

import run_all
from defectseg.benchmarks.reporting.aggregate import collect_runs
from defectseg.benchmarks.reporting.selection import POLICIES, leader_ranking, leaders, policy_records

pytestmark = pytest.mark.slow  # trains models or simulates: run by make test, not make test-fast

ITERATIONS = 120  # the smoke profile's


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    results = tmp_path_factory.mktemp("selection")
    assert run_all.main(["benchmark", "--profile", "smoke", "--results-dir", str(results), "--methods", "supervised", "mean_teacher",
                         "--seeds", "0", "1", "2", "--set", "split_seed=per_seed", "--set", "train.record_every=40",
                         "--jobs", "2"]) == 0
    assert run_all.main(["report", "--results-dir", str(results)]) == 0
    return results


def test_per_unit_splits_make_one_cell(grid):
    runs = collect_runs(grid, "smoke")  # seeds with their own split seeds are one cell, not a mixed one
    assert sorted(runs["seed"]) == [0, 0, 1, 1, 2, 2]


def test_full_validation_reproduces_the_main_table_and_test_selection_bounds_every_policy(grid):
    runs = collect_runs(grid, "smoke")
    records = policy_records(runs)
    assert set(records["policy"]) == set(POLICIES)
    full = records[(records["policy"] == "full_val") & (records["protocol"] == "paper")].set_index(["method", "seed"])["miou"]
    assert full.to_dict() == pytest.approx(runs.set_index(["method", "seed"])["paper_miou"].to_dict())
    assert (records.loc[records["policy"] == "final", "step"] == ITERATIONS).all()
    by_run = records.pivot_table(index=["method", "seed", "protocol"], columns="policy", values="miou")
    for policy in POLICIES:
        assert (by_run["test_best"] >= by_run[policy] - 1e-9).all(), policy  # best on test: an upper bound


def test_selection_table_pairs_both_sides_under_one_policy(grid):
    table = pd.read_csv(grid / "tables" / "smoke" / "selection_standard.csv")
    mean_teacher = table[table["method"] == "mean_teacher"].set_index("policy")
    assert sorted(mean_teacher.index) == sorted(POLICIES) and (mean_teacher["units"] == 3).all()
    for policy in POLICIES:
        own = table[(table["method"] == "supervised") & (table["policy"] == policy)]["miou_mean"].iloc[0]
        assert mean_teacher.loc[policy, "diff"] == pytest.approx(mean_teacher.loc[policy, "miou_mean"] - own)
    report = (grid / "report" / "index.md").read_text()
    assert "How was the checkpoint chosen?" in report and "Checkpoint selection, paper protocol" in report
    assert "figures/smoke/selection_paper.png" in report and (grid / "figures" / "smoke" / "selection_paper.png").stat().st_size > 1000


def test_leaders_table_ranks_by_the_final_checkpoint_difference_averaged_over_protocols(grid):
    ranking = pd.read_csv(grid / "tables" / "smoke" / "selection_leaders.csv")
    selection = pd.concat([pd.read_csv(grid / "tables" / "smoke" / f"selection_{p}.csv") for p in ("standard", "paper")])
    final = selection[(selection["method"] == "mean_teacher") & (selection["policy"] == "final")].set_index("protocol")["diff"]
    row = ranking.set_index("method").loc["mean_teacher"]
    assert row["diff_standard"] == pytest.approx(final["standard"]) and row["diff_paper"] == pytest.approx(final["paper"])  # CSVs: 3 decimals
    assert row["mean_diff"] == pytest.approx((final["standard"] + final["paper"]) / 2, abs=1e-3) and row["rank"] == 1
    assert "supervised" not in set(ranking["method"])  # the baseline is not ranked against itself


def test_leader_ranking_orders_by_the_mean_and_leaves_out_a_method_missing_a_protocol():
    def test(method, protocol, diff, units=8):
        return {"dataset": "neu", "ratio": 0.01, "method": method, "protocol": protocol, "policy": "final", "baseline": "supervised",
                "diff": diff, "units": units, "note": ""}
    tests = pd.DataFrame([
        test("supervised", "standard", float("nan")) | {"note": "(baseline)"}, test("supervised", "paper", float("nan")) | {"note": "(baseline)"},
        test("a", "standard", 1.0), test("a", "paper", 3.0),        # mean 2.0
        test("b", "standard", 4.0), test("b", "paper", 2.0, 7),     # mean 3.0, fewest units 7
        test("c", "standard", 9.0),                                  # no paper difference: not ranked
        test("d", "standard", -1.0), test("d", "paper", 0.0),
        test("a", "standard", 99.0) | {"policy": "full_val"}, test("a", "paper", 99.0) | {"policy": "full_val"},
    ])
    ranking = leader_ranking(tests)
    assert list(ranking["method"]) == ["b", "a", "d"] and list(ranking["rank"]) == [1, 2, 3]
    assert ranking.set_index("method").loc["b", "units"] == 7 and ranking.set_index("method").loc["a", "mean_diff"] == 2.0
    assert leaders(ranking, "neu", 0.01, count=2) == ["b", "a"]
