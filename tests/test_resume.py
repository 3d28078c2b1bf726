"""A run interrupted after a periodic checkpoint resumes to exactly the metrics of an uninterrupted run."""
from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch
from grid_helpers import plugin_methods, tiny_profile, keep_torch_threads  # noqa: F401 (autouse fixture)

from defectseg.benchmarks.engine.run import Workspace
from defectseg.benchmarks.engine.layout import run_dir
from defectseg.benchmarks.engine.trainer import CHECKPOINT_KEYS
from defectseg.benchmarks.grid.execute import expand_grid, run_grid
from defectseg.methods import get_method_class
from tests.helpers import interrupt_at

TIMINGS = {"train_seconds", "iterations_per_second", "eval_ms_per_image", "environment"}
# 8 steps, checkpoint after 4, log and validation every 2: raised at the end of 0-based step 6, so
# the run has logged (and maybe saved best.pt at) 6 steps but resumes from the checkpoint of 4
OVERRIDES = ("train.iterations=8", "train.checkpoint_every=4")
INTERRUPT_AT = 6
CHECKPOINT_STEP = 4


@pytest.fixture(scope="module")
def plugin():
    with plugin_methods() as names:
        yield names


def _log_without_times(directory) -> list[dict]:
    with open(directory / "train_log.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(handle)]


def _as_legacy_run_folder(results, directory) -> None:
    """Rewrite the run folder as code before shared split files left it: its own split.json, no split.ref."""
    shared = results / "splits" / (directory / "split.ref").read_text().strip()
    (directory / "split.json").write_text(shared.read_text())
    (directory / "split.ref").unlink()
    shutil.rmtree(results / "splits")


@pytest.mark.parametrize(("method", "legacy_split"), [("supervised", False), ("grid_stateful", False), ("supervised", True)])
def test_resumed_run_equals_uninterrupted_run(plugin, tmp_path, monkeypatch, capfd, method, legacy_split):
    (run,) = expand_grid(tiny_profile(f"methods=[{method}]", *OVERRIDES))
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert len(run_grid([run], Workspace(straight, device="cpu"), progress=False).completed) == 1

    cls = get_method_class(method)
    monkeypatch.setattr(cls, "on_step_end", interrupt_at(cls.on_step_end, INTERRUPT_AT))
    with pytest.raises(KeyboardInterrupt):
        run_grid([run], Workspace(resumed, device="cpu"), progress=False)
    directory = run_dir(resumed, run)
    checkpoint = torch.load(directory / "last.pt", weights_only=False)
    assert checkpoint["state"]["step"] == CHECKPOINT_STEP
    assert _log_without_times(directory)[-1]["step"] == str(INTERRUPT_AT)  # logged past the checkpoint
    assert not (directory / ".lock").exists()  # released on the way out
    assert json.loads((directory / "failure.json").read_text())["error"] == "KeyboardInterrupt"
    monkeypatch.undo()
    if legacy_split:
        _as_legacy_run_folder(resumed, directory)
    capfd.readouterr()

    assert len(run_grid([run], Workspace(resumed, device="cpu"), progress=False).completed) == 1
    assert "restarts from step 0" not in capfd.readouterr().err  # resumed from the checkpoint
    assert (directory / "split.ref").exists() and not (directory / "split.json").exists()
    a = json.loads((run_dir(straight, run) / "metrics.json").read_text())
    b = json.loads((directory / "metrics.json").read_text())
    assert {k: v for k, v in a.items() if k not in TIMINGS} == {k: v for k, v in b.items() if k not in TIMINGS}
    assert _log_without_times(run_dir(straight, run)) == _log_without_times(directory)
    best_a = torch.load(run_dir(straight, run) / "best.pt", weights_only=True)
    best_b = torch.load(directory / "best.pt", weights_only=True)
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)
    assert not (directory / "last.pt").exists() and not (directory / "failure.json").exists()


def test_the_checkpoint_keeps_the_format_of_earlier_versions(plugin, tmp_path):
    """Interrupted runs resume across versions: ``last.pt`` keeps the keys it always had."""
    (run,) = expand_grid(tiny_profile("methods=[supervised]", "train.lr_schedule=plateau", *OVERRIDES))
    directory = run_dir(tmp_path, run)
    with pytest.raises(KeyboardInterrupt):
        with pytest.MonkeyPatch.context() as patch:
            cls = get_method_class("supervised")
            patch.setattr(cls, "on_step_end", interrupt_at(cls.on_step_end, INTERRUPT_AT))
            run_grid([run], Workspace(tmp_path, device="cpu"), progress=False)
    checkpoint = torch.load(directory / "last.pt", weights_only=False)
    assert set(checkpoint) == {*CHECKPOINT_KEYS, "scheduler"} == {
        "config_hash", "method", "optimizer", "labeled_sampler", "unlabeled_sampler", "augment_generator", "scheduler", "rng", "state"
    }
    assert set(checkpoint["state"]) == {"step", "best_score", "best_step", "train_seconds"}
    assert set(checkpoint["rng"]) == {"torch", "numpy", "python"}
    assert set(checkpoint["labeled_sampler"]) == {"generator", "order"}
