"""The resolution check's table, on a real grid of smoke runs: four units at 32 px (each its own labelled subset)
and three of them trained again at 48 px by another profile."""
import shutil
from pathlib import Path

import pandas as pd
import pytest

import run_all
from defectseg.benchmarks.engine.config import CONFIG_DIR
from defectseg.benchmarks.reporting.aggregate import collect_runs, main_runs
from defectseg.benchmarks.reporting.resolution import POLICIES, resolution_partners

pytestmark = pytest.mark.slow  # trains models: run by make test, not make test-fast

COMMON = ["--methods", "supervised", "mean_teacher", "--set", "split_seed=per_seed", "--set", "train.record_every=40", "--jobs", "2"]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    results = tmp_path_factory.mktemp("resolution")
    check = results / "smoke_48.yaml"  # the same units at another size
    shutil.copy(CONFIG_DIR / "smoke.yaml", check)
    assert run_all.main(["benchmark", "--profile", "smoke", "--results-dir", str(results), "--seeds", "0", "1", "2", "3", *COMMON]) == 0
    assert run_all.main(["benchmark", "--profile", str(check), "--results-dir", str(results), "--seeds", "0", "1", "2",
                         "--set", "train.image_size=48", *COMMON]) == 0
    assert run_all.main(["report", "--results-dir", str(results)]) == 0
    return results


def test_the_same_units_at_another_size_are_matched_in_the_smaller_profile(grid: Path):
    runs = main_runs(collect_runs(grid))
    partners = resolution_partners(runs, "smoke_48")
    assert len(partners) == 6 and set(partners["there_profile"]) == {"smoke"}
    assert set(partners["here_size"]) == {48} and set(partners["there_size"]) == {32}
    assert resolution_partners(runs, "smoke").empty  # the larger profile is the study checked, not the check
    assert resolution_partners(runs, "no_main_runs").empty
    assert not (grid / "tables" / "smoke" / "resolution_paper.csv").exists()


def test_the_change_is_the_gain_here_minus_the_gain_there(grid: Path):
    table = pd.read_csv(grid / "tables" / "smoke_48" / "resolution_paper.csv")
    assert sorted(table["policy"]) == sorted(POLICIES) and set(table["method"]) == {"mean_teacher"} and (table["units"] == 3).all()
    selection = {profile: pd.read_csv(grid / "tables" / profile / "selection_paper.csv") for profile in ("smoke", "smoke_48")}
    for row in table.itertuples():
        assert row.diff == pytest.approx(row.gain_here - row.gain_there, abs=2e-4)  # CSV: 4 decimals
        assert row.diff_ci_low < row.diff < row.diff_ci_high and row.mark in {"▲", "▼", "·"}
        here = selection["smoke_48"].query("method == 'mean_teacher' and policy == @row.policy")
        assert row.gain_here == pytest.approx(here["diff"].iloc[0], abs=2e-4)  # the same three units
    report = (grid / "report" / "index.md").read_text()
    assert "Does the ordering hold at another image size?" in report and "32 → 48 px" in report
    assert (grid / "figures" / "smoke_48" / "resolution_paper.png").stat().st_size > 1000
