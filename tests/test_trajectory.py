"""Validation and test counts along training (``trajectory.npz``) and the checkpoint-selection policies."""
from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from grid_helpers import keep_torch_threads, tiny_profile  # noqa: F401 (autouse fixture)
from torch import Tensor, nn

from defectseg.benchmarks.engine.run import Workspace
from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.per_image import DEFAULT_PREDICTION, PixelCounts, read_per_image
from defectseg.benchmarks.engine.split_store import record_split, recorded_split
from defectseg.benchmarks.engine.trajectory import (
    Trajectory,
    TrajectoryError,
    budget_subset,
    read_trajectory,
    run_policies,
    select_checkpoints,
    write_trajectory,
)
from defectseg.benchmarks.grid.execute import expand_grid, run_grid
from defectseg.datasets.splits import Split
from defectseg.methods import ConfigError, LabeledBatch, Method, get_method_class, register_method
from defectseg.methods.losses import segmentation_loss
from defectseg.methods.registry import _METHODS
from tests.helpers import interrupt_at, train_smoke

# 60 steps, validation every 10 at a high learning rate: on the machines tried the best
# validation step (50) came before the last one; every validation step is recorded
RUN = ("train.iterations=60", "train.val_every=10", "train.checkpoint_every=20", "train.lr=0.03")
RECORD = ("train.record_every=10",)
TIMINGS = {"train_seconds", "iterations_per_second", "eval_ms_per_image", "variant_ms_per_image", "environment"}
DRAWS = "test_predict_draws"


class PredictDraws(Method):
    """A tiny network with dropout whose ``predict`` draws from the torch, numpy and Python RNGs."""

    def __init__(self, options, in_channels: int, num_classes: int) -> None:
        super().__init__(options, in_channels, num_classes)
        self.net = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.2), nn.Conv2d(8, num_classes, 1))

    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        return {"loss": segmentation_loss(self.net(labeled.images), labeled.masks)}

    def named_predictions(self, images: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        torch.rand(1), np.random.rand(), random.random()
        return {name: self.net(images) for name in names}


@pytest.fixture(scope="module")
def draws_method():
    register_method(DRAWS)(PredictDraws)
    yield DRAWS
    _METHODS.pop(DRAWS, None)


def _run_dir(results, method: str):
    return results / "runs" / "smoke" / "synthetic" / "0.2" / method / "seed0"


def _train(results, method: str, overrides: tuple[str, ...]) -> dict:
    train_smoke(method, results, overrides)
    return json.loads((_run_dir(results, method) / layout.METRICS).read_text())


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory):
    """A supervised smoke run recording every validation step, and the same run without recording."""
    plain, recorded = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("recorded")
    metrics = _train(plain, "supervised", RUN), _train(recorded, "supervised", RUN + RECORD)
    return (*metrics, _run_dir(plain, "supervised"), _run_dir(recorded, "supervised"))


def _assert_same_run(plain_metrics: dict, recorded_metrics: dict, plain_dir, recorded_dir) -> None:
    strip = lambda m: {k: v for k, v in m.items() if k not in TIMINGS | {"config_hash"}}  # noqa: E731
    assert strip(plain_metrics) == strip(recorded_metrics)
    a, b = read_per_image(plain_dir / layout.PER_IMAGE), read_per_image(recorded_dir / layout.PER_IMAGE)
    assert a.image_ids == b.image_ids and a.predictions.keys() == b.predictions.keys()
    for name in a.predictions:
        assert all(np.array_equal(getattr(a.predictions[name], k), getattr(b.predictions[name], k)) for k in ("tp", "fp", "fn"))
    best_a, best_b = (torch.load(d / layout.BEST, weights_only=True) for d in (plain_dir, recorded_dir))
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)
    logs = [[line.rsplit(",", 1)[0] for line in (d / layout.TRAIN_LOG).read_text().splitlines()] for d in (plain_dir, recorded_dir)]
    assert logs[0] == logs[1]  # every column but elapsed_s (the last)
    assert not (plain_dir / layout.TRAJECTORY).exists() and (recorded_dir / layout.TRAJECTORY).is_file()


def test_recording_leaves_the_run_unchanged(recorded_run):
    _assert_same_run(*recorded_run)


def test_recording_leaves_the_run_unchanged_when_predict_draws_random_numbers(draws_method, tmp_path):
    plain, recorded = tmp_path / "plain", tmp_path / "recorded"
    plain_metrics, recorded_metrics = _train(plain, draws_method, RUN), _train(recorded, draws_method, RUN + RECORD)
    _assert_same_run(plain_metrics, recorded_metrics, _run_dir(plain, draws_method), _run_dir(recorded, draws_method))


def test_full_val_reproduces_the_best_step_and_the_tested_counts(recorded_run):
    _, metrics, _, directory = recorded_run
    trajectory = read_trajectory(directory / layout.TRAJECTORY)
    split = recorded_split(directory, layout.results_dir_of(directory))
    assert trajectory.steps == (10, 20, 30, 40, 50, 60)
    assert trajectory.val_ids == tuple(split.val) and trajectory.test_ids == tuple(split.test)
    choices = run_policies(directory)
    assert choices["full_val"].step == metrics["best_step"]
    tested = read_per_image(directory / layout.PER_IMAGE).predictions[DEFAULT_PREDICTION]
    for name in ("tp", "fp", "fn"):
        assert np.array_equal(getattr(choices["full_val"].test, name), getattr(tested, name))
    assert choices["final"].step == 60
    size = len(split.labeled)
    assert choices["val_budget"].step == select_checkpoints(trajectory, size, split.split_seed, 0)["val_budget"].step
    assert run_policies(directory, budget=len(split.val))["val_budget"].step == metrics["best_step"]  # every image: full_val


def _defect_counts(rows: list[tuple[int, int, int]]) -> PixelCounts:
    """Counts of images with one defect class: (TP, FP, FN) of the defect per image, background empty."""
    defect = np.array(rows, dtype=np.int64)
    zeros = np.zeros(len(rows), dtype=np.int64)
    return PixelCounts(*(np.stack([zeros, defect[:, k]], axis=1) for k in range(3)))


def _trajectory(steps: Sequence[int], val: list[list[tuple]], test: list[list[tuple]]) -> Trajectory:
    trajectory = Trajectory(tuple(f"v{i}" for i in range(len(val[0]))), tuple(f"t{i}" for i in range(len(test[0]))), ("background", "defect"))
    for step, v, t in zip(steps, val, test):
        trajectory = trajectory.with_record(step, _defect_counts(v), _defect_counts(t))
    return trajectory


def test_policies_on_a_hand_made_trajectory():
    val = [  # validation Dice of the summed counts: 4/6, 6/7, 6/7 (a tie: the earlier step), 4/6
        [(1, 1, 0), (1, 1, 0)],
        [(2, 0, 0), (1, 1, 0)],
        [(1, 1, 0), (2, 0, 0)],
        [(1, 0, 1), (1, 0, 1)],
    ]
    test = [  # standard IoU 9/11, 6/11, 6/11, 8/11; paper (image mean) 0.45, 0.75, 0.75 (a tie), 0.4
        [(9, 0, 1), (0, 0, 1)],
        [(5, 0, 5), (1, 0, 0)],
        [(5, 0, 5), (1, 0, 0)],
        [(8, 0, 2), (0, 0, 1)],
    ]
    trajectory = _trajectory((10, 20, 30, 40), val, test)
    choices = select_checkpoints(trajectory, budget=2, split_seed=0, seed=0)
    steps = {policy: choice.step for policy, choice in choices.items()}
    assert steps == {"full_val": 20, "val_budget": 20, "final": 40, "test_best_standard": 10, "test_best_paper": 20}
    assert np.array_equal(choices["test_best_standard"].test.tp, trajectory.test[0].tp)


def _right_once(order: Sequence[int]) -> Trajectory:
    """Validation image i is right at step ``order[i]`` only (steps 1..n): on one image, its step wins."""
    n = len(order)
    val = [[(10, 0, 0) if order[i] == s else (0, 0, 10) for i in range(n)] for s in range(1, n + 1)]
    return _trajectory(range(1, n + 1), val, [[(1, 0, 0)]] * n)


def test_val_budget_uses_one_subset_per_unit_of_the_labelled_set_size(tmp_path):
    """Two methods of one unit (split seed 3, seed 1, one labelled image): each chooses the step at
    which the one drawn validation image is right, the same image for both."""
    n = 5
    orders = {"method_a": list(range(1, n + 1)), "method_b": list(range(n, 0, -1))}
    ids = [f"v{i}" for i in range(n)]
    split = Split("synthetic", 3, 0.1, labeled=["l0"], unlabeled=["u0"], val=ids, test=["t0"])
    (drawn,) = budget_subset(ids, 1, split_seed=3, seed=1)
    for method, order in orders.items():
        directory = tmp_path / "runs" / "p" / "synthetic" / "0.1" / method / "seed1"
        directory.mkdir(parents=True)
        record_split(directory, tmp_path, split)
        write_trajectory(directory / layout.TRAJECTORY, _right_once(order))
        choices = run_policies(directory)
        assert choices["val_budget"].step == order[drawn]
        assert choices["full_val"].step == 1  # every image: every step ties, the earliest wins
        assert run_policies(directory, budget=n)["val_budget"].step == 1


def test_budget_subset_is_fixed_by_the_unit_and_sized_by_the_budget():
    ids = [f"img{i:03d}" for i in range(40)]
    chosen = budget_subset(ids, 7, split_seed=2, seed=5)
    assert len(chosen) == len(set(chosen)) == 7 and list(chosen) == sorted(chosen)
    shuffled = list(np.random.default_rng(0).permutation(ids))  # drawn from the sorted ids: the order given does not matter
    assert sorted(shuffled[i] for i in budget_subset(shuffled, 7, 2, 5)) == [ids[i] for i in chosen]
    assert list(budget_subset(ids, 7, 2, 6)) != list(chosen)
    assert len(budget_subset(ids, 100, 2, 5)) == 40


def test_write_and_read_round_trip_with_the_smallest_dtype(tmp_path):
    trajectory = _trajectory((5, 10), [[(1, 2, 3)], [(4, 5, 6)]], [[(7, 8, 9)], [(10, 11, 12)]])
    write_trajectory(tmp_path / "t.npz", trajectory)
    again = read_trajectory(tmp_path / "t.npz")
    assert again.steps == (5, 10) and again.val_ids == ("v0",) and again.class_names == ("background", "defect")
    assert all(np.array_equal(a.fn, b.fn) for a, b in zip(again.test, trajectory.test))
    with np.load(tmp_path / "t.npz") as data:
        assert data["val_counts"].dtype == np.uint16
    large = _trajectory((5,), [[(65536, 0, 0)]], [[(1, 0, 0)]])  # a whole 256 x 256 image
    write_trajectory(tmp_path / "large.npz", large)
    with np.load(tmp_path / "large.npz") as data:
        assert data["val_counts"].dtype == np.int32 and data["test_counts"].dtype == np.uint16
    assert read_trajectory(tmp_path / "large.npz").val[0].tp[0, 1] == 65536


def test_reader_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.npz"
    with pytest.raises(TrajectoryError, match=str(missing)):
        read_trajectory(missing)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(TrajectoryError, match=f"{garbage}: not a readable"):
        read_trajectory(garbage)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, steps=np.array([1, 2]), val_ids=np.array(["a"]), test_ids=np.array(["b"]), class_names=np.array(["bg", "d"]),
             val_counts=np.zeros((1, 1, 2, 3), np.uint16), test_counts=np.zeros((2, 1, 2, 3), np.uint16))
    with pytest.raises(TrajectoryError, match=f"{wrong}: val_counts are uint16 of shape"):
        read_trajectory(wrong)
    with pytest.raises(TrajectoryError, match="the run has no trajectory.npz"):
        run_policies(tmp_path / "runs" / "p" / "d" / "0.1" / "m" / "seed0")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("train.record_every=30",), "train.record_every (30) must be a multiple of train.val_every (40)"),
        (("train.record_every=80", "train_per_dataset.synthetic.val_every=60"), "train.record_every (80) must be a multiple of train.val_every (60)"),
    ],
)
def test_record_every_must_be_a_multiple_of_val_every(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        expand_grid(tiny_profile("train.val_every=40", *overrides))


def test_a_run_with_record_every_not_a_multiple_of_val_every_writes_nothing(tmp_path):
    assert expand_grid(tiny_profile("train.val_every=40", "train.record_every=80"))  # a multiple: accepted
    with pytest.raises(ConfigError, match=re.escape("train.record_every (30) must be a multiple of train.val_every (40)")):
        train_smoke("supervised", tmp_path, ("train.record_every=30",))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("damage", ["ahead", "corrupt"])
def test_a_resumed_run_records_what_an_uninterrupted_run_records(tmp_path, monkeypatch, capfd, damage):
    """Interrupted after the checkpoint of step 4; its trajectory then either ran ahead of the
    checkpoint (records to step 8: those after 4 are dropped) or is corrupt (set aside, restart)."""
    (run,) = expand_grid(tiny_profile("train.iterations=8", "train.checkpoint_every=4", "train.record_every=2"))
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_grid([run], Workspace(straight, device="cpu"), progress=False)
    expected = read_trajectory(layout.run_dir(straight, run) / layout.TRAJECTORY)
    assert expected.steps == (2, 4, 6, 8)

    cls = get_method_class("supervised")
    monkeypatch.setattr(cls, "on_step_end", interrupt_at(cls.on_step_end, 6))
    with pytest.raises(KeyboardInterrupt):
        run_grid([run], Workspace(resumed, device="cpu"), progress=False)
    monkeypatch.undo()
    path = layout.run_dir(resumed, run) / layout.TRAJECTORY
    assert read_trajectory(path).steps == (2, 4)  # written with the checkpoint of step 4
    if damage == "ahead":
        write_trajectory(path, expected)
    else:
        path.write_bytes(b"damaged")
    capfd.readouterr()

    assert len(run_grid([run], Workspace(resumed, device="cpu"), progress=False).completed) == 1
    assert ("restarts from step 0" in capfd.readouterr().err) == (damage == "corrupt")
    again = read_trajectory(path)
    assert again.steps == expected.steps
    for a, b in zip((*again.val, *again.test), (*expected.val, *expected.test)):
        assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("tp", "fp", "fn"))
