"""Your own defect images as a dataset, without code: a folder in one layout, declared in YAML.

The dataset ``folder`` reads the folder named by its option ``path`` (relative to the data root,
or absolute)::

    <path>/dataset.yaml                 the declaration (below)
    <path>/labelled/images/<stem>.<ext> labelled images, grey or colour, any size
    <path>/labelled/masks/<stem>.png    their masks, paired with the images by file stem
    <path>/unlabelled/images/*          optional: images without masks (semi-supervised methods)
    <path>/test/images/*, test/masks/*  optional: the test set; without it, one is drawn

``dataset.yaml``::

    classes: {background: 0, scratch: 1, pit: 2}  # background first; see datasets/class_map.py
    channels: 1          # 1 grey, 3 colour; default: the first labelled image's
    test_fraction: 0.2   # without a test part: the share of the labelled part held out as test
    val_fraction: 0.15   # the share of the rest used for validation

The options ``classes`` (``background=0,scratch=1``) and ``channels`` override the file, so a
folder can also be declared on the command line alone. Images end in one of ``IMAGE_SUFFIXES``,
masks in one of ``MASK_SUFFIXES`` (lossless); files whose names start with a dot are ignored.

Split: the test part, else ``test_fraction`` of the labelled part; then ``val_fraction`` of the
rest; both stratified by class presence (an image's label is the set of classes its mask holds,
so defect-free images are a stratum of their own). The labelled ratio is the share of the
remaining labelled images trained on with their masks (1.0: all of them); the others and the
whole unlabelled part form the unlabelled set (``datasets/splits.py``).

Checks when the records are read, each a DatasetError naming the file: images without masks and
masks without images (a few named, and the count), unexpected or empty files, masks whose size
differs from their image's, mask values or colours no class has, unreadable files, and test masks
holding a class that no labelled mask holds. A class no labelled mask holds is a warning (stderr).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from .base import UNLABELED, DatasetError, Record, SegmentationDataset
from .class_map import ClassMap
from .folder import relative_uid, require_readable
from .imagefiles import decode_image

DECLARATION = "dataset.yaml"
LABELLED, UNLABELLED, TEST = "labelled", "unlabelled", "test"
IMAGES, MASKS = "images", "masks"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
DECLARATION_KEYS = ("classes", "channels", "test_fraction", "val_fraction")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
SHOWN = 3  # unpaired files named in an error


class CustomDataset(SegmentationDataset):
    """A folder of your own images in the layout of the module docstring."""

    name = "folder"
    folder = ""  # located by the option ``path``, not by a fixed folder under the data root
    test_fraction = 0.2
    val_fraction = 0.15

    def __init__(self, root: str | os.PathLike, path: str = "", classes: str = "", channels: int = 0) -> None:
        if not path:
            raise DatasetError(
                "dataset 'folder' needs the folder of your images: set dataset_options.folder.path in the profile, "
                "or --set dataset_options.folder.path=<folder under the data root, or absolute> (docs/your_data.md)"
            )
        self.path = (Path(root) / path).resolve()
        if not self.path.is_dir():
            raise DatasetError(f"folder dataset not found: expected the folder {self.path} (dataset_options.folder.path={path!r})")
        declared = self._declaration()
        if not (classes or "classes" in declared):
            raise DatasetError(
                f"no classes declared for {self.path}: add 'classes:' to {self.path / DECLARATION} or set dataset_options.folder.classes"
            )
        where = "dataset_options.folder.classes" if classes else str(self.path / DECLARATION)
        self.class_map = ClassMap.parse(classes or declared["classes"], where)
        self.class_names = self.class_map.names
        self.in_channels = channels or declared.get("channels") or self._first_image_channels()
        if type(self.in_channels) is not int or self.in_channels not in (1, 3):
            raise DatasetError(f"channels of the folder dataset {self.path} must be 1 (grey) or 3 (colour), got {self.in_channels!r}")
        self.val_fraction = _fraction(declared, "val_fraction", self.val_fraction, self.path / DECLARATION)
        has_test_part = (self.path / TEST).is_dir()
        self.test_fraction = None if has_test_part else _fraction(declared, "test_fraction", self.test_fraction, self.path / DECLARATION)
        self._records: list[Record] | None = None

    def options(self) -> dict[str, object]:
        return {
            "path": str(self.path), "classes": self.class_map.describe(), "channels": self.in_channels,
            "test_fraction": self.test_fraction, "val_fraction": self.val_fraction,
        }

    def records(self) -> list[Record]:
        if self._records is None:
            labelled = self._part(LABELLED, "train")
            test = self._part(TEST, "test") if (self.path / TEST).is_dir() else []
            unlabelled = self._image_only() if (self.path / UNLABELLED).is_dir() else []
            self._check_classes(labelled, test)
            self._records = sorted(labelled + test + unlabelled, key=lambda record: record.uid)
        return list(self._records)

    def read_image(self, record: Record) -> np.ndarray:
        return decode_image(record.image_path, self.in_channels)

    def read_mask(self, record: Record) -> np.ndarray:
        if record.mask_path is None:
            raise DatasetError(f"image {record.image_path} is in the unlabelled part: it has no mask")
        return self.class_map.read(record.mask_path)

    def _declaration(self) -> dict[str, Any]:
        """The mapping in dataset.yaml ({} without the file); a DatasetError naming it if malformed."""
        path = self.path / DECLARATION
        if not path.exists():
            return {}
        try:
            data = yaml.safe_load(require_readable(path, "declaration").read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise DatasetError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from error
        if not isinstance(data, dict):
            raise DatasetError(f"{path} must be a mapping with keys {list(DECLARATION_KEYS)}")
        unknown = sorted(set(data) - set(DECLARATION_KEYS))
        if unknown:
            raise DatasetError(f"{path}: unknown key(s) {unknown}; valid keys: {list(DECLARATION_KEYS)}")
        return data

    def _first_image_channels(self) -> int:
        images = sorted(_files(self.path / LABELLED / IMAGES, IMAGE_SUFFIXES, "image").values())
        if not images:
            raise DatasetError(f"no images in {self.path / LABELLED / IMAGES}")
        return 1 if _header(images[0], "image")[1] in GREY_MODES else 3

    def _part(self, part: str, subset: str) -> list[Record]:
        """The records of a part with masks; every mask read (values checked, label = classes present)."""
        images = _files(self.path / part / IMAGES, IMAGE_SUFFIXES, "image")
        masks = _files(self.path / part / MASKS, MASK_SUFFIXES, "mask")
        _check_pairs(self.path / part, images, masks)
        if not images:
            raise DatasetError(f"no images in {self.path / part / IMAGES}")
        records = []
        for stem in sorted(images):
            image, mask = images[stem], masks[stem]
            ids = self.class_map.read(mask)
            size = _header(image, "image")[0]
            if size != (ids.shape[1], ids.shape[0]):
                raise DatasetError(f"image {image} is {size[0]}x{size[1]} (WxH) but its mask {mask} is {ids.shape[1]}x{ids.shape[0]}")
            label = sum(1 << int(c) for c in np.unique(ids))
            records.append(Record(relative_uid(image, self.path), image, mask, subset, label))
        return records

    def _image_only(self) -> list[Record]:
        images = _files(self.path / UNLABELLED / IMAGES, IMAGE_SUFFIXES, "image")
        for image in images.values():
            _header(image, "image")
        return [Record(relative_uid(image, self.path), image, None, UNLABELED, 0) for image in images.values()]

    def _check_classes(self, labelled: list[Record], test: list[Record]) -> None:
        """A warning for each class no labelled mask holds; a DatasetError if a test mask holds one."""
        learnt = _classes(labelled)
        for record in test:
            unseen = sorted(_classes([record]) - learnt)
            if unseen:
                names = [self.class_names[c] for c in unseen]
                raise DatasetError(
                    f"test mask {record.mask_path} holds class(es) {names} that no mask of {self.path / LABELLED / MASKS} holds: "
                    "no method can learn them; label some images of those classes"
                )
        for class_id in sorted(set(range(len(self.class_names))) - learnt):
            print(
                f"warning: class {self.class_names[class_id]!r} occurs in no mask of {self.path / LABELLED / MASKS}: no method can learn it",
                file=sys.stderr,
            )


def _classes(records: list[Record]) -> set[int]:
    """Class ids present in the masks of ``records`` (from their labels)."""
    union = 0
    for record in records:
        union |= record.label
    return {bit for bit in range(union.bit_length()) if union >> bit & 1}


def _files(folder: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    """Stem -> file of every ``what`` in ``folder``; a DatasetError naming an unexpected, unreadable or
    empty file, two files of one stem, or a missing folder."""
    if not folder.is_dir():
        raise DatasetError(f"missing folder {folder}: expected the {what} files ({', '.join(suffixes)})")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.suffix.lower() not in suffixes:
            raise DatasetError(f"unexpected file {path} among the {what}s (expected {', '.join(suffixes)}): move it out of {folder}")
        require_readable(path, what)
        if path.stat().st_size == 0:
            raise DatasetError(f"{what} {path} is empty (0 bytes)")
        if path.stem in files:
            raise DatasetError(f"{files[path.stem]} and {path} have the same stem: rename one, {what}s are paired by stem")
        files[path.stem] = path
    return files


def _check_pairs(folder: Path, images: dict[str, Path], masks: dict[str, Path]) -> None:
    """A DatasetError naming (a few of) the images without a mask and the masks without an image, with their counts."""
    problems = []
    for source, partners, kind, expected in ((images, masks, "image(s) without a mask", MASKS), (masks, images, "mask(s) without an image", IMAGES)):
        lonely = [source[stem].name for stem in sorted(source.keys() - partners.keys())]
        if lonely:
            more = f" and {len(lonely) - SHOWN} more" if len(lonely) > SHOWN else ""
            problems.append(f"{len(lonely)} {kind} of the same stem in {folder / expected}: {', '.join(lonely[:SHOWN])}{more}")
    if problems:
        raise DatasetError(f"{folder}: {'; '.join(problems)}")


def _header(path: Path, what: str) -> tuple[tuple[int, int], str]:
    """(width, height) and mode of an image file, read from its header; a DatasetError naming it."""
    try:
        with Image.open(path) as image:
            return image.size, image.mode
    except (OSError, ValueError, SyntaxError) as error:
        raise DatasetError(f"cannot read {what} {path}: {error}") from error


def _fraction(declared: dict[str, Any], key: str, default: float | None, path: Path) -> float:
    value = declared.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise DatasetError(f"{path}: {key} must be a fraction in (0, 1), got {value!r}")
    return float(value)
