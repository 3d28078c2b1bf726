"""DAGM 2007 (Weakly Supervised Learning for Industrial Optical Inspection), classes 1-6.

Official layout: ``Class{1..10}/{Train,Test}/<n>.PNG`` (512x512 grayscale) with defect masks in
``Class{k}/{Train,Test}/Label/<n>_label.PNG`` listed in ``Label/Labels.txt``. The Kaggle copy
nests the same tree one level down (``DAGM_KaggleUpload/Class1/...``); both are accepted and
record uids are relative to the folder holding ``Class1`` so they match across layouts.

``Labels.txt``: a first header line (a count/format line, skipped if it is not a row), then one
row per image, whitespace separated: ``<index> <defective 0|1> <image file> <...> <mask file|0>``.
Rows flagged 1 name their mask in the last column; any other line is an error.

Paper protocol: only the defect images of Class1-Class6 (7 classes: background + one per
texture class; mask pixels >= 128 get class k). Upstream Train/Test are pooled (subset None)
and re-split: test 20%, then validation 15% of the rest, stratified by class.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from .base import DatasetError, Record
from .folder import FolderDataset, relative_uid, require_dir, require_mask, require_readable
from .imagefiles import decode_mask, threshold_mask

NUM_TEXTURES = 6  # Class1..Class6 (the development classes) are used
KAGGLE_FOLDER = "DAGM_KaggleUpload"
UPSTREAM_SPLITS = ("Train", "Test")


class LabelRow(NamedTuple):
    """One image row of a DAGM Labels.txt."""

    image: str
    defective: bool
    mask: str | None


class DAGM(FolderDataset):
    """DAGM 2007 defect images of Class1-6 under ``<data root>/DAGM_data`` (official or Kaggle)."""

    name = "dagm"
    class_names = ("background",) + tuple(f"Class{k}" for k in range(1, NUM_TEXTURES + 1))
    in_channels = 1
    folder = "DAGM_data"
    test_fraction = 0.20
    val_fraction = 0.15
    how_to_get = (
        "DAGM 2007 is not downloaded by `make data`: get it from the Heidelberg HCI site or its "
        "Kaggle mirror and unpack it so that {folder}/Class1/Train/Label/Labels.txt exists "
        "(the Kaggle nesting {folder}/DAGM_KaggleUpload/Class1/... also works), in the data root "
        "given by {env} or --data-root."
    )

    def tree(self) -> Path:
        """The folder holding Class1..Class10 (the dataset folder or its Kaggle subfolder)."""
        for base in (self.path, self.path / KAGGLE_FOLDER):
            if (base / "Class1").is_dir():
                return base
        raise DatasetError(
            f"no DAGM class folders in {self.path}: expected {self.path / 'Class1'} "
            f"or {self.path / KAGGLE_FOLDER / 'Class1'}"
        )

    def scan(self) -> list[Record]:
        base = self.tree()
        records = []
        for label in range(1, NUM_TEXTURES + 1):
            for split in UPSTREAM_SPLITS:
                folder = require_dir(base / f"Class{label}" / split, "DAGM images and a Label/ folder")
                for row in parse_labels(folder / "Label" / "Labels.txt"):
                    if row.defective:
                        image = _require_file(folder / row.image, folder / "Label" / "Labels.txt")
                        mask = require_mask(image, folder / "Label" / row.mask)
                        records.append(Record(relative_uid(image, base), image, mask, None, label))
        return records

    def read_mask(self, record: Record) -> np.ndarray:
        return threshold_mask(decode_mask(record.mask_path), record.label)


def parse_labels(path: Path) -> list[LabelRow]:
    """Rows of a DAGM ``Labels.txt``; a DatasetError naming the file and line if malformed."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    rows = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        row = _parse_row(fields)
        if row is None and fields and number > 1:
            raise DatasetError(
                f"{path} line {number} is not '<index> <0|1> <image> ... <mask|0>': {line!r}"
            )
        if row is not None:
            rows.append(row)
    if not rows:
        raise DatasetError(f"{path} lists no images")
    return rows


def _parse_row(fields: list[str]) -> LabelRow | None:
    """The row in ``fields``, or None if they are not a valid image row."""
    if len(fields) < 3 or not fields[0].isdigit() or fields[1] not in ("0", "1"):
        return None
    defective = fields[1] == "1"
    mask = fields[-1] if defective and len(fields) >= 4 and fields[-1] != "0" else None
    if defective and mask is None:
        return None
    return LabelRow(fields[2], defective, mask)


def _require_file(path: Path, listed_in: Path) -> Path:
    return require_readable(path, "image", missing=f"image {path} listed in {listed_in} does not exist")
