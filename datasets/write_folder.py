"""Write a dataset out as a folder dataset (``datasets/custom.py``): PNG images, index masks, dataset.yaml.

A seeded shuffle of the records puts ``test_fraction`` of them in ``test/``, ``unlabelled_fraction``
in ``unlabelled/`` (images only: their masks are not written) and the rest in ``labelled/``. File
stems are the record uids with ``/`` replaced by ``_`` and the suffix dropped. ``dataset.yaml``
is written last, so a folder interrupted half-way has none and does not load.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from .atomic import atomic_open
from .base import DatasetError, SegmentationDataset
from .custom import DECLARATION, IMAGES, LABELLED, MASKS, TEST, UNLABELLED


def write_folder(
    dataset: SegmentationDataset, out: Path, unlabelled_fraction: float = 0.5, test_fraction: float = 0.0, seed: int = 0
) -> dict[str, int]:
    """Write ``dataset`` under ``out`` (a new or empty folder); returns the image count of each part."""
    if not (0 <= unlabelled_fraction < 1 and 0 <= test_fraction < 1 and unlabelled_fraction + test_fraction < 1):
        raise DatasetError(f"the unlabelled ({unlabelled_fraction}) and test ({test_fraction}) fractions must be >= 0 with a sum below 1")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} is not empty: write the folder dataset into a new folder")
    records = dataset.records()
    order = np.random.Generator(np.random.PCG64(seed)).permutation(len(records))
    test_count, unlabelled_count = round(test_fraction * len(records)), round(unlabelled_fraction * len(records))
    counts = {LABELLED: 0, UNLABELLED: 0, TEST: 0}
    for rank, index in enumerate(order):
        record = records[index]
        part = TEST if rank < test_count else UNLABELLED if rank < test_count + unlabelled_count else LABELLED
        stem = Path(record.uid).with_suffix("").as_posix().replace("/", "_")
        image = dataset.read_image(record)
        _save(image[:, :, 0] if image.shape[2] == 1 else image, out / part / IMAGES / f"{stem}.png")
        if part != UNLABELLED:
            _save(dataset.read_mask(record), out / part / MASKS / f"{stem}.png")
        counts[part] += 1
    declaration = {"classes": {name: index for index, name in enumerate(dataset.class_names)}, "channels": dataset.in_channels}
    with atomic_open(out / DECLARATION, "w") as file:
        yaml.safe_dump(declaration, file, sort_keys=False)
    return counts


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path)
