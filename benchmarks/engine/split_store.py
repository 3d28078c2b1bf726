"""Splits stored once per results directory and referenced from the run folders made on them.

A split is written once to ``<results>/splits/<dataset>_<ratio>_s<split_seed>_<hash12>.json``
(``layout.split_path``; named by its content, written atomically), and each run folder holds a
``split.ref`` naming that file. Run folders written before shared split files hold their own
copy, ``split.json``: it is still read (``recorded_split``), and replaced by a reference when the
run starts again (``record_split``) or by ``python -m defectseg.benchmarks.grid.migrate_splits``.
"""
from __future__ import annotations

from pathlib import Path

from defectseg.datasets.atomic import atomic_open
from defectseg.datasets.base import DatasetError
from defectseg.datasets.splits import Split

from defectseg.benchmarks.engine import layout


def store_split(results_dir: Path, split: Split) -> Path:
    """The shared file of ``split`` under ``results_dir``, written unless it already holds that split."""
    path = layout.split_path(results_dir, split.dataset, split.ratio, split.split_seed, split.digest())
    try:
        if Split.from_json(path) == split:
            return path
    except DatasetError:  # absent, or not a readable split: (re)written
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    split.to_json(path)
    return path


def record_split(directory: Path, results_dir: Path, split: Split) -> None:
    """Store ``split`` and make the run folder ``directory`` refer to it (its own copy, if any, removed)."""
    path = store_split(results_dir, split)
    with atomic_open(directory / layout.SPLIT_REF, "w") as handle:
        handle.write(path.name + "\n")
    (directory / layout.SPLIT).unlink(missing_ok=True)


def recorded_split(directory: Path, results_dir: Path) -> Split | None:
    """The split the run folder records (its reference, else its own copy); None if it records none.

    A DatasetError naming the file if the split cannot be read.
    """
    ref, copy = directory / layout.SPLIT_REF, directory / layout.SPLIT
    if ref.exists():
        return Split.from_json(layout.splits_dir(results_dir) / ref.read_text().strip())
    if copy.exists():
        return Split.from_json(copy)
    return None
