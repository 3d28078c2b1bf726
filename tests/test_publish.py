"""``run_all.py publish``: completed runs copied without checkpoints, never over another config."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import run_all
from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.io import ResultsError, read_json, write_json
from defectseg.benchmarks.engine.split_store import recorded_split
from defectseg.benchmarks.grid.publish import publish
from defectseg.benchmarks.reporting.aggregate import collect_runs
from defectseg.benchmarks.engine.run_state import completed_run_metrics
from tests.helpers import train_smoke

LABEL = "smoke/synthetic/0.2/supervised/seed0"
UNFINISHED = "smoke/synthetic/0.2/supervised/seed1"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A results folder with one completed smoke run and one unfinished run (a checkpoint, no metrics)."""
    results = tmp_path_factory.mktemp("scratch")
    train_smoke("supervised", results)
    unfinished = layout.runs_root(results) / UNFINISHED
    unfinished.mkdir(parents=True)
    shutil.copy(layout.runs_root(results) / LABEL / layout.CONFIG, unfinished / layout.CONFIG)
    (unfinished / layout.LAST).write_bytes(b"a checkpoint")
    return results


def test_completed_runs_are_copied_without_checkpoints(scratch, tmp_path):
    outcome = publish(scratch, tmp_path)
    assert outcome.copied == [LABEL] and outcome.already_there == []
    source, copy = layout.runs_root(scratch) / LABEL, layout.runs_root(tmp_path) / LABEL
    assert (source / layout.BEST).exists()  # a checkpoint, not copied
    assert sorted(p.name for p in copy.iterdir()) == sorted(
        [layout.CONFIG, layout.METRICS, layout.PER_IMAGE, layout.SPLIT_REF, layout.TRAIN_LOG]
    )
    for name in (layout.CONFIG, layout.METRICS, layout.PER_IMAGE, layout.TRAIN_LOG):
        assert (copy / name).read_bytes() == (source / name).read_bytes()
    assert recorded_split(copy, tmp_path) == recorded_split(source, scratch)
    assert not (layout.runs_root(tmp_path) / UNFINISHED).exists()
    published, original = collect_runs(tmp_path), collect_runs(scratch)
    assert len(published) == 1 and published["miou"].tolist() == original["miou"].tolist()


def test_a_metrics_file_of_another_config_is_not_a_completed_run(scratch, tmp_path):
    stale = tmp_path / "stale"
    shutil.copytree(scratch / "runs", stale / "runs")
    shutil.copytree(scratch / "splits", stale / "splits")
    metrics_path = layout.runs_root(stale) / LABEL / layout.METRICS
    write_json(metrics_path, {**read_json(metrics_path), "config_hash": "f" * 64})
    assert publish(stale, tmp_path / "to").copied == []


def test_publishing_again_changes_nothing_and_completes_an_interrupted_copy(scratch, tmp_path):
    publish(scratch, tmp_path)
    metrics = layout.runs_root(tmp_path) / LABEL / layout.METRICS
    written = metrics.stat().st_mtime_ns
    outcome = publish(scratch, tmp_path)
    assert outcome.copied == [] and outcome.already_there == [LABEL]
    assert metrics.stat().st_mtime_ns == written
    metrics.unlink()  # a publish stopped before its last file: the run does not look completed
    assert completed_run_metrics(metrics.parent) is None
    assert publish(scratch, tmp_path).copied == [LABEL] and metrics.exists()


def test_a_completed_run_of_another_configuration_is_never_overwritten(scratch, tmp_path):
    publish(scratch, tmp_path)
    metrics_path = layout.runs_root(tmp_path) / LABEL / layout.METRICS
    metrics = read_json(metrics_path)
    write_json(metrics_path, {**metrics, "config_hash": "f" * 64})
    with pytest.raises(ResultsError, match=r"holds a completed run of another configuration.*not overwriting"):
        publish(scratch, tmp_path)
    assert read_json(metrics_path)["config_hash"] == "f" * 64


def test_a_run_in_progress_in_the_target_is_refused(scratch, tmp_path):
    in_progress = layout.runs_root(tmp_path) / LABEL
    in_progress.mkdir(parents=True)
    (in_progress / layout.LAST).write_bytes(b"a checkpoint")
    with pytest.raises(ResultsError, match="run in progress"):
        publish(scratch, tmp_path)


def test_bad_folders_are_named(scratch, tmp_path):
    with pytest.raises(ResultsError, match="expected a results directory"):
        publish(tmp_path / "nothing", tmp_path / "to")
    with pytest.raises(ResultsError, match="the results directory itself"):
        publish(scratch, scratch)
    with pytest.raises(ResultsError, match="no runs of profile 'cpu'"):
        publish(scratch, tmp_path, ["cpu"])


def test_command_line(scratch, tmp_path, capsys):
    assert run_all.main(["publish", "--results-dir", str(scratch), "--to", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"published {LABEL}" in out and "1 run(s) copied" in out and "0 already there" in out
    assert run_all.main(["publish", "--results-dir", str(scratch), "--to", str(tmp_path), "--profile", "quick"]) == 2
    assert "no runs of profile 'quick'" in capsys.readouterr().err
