"""The report's rerun commands: every committed run's overrides resolve to its own config hash."""
from __future__ import annotations

from pathlib import Path

import yaml

from defectseg.benchmarks.engine.config import config_hash, load_profile, resolve_run
from defectseg.benchmarks.reporting.regenerate import run_overrides


def _config_file(tmp_path: Path, run: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**run, "config_hash": config_hash(run)}))
    return path


def test_a_unit_of_a_per_seed_profile_needs_no_split_seed_override(tmp_path):
    run = resolve_run(load_profile("label_scarcity_units"), "neu", 0.01, "supervised", 3)
    assert run["split_seed"] == 3
    assert run_overrides(_config_file(tmp_path, run)) == []


def test_a_split_seed_other_than_the_profiles_is_an_override(tmp_path):
    run = resolve_run(load_profile("label_scarcity_units", ["split_seed=5"]), "neu", 0.01, "supervised", 3)
    assert run_overrides(_config_file(tmp_path, run)) == ["split_seed=5"]
