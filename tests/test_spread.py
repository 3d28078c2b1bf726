"""The labelled-subset spread apart from the seed spread: hand-checked statistics, and a real grid of smoke runs
where three units (each its own subset) are joined by two more seeds on unit 0's subset from another profile."""
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import scipy.stats

import run_all
from defectseg.benchmarks.engine.config import CONFIG_DIR
from defectseg.benchmarks.reporting.aggregate import collect_runs
from defectseg.benchmarks.reporting.spread import spread_points, spread_statistics

pytestmark = pytest.mark.slow  # trains models or simulates: run by make test, not make test-fast


def test_spread_statistics_by_hand():
    # subsets 0..3 with one unit run each (60, 62, 64, 66); subset 0 also trained with seeds 1 and 2 (61, 59)
    values = pd.DataFrame({"split_seed": [0, 1, 2, 3, 0, 0], "seed": [0, 1, 2, 3, 1, 2], "value": [60, 62, 64, 66, 61, 59.0]})
    result = spread_statistics(values)
    between = pd.Series([60, 62, 64, 66.0]).var()
    assert result["units"] == 4 and result["seed_df"] == 2 and result["shared_subsets"] == 1
    assert result["sd_units"] == pytest.approx(math.sqrt(between)) and result["sd_seeds"] == pytest.approx(1.0)
    assert result["sd_subset"] == pytest.approx(math.sqrt(between - 1.0))
    assert result["variance_ratio"] == pytest.approx(between)
    assert result["ratio_low"] < between < result["ratio_high"]
    assert result["p_value"] == pytest.approx(scipy.stats.f.sf(between, 3, 2))


def test_no_shared_subset_means_no_seed_spread():
    values = pd.DataFrame({"split_seed": [0, 1, 2], "seed": [0, 1, 2], "value": [60, 62, 64.0]})
    result = spread_statistics(values)
    assert result["seed_df"] == 0 and math.isnan(result["sd_seeds"]) and math.isnan(result["variance_ratio"])


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    results = tmp_path_factory.mktemp("spread")
    companion = results / "smoke_seeds.yaml"  # the same training on unit 0's subset, other seeds
    shutil.copy(CONFIG_DIR / "smoke.yaml", companion)
    common = ["--results-dir", str(results), "--methods", "supervised", "--jobs", "2"]
    assert run_all.main(["benchmark", "--profile", "smoke", "--seeds", "0", "1", "2", "--set", "split_seed=per_seed", *common]) == 0
    assert run_all.main(["benchmark", "--profile", str(companion), "--seeds", "1", "2", "--set", "split_seed=0", *common]) == 0
    assert run_all.main(["report", "--results-dir", str(results)]) == 0
    return results


def test_replicates_from_another_profile_join_the_units(grid: Path):
    points = spread_points(collect_runs(grid), "smoke")
    assert sorted(zip(points["split_seed"], points["seed"])) == [(0, 0), (0, 1), (0, 2), (1, 1), (2, 2)]
    table = pd.read_csv(grid / "tables" / "smoke" / "spread_paper.csv")
    (row,) = table.itertuples()
    units = points[points["seed"] == points["split_seed"]]["paper_miou"]
    seeds = points[points["split_seed"] == 0]["paper_miou"]
    assert row.units == 3 and row.seed_df == 2 and row.profiles == "smoke smoke_seeds"
    assert row.sd_units == pytest.approx(units.std(), abs=1e-4) and row.sd_seeds == pytest.approx(seeds.std(), abs=1e-4)  # CSV: 4 decimals
    report = (grid / "report" / "index.md").read_text()
    assert "Does it matter which images are labelled?" in report
    assert (grid / "figures" / "smoke" / "spread_paper.png").stat().st_size > 1000


def test_a_profile_without_replicates_has_no_spread_table(grid: Path):
    assert not (grid / "tables" / "smoke_seeds" / "spread_paper.csv").exists()
