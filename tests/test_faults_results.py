"""Damaged results and mixed cells: the grid, ``status``, the tables, ``compare`` and ``publish`` apply one
test of "is this run done" (``run_state.completed_run``) and one of "one configuration per cell". The tiny
grid and its uninterrupted reference: ``fault_helpers``."""
from __future__ import annotations

import json

import fault_helpers
import pytest
import yaml
from fault_helpers import assert_like_reference
from grid_helpers import keep_torch_threads  # noqa: F401 (autouse fixture)

import run_all
from defectseg.benchmarks.engine.run import Workspace
from defectseg.benchmarks.engine.config import config_hash
from defectseg.benchmarks.engine.io import write_json
from defectseg.benchmarks.engine.layout import run_dir
from defectseg.benchmarks.grid.execute import run_grid

plugin, runs, reference, copy_of_reference = fault_helpers.plugin, fault_helpers.runs, fault_helpers.reference, fault_helpers.copy_of_reference
STATUS = ["status", "--profile", "smoke", "--device", "cpu", "--plugin", str(fault_helpers.PLUGIN), f"--set=methods=[{fault_helpers.METHOD}]",
          f"--set=seeds={list(fault_helpers.SEEDS)}", *(f"--set={o}" for o in fault_helpers.TINY)]


def _damage(directory, damage: str) -> str:
    """Damage the run in ``directory``; the file the messages must name."""
    if damage == "per_image.npz":
        (directory / "per_image.npz").write_bytes(b"not a zip file")
        return str(directory / "per_image.npz")
    metrics = json.loads((directory / "metrics.json").read_text())
    del metrics["standard"]
    write_json(directory / "metrics.json", metrics)
    return f"{directory / 'metrics.json'} lacks standard.miou, standard.mdice"


@pytest.mark.parametrize("damage", ["per_image.npz", "metrics.json"])
def test_damaged_results_are_not_done_anywhere_and_the_advice_leads_to_a_rerun(runs, reference, copy_of_reference, tmp_path, capsys, damage):
    results = copy_of_reference
    directory = run_dir(results, runs[1])
    named = _damage(directory, damage)
    before = {path.name: path.read_bytes() for path in directory.iterdir()}

    result = run_grid(runs, Workspace(results, device="cpu"), progress=False)  # not skipped as done: failed, by name
    (run, reason), = result.failed
    assert run == runs[1] and named in reason and "move" in reason and len(result.skipped_done) == 2
    assert {path.name: path.read_bytes() for path in directory.iterdir() if path.name != "failure.json"} == before
    capsys.readouterr()
    for argv in (["tables", "--results-dir", str(results)], ["publish", "--results-dir", str(results), "--to", str(tmp_path / "to")],
                 ["compare", str(directory.parent), str(directory.parent)]):
        assert run_all.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and named in err and "move" in err, (argv, err)
    assert not (tmp_path / "to").exists()  # nothing published
    assert run_all.main([*STATUS, "--results-dir", str(results)]) == 0
    assert f"failed: {runs[1]['dataset']}/" in capsys.readouterr().out

    (directory / "metrics.json").rename(tmp_path / "metrics.json.damaged")  # what the message says to do
    assert [r["seed"] for r in run_grid(runs, Workspace(results, device="cpu"), progress=False).completed] == [1]
    assert_like_reference(results, reference, runs)


def _mix_the_cell(results, run) -> None:
    """Make ``run`` stand for another experiment of its cell (8 iterations), consistently with its hash."""
    directory = run_dir(results, run)
    config = yaml.safe_load((directory / "config.yaml").read_text())
    config["train"]["iterations"] = 8
    config["config_hash"] = config_hash({k: v for k, v in config.items() if k != "config_hash"})
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    write_json(directory / "metrics.json", {**json.loads((directory / "metrics.json").read_text()), "config_hash": config["config_hash"]})


def test_compare_and_publish_refuse_a_cell_mixing_configurations(runs, copy_of_reference, reference, tmp_path, capsys):
    _mix_the_cell(copy_of_reference, runs[2])
    method_dir = run_dir(copy_of_reference, runs[0]).parent
    capsys.readouterr()
    assert run_all.main(["compare", str(method_dir), str(run_dir(reference, runs[0]).parent)]) == 2
    err = capsys.readouterr().err
    assert "are runs of one table cell with different configurations" in err and "train.iterations: 6 (seed0) / 8 (seed2)" in err
    assert run_all.main(["publish", "--results-dir", str(copy_of_reference), "--to", str(tmp_path / "to")]) == 2
    assert "train.iterations: 6 (seed0) / 8 (seed2)" in capsys.readouterr().err
    assert not (tmp_path / "to").exists()  # checked before anything is copied


def test_publish_refuses_to_mix_a_cell_of_the_target(runs, copy_of_reference, reference, tmp_path, capsys):
    target = tmp_path / "to"
    assert run_all.main(["publish", "--results-dir", str(reference), "--to", str(target), "--profile", "smoke"]) == 0
    run_dir(target, runs[2]).joinpath("metrics.json").unlink()  # seed 2 to be published again, of another experiment
    _mix_the_cell(copy_of_reference, runs[2])
    capsys.readouterr()
    assert run_all.main(["publish", "--results-dir", str(copy_of_reference), "--to", str(target)]) == 2
    assert "train.iterations: 6 (seed0) / 8 (seed2)" in capsys.readouterr().err
    assert not run_dir(target, runs[2]).joinpath("metrics.json").exists()
