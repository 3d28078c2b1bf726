"""``run_all.py status``: every run of a grid classified from its folder, without writing anything."""
from __future__ import annotations

import json
import os
import socket
import time

import pytest

from grid_helpers import TINY, keep_torch_threads  # noqa: F401 (autouse fixture)

import run_all
from defectseg.benchmarks.engine.run import RunConfig, Workspace
from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.config import load_profile
from defectseg.benchmarks.engine.runner import train_run
from defectseg.benchmarks.grid.execute import expand_grid
from defectseg.benchmarks.grid.status import RunStatus, grid_status, other_profiles_paces, remaining_work

OVERRIDES = [*TINY, "seeds=[0, 1, 2, 3, 4]", "ratios=[0.2, 0.4]"]


def _snapshot(root):
    return {path: (path.stat().st_size, path.stat().st_mtime_ns) for path in root.rglob("*")}


def test_status_counts_each_state_and_writes_nothing(tmp_path, capsys):
    runs = expand_grid(load_profile("smoke", OVERRIDES))
    by_key = {(r["ratio"], r["seed"]): r for r in runs}
    train_run(RunConfig(by_key[0.2, 0]), Workspace(tmp_path, cache_dir=tmp_path / "cache", device="cpu"), progress=False)
    folders = {seed: layout.run_dir(tmp_path, by_key[0.2, seed]) for seed in range(5)}
    for seed in (1, 2, 3, 4):
        folders[seed].mkdir(parents=True)
    (folders[1] / layout.FAILURE).write_text(json.dumps({"error": "NonFiniteLossError", "reason": "loss is nan at step 4"}))
    (folders[2] / layout.LAST).write_bytes(b"checkpoint")
    (folders[2] / layout.TRAIN_LOG).write_text("step,loss\n2,0.9\n4,0.7\n")
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "token": "t"}
    (folders[3] / layout.LOCK).write_text(json.dumps(owner))  # held by this live process
    stale = layout.run_dir(tmp_path, by_key[0.4, 0]) / layout.LOCK
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps(owner))
    os.utime(stale, (time.time() - 3600,) * 2)  # not refreshed for an hour: stale, the run is pending
    metrics = json.loads((folders[0] / layout.METRICS).read_text())
    (folders[4] / layout.METRICS).write_text(json.dumps({**metrics, "config_hash": "another"}))  # another config: pending
    before = _snapshot(tmp_path)

    states = [s.state for s in grid_status(runs, tmp_path)]
    assert states == ["completed", "failed", "interrupted", "running", "pending"] + ["pending"] * 5
    args = ["status", "--profile", "smoke", "--results-dir", str(tmp_path), "--data-root", str(tmp_path / "data")]
    assert run_all.main(args + [arg for item in OVERRIDES for arg in ("--set", item)]) == 0
    out = capsys.readouterr().out.splitlines()

    assert _snapshot(tmp_path) == before
    assert "synthetic 0.2: 1 completed, 1 running, 1 interrupted, 1 failed, 1 pending" in out
    assert "    supervised 1/5" in out
    assert "synthetic 0.4: 5 pending" in out
    assert "  interrupted: synthetic/0.2/supervised/seed2 (logged up to step 4 of 6)" in out
    assert "  failed: synthetic/0.2/supervised/seed1 (NonFiniteLossError: loss is nan at step 4)" in out
    assert any(line.startswith(f"  running: synthetic/0.2/supervised/seed3 (pid {os.getpid()} on ") for line in out)
    assert out[-2] == "smoke: 1 of 10 runs completed, 1 running, 1 interrupted, 1 failed, 6 pending"
    # the work left: 9 unfinished runs of 6 iterations, 4 of them done by the interrupted run, at the completed run's pace
    pace = metrics["train_seconds"] / 6
    hours = (9 * 6 - 4) * pace / 3600
    assert out[-1] == f"left: ~{hours:.1f} core-hours of training for 9 run(s) at the pace of this grid's completed runs " \
                      "(wall time: divide by the grid's --jobs)"


def test_remaining_work_names_methods_without_a_pace():
    def config(method, iterations=100):
        return {"method": method, "base_method": method, "train": {"iterations": iterations, "image_size": 64}}

    statuses = [RunStatus(config("supervised"), "completed", seconds_per_step=0.1),
                RunStatus(config("supervised"), "completed", seconds_per_step=0.3),
                RunStatus(config("supervised"), "interrupted", steps_done=40),
                RunStatus(config("supervised"), "pending"),
                RunStatus(config("uaps"), "pending")]
    work = remaining_work(statuses)
    assert work.seconds == pytest.approx((60 + 100) * 0.2) and work.runs == 2  # median pace 0.2 s
    assert work.unknown == ["uaps @ 64 px"]
    work = remaining_work(statuses, {("uaps", 64): [0.4, 0.6], ("supervised", 64): [9.0]})  # the grid's own pace first
    assert work.seconds == pytest.approx((60 + 100) * 0.2 + 100 * 0.5) and work.runs == 3
    assert work.unknown == [] and work.borrowed == ["uaps @ 64 px"]


def test_a_new_grid_takes_its_pace_from_other_profiles_runs(tmp_path, capsys):
    """A grid with no completed run of a method (a study's ablations beside its main grid) is estimated from the
    completed runs of that method at that size in other profiles of the same results folder, and says so."""
    done = expand_grid(load_profile("smoke", [*TINY, "seeds=[0]"]))[0]
    train_run(RunConfig(done), Workspace(tmp_path, cache_dir=tmp_path / "cache", device="cpu"), progress=False)
    metrics = json.loads((layout.run_dir(tmp_path, done) / layout.METRICS).read_text())
    renamed = layout.profile_dir(tmp_path, "main_grid")  # the same run, as another profile's
    layout.profile_dir(tmp_path, "smoke").rename(renamed)
    (renamed / layout.run_dir(tmp_path, done).relative_to(layout.profile_dir(tmp_path, "smoke")).parent / "seed9").mkdir()
    # (a run folder of another profile still training gives no pace)
    assert other_profiles_paces(tmp_path, "smoke") == {("supervised", 32): [metrics["train_seconds"] / 6]}

    args = ["status", "--profile", "smoke", "--results-dir", str(tmp_path), "--data-root", str(tmp_path / "data")]
    assert run_all.main(args + [arg for item in OVERRIDES for arg in ("--set", item)]) == 0
    hours = 10 * 6 * metrics["train_seconds"] / 6 / 3600
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"left: ~{hours:.1f} core-hours of training for 10 run(s) at the pace of completed runs (this grid's; for supervised "
        "@ 32 px: other profiles' in this results folder) (wall time: divide by the grid's --jobs)")
