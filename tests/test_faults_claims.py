"""Faults around the run lock: a lone ``train`` and ``eval`` beside a grid, locks of hosts that cannot be
checked, and Ctrl-C. The tiny grid and its uninterrupted reference: ``fault_helpers``."""
from __future__ import annotations

import json
import sys
import time

import fault_helpers
import pytest
from fault_helpers import PACE, assert_like_reference, lock_owners, start, train_arguments, wait_for
from grid_helpers import keep_torch_threads  # noqa: F401 (autouse fixture)

import run_all
from defectseg.benchmarks.engine.run import Workspace
from defectseg.benchmarks.engine.layout import run_dir
from defectseg.benchmarks.grid.execute import run_grid
from defectseg.benchmarks.engine.locks import FileLock
from defectseg.methods import get_method_class
from tests.helpers import interrupt_at

plugin, runs, reference, copy_of_reference = fault_helpers.plugin, fault_helpers.runs, fault_helpers.reference, fault_helpers.copy_of_reference


def _one_error_line(err: str) -> str:
    """The last line of stderr, checked to be the only error and no traceback."""
    assert "Traceback" not in err and err.count("error: ") + err.count("interrupted: ") == 1, err
    return err.rstrip("\n").rsplit("\n", 1)[-1].rsplit("\r", 1)[-1]


def test_train_and_eval_refuse_a_run_another_process_trains(runs, copy_of_reference, tmp_path, capsys):
    directory = run_dir(tmp_path, runs[0])
    directory.mkdir(parents=True)
    with FileLock(directory / ".lock") as grid_worker:  # what a grid's worker holds while it trains the run
        assert grid_worker.acquire()
        assert run_all.main(train_arguments(tmp_path, runs[0])) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert line.startswith(f"error: {directory} is being trained by pid {grid_worker.owner()['pid']} on ")
        assert "not training it twice" in line and sorted(p.name for p in directory.iterdir()) == [".lock"]

        trained = run_dir(copy_of_reference, runs[0])
        with FileLock(trained / ".lock") as other:
            assert other.acquire()
            assert run_all.main(["eval", "--run-dir", str(trained), "--device", "cpu"]) == 2
            assert _one_error_line(capsys.readouterr().err).startswith(f"error: {trained} is being trained by pid ")
    assert run_all.main(train_arguments(tmp_path, runs[0])) == 0  # released: trained now


@pytest.mark.process
def test_a_lone_train_and_a_grid_on_one_folder_train_each_run_once(runs, reference, tmp_path):
    train = start([sys.executable, "run_all.py", *train_arguments(tmp_path, runs[0])], GRID_TEST_STEP_SECONDS=PACE)
    wait_for(lambda: lock_owners(tmp_path))  # the lone train holds its run
    result = run_grid(runs, Workspace(tmp_path, device="cpu"), progress=False)
    output = train.communicate(timeout=120)[0]
    assert train.returncode == 0, output
    (skipped, holder), = result.skipped_running
    assert skipped == runs[0] and f"pid {train.pid} on " in holder
    assert len(result.completed) == len(runs) - 1
    assert_like_reference(tmp_path, reference, runs)


def test_a_lock_of_a_host_that_cannot_be_checked_is_named_and_the_grid_exits_3(runs, copy_of_reference, capsys):
    results = copy_of_reference
    directory = run_dir(results, runs[1])
    (directory / "metrics.json").unlink()
    (directory / ".lock").write_text(json.dumps({"pid": 4321, "host": "gone-host", "started": time.time(), "token": "t"}))
    argv = ["benchmark", "--profile", "smoke", "--results-dir", str(results), "--device", "cpu", "--plugin", str(fault_helpers.PLUGIN)]
    argv += ["--methods", runs[1]["method"], "--seeds", "0", "1", "2", *(f"--set={o}" for o in fault_helpers.TINY)]
    capsys.readouterr()
    assert run_all.main(argv) == 3
    captured = capsys.readouterr()
    assert "1 run(s) held by locks of hosts that cannot be checked from here" in captured.err
    assert f"{directory}: pid 4321 on gone-host since" in captured.err and "broken 10 min after its last refresh" in captured.err
    assert "2 skipped (done), 0 skipped (running elsewhere), 1 skipped (locked by an unreachable host)" in captured.out
    summary = json.loads((results / "runs" / "smoke" / "summary.json").read_text())
    assert summary["counts"]["skipped_unreachable"] == 1 and summary["skipped_unreachable"][0]["seed"] == 1

    assert run_all.main(train_arguments(results, runs[1])) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "a host that cannot be checked from here" in line and f"delete {directory / '.lock'}" in line


def test_ctrl_c_is_one_line_and_the_rerun_resumes(runs, reference, tmp_path, monkeypatch, capsys):
    cls = get_method_class(runs[0]["method"])
    monkeypatch.setattr(cls, "on_step_end", interrupt_at(cls.on_step_end, 3))
    assert run_all.main(train_arguments(tmp_path, runs[0])) == 130
    line = _one_error_line(capsys.readouterr().err)
    assert line == "interrupted: runs keep their last checkpoint; run the same command again to resume"
    directory = run_dir(tmp_path, runs[0])
    assert (directory / "last.pt").exists() and not (directory / ".lock").exists()
    monkeypatch.undo()
    assert run_all.main(train_arguments(tmp_path, runs[0])) == 0
    assert "restarts from step 0" not in capsys.readouterr().err  # resumed from the checkpoint
    assert_like_reference(tmp_path, reference, runs[:1])


def test_ctrl_c_with_debug_shows_the_traceback(runs, tmp_path, monkeypatch):
    cls = get_method_class(runs[0]["method"])
    monkeypatch.setattr(cls, "on_step_end", interrupt_at(cls.on_step_end, 1))
    with pytest.raises(KeyboardInterrupt):
        run_all.main([*train_arguments(tmp_path, runs[0]), "--debug"])
