"""Base class of the datasets read from ``<data root>/<folder>``, and layout checks they share."""
from __future__ import annotations

import os
from abc import abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from .base import DATA_ROOT_ENV, DatasetError, Record, SegmentationDataset
from .imagefiles import decode_image


class FolderDataset(SegmentationDataset):
    """A dataset stored as files in its upstream layout under ``<data root>/<folder>``.

    Subclasses implement ``scan()`` (records in any order) and ``read_mask()``; records are
    scanned once per instance, and the folder must exist at construction and on every call.
    """

    # how to obtain the data, appended to the "not found" message
    how_to_get: ClassVar[str] = (
        "Run `make data` to download it, or set {env} (or pass --data-root) to a folder "
        "that contains {folder}/."
    )

    def __init__(self, root: str | os.PathLike) -> None:
        self.path = Path(root).resolve() / self.folder
        self._records: list[Record] | None = None
        self._require_folder()

    def _require_folder(self) -> None:
        if not self.path.is_dir():
            hint = self.how_to_get.format(env=DATA_ROOT_ENV, folder=self.folder)
            raise DatasetError(f"{self.name} data not found: expected the folder {self.path}. {hint}")

    @abstractmethod
    def scan(self) -> list[Record]:
        """Records found in the layout; raises DatasetError if the layout is wrong."""

    def records(self) -> list[Record]:
        self._require_folder()
        if self._records is None:
            self._records = sorted(self.scan(), key=lambda record: record.uid)
        return list(self._records)

    def read_image(self, record: Record) -> np.ndarray:
        return decode_image(record.image_path, self.in_channels)


def relative_uid(path: Path, base: Path) -> str:
    """Stable record id: the POSIX path of ``path`` relative to the dataset folder ``base``."""
    return path.relative_to(base).as_posix()


def require_dir(path: Path, expected: str) -> Path:
    """``path`` if it is a folder, else a DatasetError saying what it should hold."""
    if not path.is_dir():
        raise DatasetError(f"missing folder {path}: expected {expected}")
    return path


def require_readable(path: Path, what: str, missing: str | None = None) -> Path:
    """``path`` if it is a readable file, else a DatasetError naming it and why (a broken or
    looping symlink, not a file, no read permission; ``missing`` if given and nothing is there):
    unreadable data is never skipped silently."""
    if path.is_file() and os.access(path, os.R_OK):
        return path
    if missing is not None and not path.is_symlink() and not path.exists():
        raise DatasetError(missing)
    try:
        path.stat()
    except OSError as error:
        link = f" (a symlink to {os.readlink(path)})" if path.is_symlink() else ""
        raise DatasetError(f"{what} {path}{link} cannot be opened: {error.strerror}; fix or remove it") from error
    if not path.is_file():
        raise DatasetError(f"{what} {path} is not a regular file; rename or remove it")
    raise DatasetError(f"{what} {path} is not readable (permission denied); fix its permissions")


def list_files(folder: Path, pattern: str) -> list[Path]:
    """Files matching ``pattern`` in ``folder`` (sorted); a DatasetError if there are none or one
    cannot be read, or is a folder named like an image (see ``require_readable``)."""
    matches = sorted(require_dir(folder, f"{pattern} files").glob(pattern))
    files = [require_readable(path, "image") for path in matches]
    if not files:
        raise DatasetError(f"no {pattern} files in {folder}")
    return files


def check_orphan_masks(folder: Path, pattern: str, used: set[Path], images: Path) -> None:
    """DatasetError naming a mask in ``folder`` matching ``pattern`` that no image of ``images`` uses: its image was
    deleted or renamed, and the dataset would silently lose it."""
    orphans = sorted(path for path in folder.glob(pattern) if path not in used)
    if orphans:
        raise DatasetError(
            f"mask {orphans[0]} has no image in {images} ({len(orphans)} such mask(s)): restore its image, or remove the mask"
        )


def require_mask(image: Path, mask: Path) -> Path:
    """``mask`` if it is a readable file, else a DatasetError naming the image that lacks it or the mask."""
    return require_readable(mask, "mask", missing=f"image {image} has no mask: expected {mask}")
