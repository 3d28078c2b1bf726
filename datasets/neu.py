"""NEU-Seg: hot-rolled steel surface defects (github.com/DHW-Master/NEU_Seg).

Layout: ``images/{training,test}/<stem>.jpg`` (200x200 RGB) with masks
``annotations/{training,test}/<stem>.png`` holding class ids 0..3 (background, inclusion,
patches, scratches). The official split is kept: 3630 "train" and 840 "test" images; the
validation set is 15% of the training images (see datasets/splits.py).

File names do not encode the defect class (and 927 masks hold two classes), so the image-level
``label`` used for stratification is the most frequent non-zero mask value; ``records()`` reads
every mask once for it (about a second for the whole set) and so also validates every mask.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Record
from .folder import FolderDataset, check_orphan_masks, list_files, relative_uid, require_dir, require_mask
from .imagefiles import check_mask_values, decode_mask

_SUBSETS = {"training": "train", "test": "test"}  # upstream folder -> Record.subset


class NEUSeg(FolderDataset):
    """NEU-Seg in its upstream layout under ``<data root>/NEU_data``."""

    name = "neu"
    class_names = ("background", "inclusion", "patches", "scratches")
    in_channels = 3
    folder = "NEU_data"
    test_fraction = None
    val_fraction = 0.15

    def scan(self) -> list[Record]:
        records = []
        for upstream, subset in _SUBSETS.items():
            masks = require_dir(self.path / "annotations" / upstream, "the .png masks of images/" + upstream)
            used = set()
            for image in list_files(self.path / "images" / upstream, "*.jpg"):
                mask = require_mask(image, masks / f"{image.stem}.png")
                used.add(mask)
                label = _dominant_class(self._load_mask(mask))
                records.append(Record(relative_uid(image, self.path), image, mask, subset, label))
            check_orphan_masks(masks, "*.png", used, self.path / "images" / upstream)
        return records

    def read_mask(self, record: Record) -> np.ndarray:
        return self._load_mask(record.mask_path)

    def _load_mask(self, path: Path) -> np.ndarray:
        return check_mask_values(decode_mask(path), self.class_names, path)


def _dominant_class(mask: np.ndarray) -> int:
    """The most frequent non-zero value of ``mask`` (0 if it has none)."""
    counts = np.bincount(mask.ravel())
    counts[0] = 0
    return int(counts.argmax())
