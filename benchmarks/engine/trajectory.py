"""Validation and test counts along training (``trajectory.npz``), and the checkpoint-selection policies.

With ``train.record_every`` set, a run keeps, at every validation step that is a multiple of it and
at the final step, the per-image TP/FP/FN counts of its default prediction on the validation images
(the counts its validation score is computed from) and on the test images. From them, the test
counts of the checkpoint each selection policy would have tested (``select_checkpoints``):

* ``full_val``: the step of best validation mean Dice over all validation images
  (``per_image.selection_score``; ties -> the earliest step): the trainer's rule, so with every
  validation step recorded (``record_every == val_every``) it is the run's ``best_step``;
* ``val_budget``: the same rule on a subset of the validation images as large as the labelled
  set (``budget_subset``: drawn from the run's split seed and seed only, so every method of a
  unit sees the same subset): what a validation set one could afford to label would choose;
* ``final``: the last recorded step (the final one);
* ``test_best_standard`` / ``test_best_paper``: the step of best test mIoU under each protocol
  (ties -> the earliest). An upper bound, not a policy one could use: it selects on the test set.

File layout (``numpy.savez_compressed``, written atomically): ``steps`` (S,) int64, ``val_ids``
(Nv,) str, ``test_ids`` (Nt,) str, ``class_names`` (C,) str, ``val_counts`` (S, Nv, C, 3) and
``test_counts`` (S, Nt, C, 3) holding TP, FP, FN in that order, uint16 when every count of the
array fits (images up to 255x255 pixels, or larger ones without a class covering a whole image),
else int32.
"""
from __future__ import annotations

import dataclasses
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from defectseg.datasets.atomic import atomic_open

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.per_image import PixelCounts, paper_image_iou, selection_score, standard_miou
from defectseg.benchmarks.engine.split_store import recorded_split

POLICIES = ("full_val", "val_budget", "final", "test_best_standard", "test_best_paper")
ARRAYS = ("steps", "val_ids", "test_ids", "class_names", "val_counts", "test_counts")


class TrajectoryError(ValueError):
    """A trajectory that is missing or cannot be read as expected; the message names the file or run folder."""


@dataclass(frozen=True)
class Trajectory:
    """The counts of the validation and test images at each recorded step, steps ascending."""

    val_ids: tuple[str, ...]
    test_ids: tuple[str, ...]
    class_names: tuple[str, ...]
    steps: tuple[int, ...] = ()
    val: tuple[PixelCounts, ...] = ()  # one per step, (Nv, C) each
    test: tuple[PixelCounts, ...] = ()  # one per step, (Nt, C) each

    def with_record(self, step: int, val: PixelCounts, test: PixelCounts) -> Trajectory:
        """This trajectory and the record of ``step`` (after every recorded step)."""
        if self.steps and step <= self.steps[-1]:
            raise ValueError(f"step {step} is not after the last recorded step {self.steps[-1]}")
        if (val.num_images, test.num_images) != (len(self.val_ids), len(self.test_ids)):
            raise ValueError(f"counts of {val.num_images} / {test.num_images} images, expected {len(self.val_ids)} / {len(self.test_ids)}")
        return dataclasses.replace(self, steps=(*self.steps, step), val=(*self.val, val), test=(*self.test, test))

    def until(self, step: int) -> Trajectory:
        """The records of steps up to ``step`` (a resume from the checkpoint of ``step`` drops the later ones)."""
        kept = sum(s <= step for s in self.steps)
        return dataclasses.replace(self, steps=self.steps[:kept], val=self.val[:kept], test=self.test[:kept])


@dataclass(frozen=True)
class PolicyChoice:
    """The step a selection policy chose and the test counts of the default prediction there (images in
    ``test_ids`` order)."""

    step: int
    test: PixelCounts
    test_ids: tuple[str, ...]


def _stacked(counts: Sequence[PixelCounts], num_images: int, num_classes: int) -> np.ndarray:
    """(S, N, C, 3) TP, FP, FN as uint16 if every count fits, else int32."""
    array = np.stack([np.stack([c.tp, c.fp, c.fn], axis=-1) for c in counts]) if counts else np.zeros((0, num_images, num_classes, 3))
    if array.size and (array.min() < 0 or array.max() > np.iinfo(np.int32).max):
        raise ValueError("pixel counts must fit in int32")
    return array.astype(np.uint16 if not array.size or array.max() <= np.iinfo(np.uint16).max else np.int32)


def write_trajectory(path: Path, trajectory: Trajectory) -> None:
    """Write ``trajectory`` atomically (a reader sees the old file or the new one)."""
    t, num_classes = trajectory, len(trajectory.class_names)
    with atomic_open(Path(path), "wb") as handle:
        np.savez_compressed(
            handle,
            steps=np.asarray(t.steps, dtype=np.int64),
            val_ids=np.asarray(t.val_ids, dtype=str),
            test_ids=np.asarray(t.test_ids, dtype=str),
            class_names=np.asarray(t.class_names, dtype=str),
            val_counts=_stacked(t.val, len(t.val_ids), num_classes),
            test_counts=_stacked(t.test, len(t.test_ids), num_classes),
        )


def _unstacked(counts: np.ndarray) -> tuple[PixelCounts, ...]:
    counts = counts.astype(np.int64)
    return tuple(PixelCounts(tp=c[..., 0], fp=c[..., 1], fn=c[..., 2]) for c in counts)


def read_trajectory(path: Path) -> Trajectory:
    """Load ``trajectory.npz``; a missing, corrupt or malformed file is a TrajectoryError naming it."""
    path = Path(path)
    if not path.is_file():
        raise TrajectoryError(f"{path}: trajectory not found (only runs trained with train.record_every set have one)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in ARRAYS}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise TrajectoryError(f"{path}: not a readable trajectory file ({error})") from error
    steps = arrays["steps"]
    if steps.ndim != 1 or steps.dtype.kind not in "iu" or np.any(np.diff(steps) <= 0):
        raise TrajectoryError(f"{path}: steps must be ascending integers, got {steps!r}")
    for part in ("val", "test"):
        counts, expected = arrays[f"{part}_counts"], (len(steps), len(arrays[f"{part}_ids"]), len(arrays["class_names"]), 3)
        if counts.shape != expected or counts.dtype.kind not in "iu":
            raise TrajectoryError(f"{path}: {part}_counts are {counts.dtype} of shape {counts.shape}, expected integers of shape {expected}")
    return Trajectory(
        val_ids=tuple(str(u) for u in arrays["val_ids"]),
        test_ids=tuple(str(u) for u in arrays["test_ids"]),
        class_names=tuple(str(c) for c in arrays["class_names"]),
        steps=tuple(int(s) for s in steps),
        val=_unstacked(arrays["val_counts"]),
        test=_unstacked(arrays["test_counts"]),
    )


def budget_subset(val_ids: Sequence[str], size: int, split_seed: int, seed: int) -> np.ndarray:
    """Positions in ``val_ids`` of ``size`` of them (all if fewer), ascending.

    Drawn without replacement from the sorted ids by a numpy generator seeded with ``split_seed``
    and ``seed`` only, so every method of a unit (same split, same seed) gets the same subset.
    """
    order = np.argsort(np.asarray(val_ids, dtype=str), kind="stable")
    chosen = np.random.default_rng([split_seed, seed]).choice(len(order), size=min(size, len(order)), replace=False)
    return np.sort(order[chosen])


def _earliest_best(values: Sequence[float]) -> int:
    """The index of the largest value, the earliest among ties; NaN counts as lowest."""
    array = np.asarray(values, dtype=np.float64)
    return int(np.argmax(np.where(np.isnan(array), -np.inf, array)))


def _paper_miou(counts: PixelCounts) -> float:
    """Paper-protocol mIoU: the mean of ``paper_image_iou`` over the images with defect pixels (NaN without any)."""
    image_iou = paper_image_iou(counts)
    finite = image_iou[~np.isnan(image_iou)]
    return float(finite.mean()) if finite.size else math.nan


def select_checkpoints(trajectory: Trajectory, budget: int, split_seed: int, seed: int) -> dict[str, PolicyChoice]:
    """The choice of each policy of ``POLICIES`` (module docstring) on ``trajectory``.

    ``budget``: how many validation images ``val_budget`` sees (``budget_subset`` with the run's
    ``split_seed`` and ``seed``). ``test_best_*`` select on the test set: upper bounds.
    """
    t = trajectory
    if not t.steps:
        raise TrajectoryError("the trajectory has no records")
    subset = budget_subset(t.val_ids, budget, split_seed, seed)
    chosen = {
        "full_val": _earliest_best([selection_score(v) for v in t.val]),
        "val_budget": _earliest_best([selection_score(v.take(subset)) for v in t.val]),
        "final": len(t.steps) - 1,
        "test_best_standard": _earliest_best([standard_miou(c) for c in t.test]),
        "test_best_paper": _earliest_best([_paper_miou(c) for c in t.test]),
    }
    return {policy: PolicyChoice(t.steps[index], t.test[index], t.test_ids) for policy, index in chosen.items()}


def run_policies(directory: Path, budget: int | None = None) -> dict[str, PolicyChoice]:
    """``select_checkpoints`` of the run folder ``directory`` (``<results>/runs/.../seed<k>``).

    ``budget`` defaults to the size of the run's labelled set (from its recorded split). A
    TrajectoryError naming the folder if the run has no trajectory, no record in it yet or no
    recorded split.
    """
    directory = Path(directory)
    if not (directory / layout.TRAJECTORY).is_file():
        raise TrajectoryError(f"{directory}: the run has no {layout.TRAJECTORY} (train it with train.record_every set)")
    trajectory = read_trajectory(directory / layout.TRAJECTORY)
    if not trajectory.steps:
        raise TrajectoryError(f"{directory}: {layout.TRAJECTORY} has no record yet (the run stopped before its first recorded step)")
    results_dir = layout.results_dir_of(directory)
    split = recorded_split(directory, results_dir)
    if split is None:
        raise TrajectoryError(f"{directory}: the run records no split ({layout.SPLIT_REF})")
    size = len(split.labeled) if budget is None else budget
    return select_checkpoints(trajectory, size, split.split_seed, layout.run_parts(results_dir, directory)["seed"])
