"""Deterministic labelled / unlabelled / validation / test splits of a dataset's records.

Policy, driven only by the dataset's ``test_fraction`` and ``val_fraction``:

1. test: the upstream ``subset == "test"`` records if ``test_fraction`` is None, else
   ``test_fraction`` of all records, stratified by ``Record.label``;
2. val: ``val_fraction`` of the remaining records, stratified; the rest is the training pool;
3. the training pool (sorted by uid) is permuted once; its first ``max(1, round(ratio * N))``
   records are labelled, the others unlabelled. So labelled sets are nested across ratios and
   val/test do not depend on the ratio.

Records without a mask (``subset == UNLABELED``: a folder dataset's unlabelled part) are set aside
first and always join the unlabelled set: they are never drawn for test, validation or the
labelled set, and they draw nothing from the generator, so the splits of datasets without them are
unchanged. An empty validation or test set is a DatasetError (too few labelled images).

Stratified carving gives each label ``fraction * count`` records, rounded by largest remainder
so the total is ``round(fraction * N)``. All randomness comes from one
``Generator(PCG64(split_seed))`` drawn in a fixed order.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .atomic import atomic_open
from .base import UNLABELED, DatasetError, Record, SegmentationDataset


@dataclass(frozen=True)
class Split:
    """Record uids of each part of a split (each list sorted), and how the split was made."""

    dataset: str
    split_seed: int
    ratio: float
    labeled: list[str]
    unlabeled: list[str]
    val: list[str]
    test: list[str]

    def digest(self) -> str:
        """SHA-256 (hex) of the split's content, independent of how its file is formatted."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the split as JSON, atomically."""
        with atomic_open(Path(path), "w") as file:
            json.dump(asdict(self), file, indent=1)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Split:
        """The split written by ``to_json``; a DatasetError naming the file if it is not one."""
        try:
            data = json.loads(Path(path).read_text())
            return cls(**{field.name: data[field.name] for field in fields(cls)})
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DatasetError(f"cannot read split file {path}: {error!r}") from error


def make_split(
    dataset: SegmentationDataset, records: Sequence[Record], split_seed: int, ratio: float
) -> Split:
    """Split ``records`` of ``dataset`` by its policy (module docstring); labelled share ``ratio``."""
    if not 0 < ratio <= 1:
        raise DatasetError(f"labelled ratio must be in (0, 1], got {ratio}")
    rng = np.random.Generator(np.random.PCG64(split_seed))
    image_only = sorted(record.uid for record in records if record.subset == UNLABELED)
    pool = sorted((record for record in records if record.subset != UNLABELED), key=lambda record: record.uid)
    if dataset.test_fraction is None:
        test = [record for record in pool if record.subset == "test"]
        if not test:
            raise DatasetError(f"{dataset.name}: no records with the upstream subset 'test'")
    else:
        test = _stratified_sample(pool, dataset.test_fraction, rng)
    pool = _without(pool, test)
    val = _stratified_sample(pool, dataset.val_fraction, rng)
    pool = _without(pool, val)
    for part, carved in (("test", test), ("validation", val)):
        if not carved:
            raise DatasetError(f"{dataset.name}: the {part} set is empty: too few labelled images to carve it from")
    if not pool:
        raise DatasetError(f"{dataset.name}: no training records left after carving val and test")
    order = rng.permutation(len(pool))
    count = max(1, round(ratio * len(pool)))
    labeled = [pool[i].uid for i in order[:count]]
    unlabeled = [pool[i].uid for i in order[count:]]
    return Split(
        dataset=dataset.name,
        split_seed=split_seed,
        ratio=ratio,
        labeled=sorted(labeled),
        unlabeled=sorted(unlabeled + image_only),
        val=sorted(record.uid for record in val),
        test=sorted(record.uid for record in test),
    )


def _without(pool: list[Record], taken: list[Record]) -> list[Record]:
    uids = {record.uid for record in taken}
    return [record for record in pool if record.uid not in uids]


def _stratified_sample(pool: list[Record], fraction: float, rng: np.random.Generator) -> list[Record]:
    """``fraction`` of ``pool``, the same share of each label (largest-remainder rounding)."""
    labels = sorted({record.label for record in pool})
    groups = [[record for record in pool if record.label == label] for label in labels]
    quotas = np.array([fraction * len(group) for group in groups])
    counts = np.floor(quotas).astype(int)
    shortfall = round(fraction * len(pool)) - counts.sum()
    by_remainder = np.argsort(-(quotas - counts), kind="stable")
    counts[by_remainder[:shortfall]] += 1
    taken = []
    for group, count in zip(groups, counts):
        taken += [group[i] for i in rng.permutation(len(group))[:count]]
    return sorted(taken, key=lambda record: record.uid)
