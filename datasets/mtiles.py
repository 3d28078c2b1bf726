"""Magnetic-tile surface defects (github.com/abin24/Magnetic-tile-defect-datasets.).

Layout: ``MT_<Class>/Imgs/<stem>.jpg`` (grayscale, sizes vary) with same-stem ``.png`` masks.
Masks are grayscale with anti-aliased edges and carry no class id: pixels >= 128 are defect and
get the class of their folder (1 Blowhole, 2 Break, 3 Crack, 4 Fray, 5 Uneven). ``MT_Free``
(952 defect-free images) is left out unless ``include_free=True``; its images get label 0 and
their masks must be all background.

There is no upstream split. 20% of the images are held out, stratified by class, and split
half validation, half test: ``test_fraction`` = 10% of all images, then ``val_fraction`` = 1/9
of the remaining 90% (= 10% of all), so the generic policy of datasets/splits.py yields 10/10/80.
"""
from __future__ import annotations

import os

import numpy as np

from .base import DatasetError, Record
from .folder import FolderDataset, check_orphan_masks, list_files, relative_uid, require_mask
from .imagefiles import MASK_THRESHOLD, decode_mask, threshold_mask

FREE = "Free"


class MTiles(FolderDataset):
    """Magnetic-tile defects in their upstream layout under ``<data root>/MTiles_data``."""

    name = "mtiles"
    class_names = ("background", "Blowhole", "Break", "Crack", "Fray", "Uneven")
    in_channels = 1
    folder = "MTiles_data"
    test_fraction = 0.10
    val_fraction = 0.10 / 0.90

    def __init__(self, root: str | os.PathLike, include_free: bool = False) -> None:
        super().__init__(root)
        self.include_free = include_free

    def options(self) -> dict[str, object]:
        return {"include_free": self.include_free}

    def scan(self) -> list[Record]:
        folders = {name: label for label, name in enumerate(self.class_names) if label > 0}
        if self.include_free:
            folders[FREE] = 0
        records = []
        for name, label in folders.items():
            folder = self.path / f"MT_{name}" / "Imgs"
            used = set()
            for image in list_files(folder, "*.jpg"):
                mask = require_mask(image, image.with_suffix(".png"))
                used.add(mask)
                records.append(Record(relative_uid(image, self.path), image, mask, None, label))
            check_orphan_masks(folder, "*.png", used, folder)
        return records

    def read_mask(self, record: Record) -> np.ndarray:
        raw = decode_mask(record.mask_path)
        if record.label == 0 and (raw >= MASK_THRESHOLD).any():
            raise DatasetError(
                f"mask {record.mask_path} of a defect-free MT_{FREE} image has defect pixels "
                f"(values >= {MASK_THRESHOLD}: {np.unique(raw[raw >= MASK_THRESHOLD]).tolist()})"
            )
        return threshold_mask(raw, record.label)
