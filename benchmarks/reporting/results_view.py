"""One results folder as the reporting reads it, each part read or computed at most once per command.

``run_all.py tables``, ``plots`` and ``report`` build one ``ResultsView`` and hand it to the tables,
the figures and the report page, so a report collects the runs once, loads each run's per-image
records, trajectory and training log once (lazily, when a table or figure first needs them) and
computes each profile's statistics once: the intervals and paired tests (``statistics.cell_statistics``,
against every baseline), the ranks and the Friedman permutation test, the checkpoint-selection
records and tests (``selection.policy_records``, ``selection.selection_tests``), the runs pooled for the spread over labelled subsets
(``spread.spread_points``) and the gains at two image sizes (``resolution.resolution_tests``).
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.io import ResultsError
from defectseg.benchmarks.reporting.aggregate import collect_failures, collect_runs, main_runs
from defectseg.benchmarks.reporting.resolution import resolution_partners, resolution_tests
from defectseg.benchmarks.reporting.selection import policy_records, selection_tests
from defectseg.benchmarks.reporting.spread import spread_points
from defectseg.benchmarks.reporting.statistics import (
    CellStatistics, RankAnalysis, RunRecords, baselines_for, cell_scores, cell_statistics, load_run_records, primary_baseline, rank_analysis,
    run_set_records,
)
from defectseg.benchmarks.reporting.table_format import PROTOCOLS

T = TypeVar("T")


def read_train_log(directory: str | Path) -> pd.DataFrame:
    """``step`` and ``val_mdice`` (fraction) of the validation steps in one run's ``train_log.csv``."""
    path = Path(directory) / layout.TRAIN_LOG
    try:
        return pd.read_csv(path, usecols=["step", "val_mdice"]).dropna()
    except (OSError, ValueError) as error:
        raise ResultsError(f"{path}: cannot read the validation curve ({error})") from error


class ResultsView:
    """The completed and failed runs of some profiles of ``results_dir`` (default: every profile there) and what
    the reporting derives from them. ``named_baselines``: the methods named with ``--baseline``; ``baselines``:
    those and ``supervised``, every one tested against; ``baseline``: the one the main tables and figures mark
    against (the first named, else supervised)."""

    def __init__(self, results_dir: Path, profiles: Sequence[str] | None = None, baselines: Sequence[str] = ()) -> None:
        self.results_dir = Path(results_dir)
        self.profiles = list(profiles) if profiles else layout.find_profiles(self.results_dir)
        self.named_baselines = list(baselines)
        self.baselines = baselines_for(baselines)
        self.baseline = primary_baseline(baselines)
        self._cache: dict[Hashable, Any] = {}

    def _once(self, key: Hashable, compute: Callable[[], T]) -> T:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @cached_property
    def runs(self) -> pd.DataFrame:
        """One row per completed run of the profiles (``aggregate.collect_runs``)."""
        return collect_runs(self.results_dir, self.profiles)

    @cached_property
    def failures(self) -> pd.DataFrame:
        """One row per failed or incomplete run of the profiles (``aggregate.collect_failures``)."""
        return collect_failures(self.results_dir, self.profiles)

    def has_runs(self, profile: str) -> bool:
        return not self.runs.empty and bool((self.runs["profile"] == profile).any())

    def profile_runs(self, profile: str) -> pd.DataFrame:
        """The completed runs of one profile, ablation variants included."""
        return self.runs[self.runs["profile"] == profile]

    def records(self, directory: str | Path) -> RunRecords | None:
        """One run's per-image records (``statistics.load_run_records``), read once."""
        return self._once(("records", str(directory)), lambda: load_run_records(Path(directory)))

    def run_set_records(self, directories: Iterable[str | Path]) -> list[RunRecords] | None:
        """The records of some runs (one per seed) in seed order, each read once; None if any of them has none."""
        return run_set_records(directories, self.records)

    def train_log(self, directory: str | Path) -> pd.DataFrame:
        """One run's validation steps (``read_train_log``), read once."""
        return self._once(("train_log", str(directory)), lambda: read_train_log(directory))

    def statistics(self, profile: str) -> CellStatistics:
        """Intervals of every cell of the profile's main runs and their tests against every baseline."""
        return self._once(("statistics", profile),
                          lambda: cell_statistics(main_runs(self.profile_runs(profile)), self.baselines, self.run_set_records))

    def ranks(self, profile: str, protocol: str) -> tuple[pd.DataFrame, RankAnalysis]:
        """The cell means of the profile's main runs (``statistics.cell_scores``) and their rank analysis."""
        def compute() -> tuple[pd.DataFrame, RankAnalysis]:
            scores = cell_scores(main_runs(self.profile_runs(profile)), PROTOCOLS[protocol][0])
            return scores, rank_analysis(scores)
        return self._once(("ranks", profile, protocol), compute)

    def policy_records(self, profile: str) -> pd.DataFrame:
        """The checkpoint-selection records of the profile's main runs (``selection.policy_records``)."""
        return self._once(("policy_records", profile), lambda: policy_records(main_runs(self.profile_runs(profile))))

    def selection_tests(self, profile: str) -> pd.DataFrame:
        """Each method's paired difference from the baseline when both choose their checkpoints by each policy, in
        both protocols (``selection.selection_tests``); empty without trajectories."""
        def compute() -> pd.DataFrame:
            records = self.policy_records(profile)
            return pd.DataFrame() if records.empty else selection_tests(records, self.baseline)
        return self._once(("selection_tests", profile), compute)

    def spread_points(self, profile: str) -> pd.DataFrame:
        """The runs pooled for the profile's spread over labelled subsets; seed replicates may come from any
        profile of the view (``spread.spread_points``)."""
        return self._once(("spread_points", profile), lambda: spread_points(main_runs(self.runs), profile))

    def resolution_tests(self, profile: str) -> pd.DataFrame:
        """Each method's gain over the baseline on the profile's units against the same units' gain at another image
        size, trained by any profile of the view (``resolution.resolution_tests``); empty without such runs."""
        def compute() -> pd.DataFrame:
            partners = resolution_partners(main_runs(self.runs), profile)
            if partners.empty:
                return pd.DataFrame()
            there = pd.concat([self.policy_records(other) for other in partners["there_profile"].unique()], ignore_index=True)
            return resolution_tests(self.policy_records(profile), there, partners, self.baseline)
        return self._once(("resolution", profile), compute)
