"""Common interface of every dataset: records from an upstream layout, decoded to uint8 arrays."""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

DATA_ROOT_ENV = "DEFECTSEG_DATA_ROOT"
DEFAULT_DATA_ROOT = Path("data")
UNLABELED = "unlabeled"  # ``Record.subset`` of an image without a mask (the unlabelled part of a folder dataset)
NO_MASK = 255  # what the decoded-array cache holds for the mask of such an image: never a class id


class DatasetError(ValueError):
    """Bad or missing input data. The message always names the file or folder concerned."""


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """The data root: explicit argument, else $DEFECTSEG_DATA_ROOT, else ``data/``."""
    if data_root is not None:
        return Path(data_root)
    return Path(os.environ.get(DATA_ROOT_ENV, DEFAULT_DATA_ROOT))


@dataclass(frozen=True)
class Record:
    """One image of a dataset.

    ``uid`` is unique and stable across machines (a path relative to the dataset folder);
    ``subset`` is the upstream split the file came from ("train", "test", or ``UNLABELED`` for an
    image without a mask, which only ever joins the unlabelled set) or None when the upstream
    layout has none; ``label`` is the image-level class used to stratify splits.
    """

    uid: str
    image_path: Path | None
    mask_path: Path | None
    subset: str | None
    label: int


class SegmentationDataset(ABC):
    """A defect segmentation dataset in its official upstream layout."""

    name: ClassVar[str]
    class_names: ClassVar[tuple[str, ...]]  # index 0 is background
    in_channels: ClassVar[int]
    folder: ClassVar[str]  # folder under the data root
    # split policy (fractions of the pool they are carved from); see datasets/splits.py
    test_fraction: ClassVar[float | None]  # None: use the upstream "test" subset
    val_fraction: ClassVar[float]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def options(self) -> dict[str, object]:
        """Constructor options that change records or pixels (JSON-serialisable; part of cache keys)."""
        return {}

    @abstractmethod
    def records(self) -> list[Record]:
        """All records, sorted by uid. Raises DatasetError if the layout is wrong or missing."""

    @abstractmethod
    def read_image(self, record: Record) -> np.ndarray:
        """uint8 array (H, W, in_channels). Raises DatasetError naming the file if unreadable."""

    @abstractmethod
    def read_mask(self, record: Record) -> np.ndarray:
        """uint8 array (H, W) of class ids in [0, num_classes). Raises DatasetError naming the file."""
