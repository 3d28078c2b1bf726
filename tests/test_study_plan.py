"""The second edition's follow-up profiles run supervised and the leaders of the committed primary cell, by the
rule docs/study.md fixes (``selection.leader_ranking``: final checkpoint, averaged over the two protocols)."""
from pathlib import Path

import pandas as pd
import pytest

from defectseg.benchmarks.engine.config import load_profile
from defectseg.benchmarks.reporting.selection import leaders

ROOT = Path(__file__).resolve().parents[1]
LEADERS = ROOT / "results/reference/label_scarcity_units/tables/label_scarcity_units/selection_leaders.csv"
FOLLOW_UPS = ("label_scarcity_units_seeds", "label_scarcity_units_mtiles", "label_scarcity_units_128")


@pytest.mark.parametrize("profile", FOLLOW_UPS)
def test_follow_up_profile_runs_supervised_and_the_primary_cells_leaders(profile):
    top = leaders(pd.read_csv(LEADERS), "neu", 0.01)
    assert len(top) == 3
    assert sorted(load_profile(profile)["methods"]) == sorted(["supervised", *top]), (
        f"{profile} no longer runs the leaders of the committed label_scarcity_units ({', '.join(top)}): re-pick its methods "
        "before its runs start (docs/study.md)")
