"""Decode a dataset once per resolution into uint8 arrays, optionally cached as .npy files.

Images are resized to ``size`` x ``size`` bilinearly and masks by nearest neighbour (PIL).
Every record is validated while decoding (unreadable files, image/mask size mismatch, mask
values outside the classes all raise DatasetError). With a ``cache_dir`` the arrays are stored
as ``<name>_<size>px_<key>_{images,masks}.npy`` (written atomically), where ``key`` hashes the
uids, the size and mtime of every file and the dataset options, and later loads memory-map them.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from PIL import Image
from tqdm import tqdm

from .atomic import atomic_open
from .base import DatasetError, Record, SegmentationDataset

CACHE_VERSION = 1  # bump when decoding changes


@dataclass(frozen=True)
class ArrayBundle:
    """Decoded records: ``images`` uint8 (N, C, H, W), ``masks`` uint8 (N, H, W), ``uids`` (N)."""

    images: np.ndarray
    masks: np.ndarray
    uids: list[str]

    def __len__(self) -> int:
        return len(self.uids)

    def subset(self, uids: Sequence[str]) -> ArrayBundle:
        """The rows of ``uids``, in that order (in-memory copies)."""
        row_of = {uid: row for row, uid in enumerate(self.uids)}
        missing = [uid for uid in uids if uid not in row_of]
        if missing:
            raise DatasetError(f"{len(missing)} uids are not in this bundle, e.g. {missing[:3]}")
        rows = np.array([row_of[uid] for uid in uids], dtype=np.int64)
        return ArrayBundle(self.images[rows], self.masks[rows], list(uids))


def load_arrays(
    dataset: SegmentationDataset,
    records: Sequence[Record],
    size: int,
    cache_dir: Path | None,
    n_jobs: int = 1,
) -> ArrayBundle:
    """``records`` decoded at ``size`` px, from ``cache_dir`` if cached there (memory-mapped).

    ``n_jobs`` > 1 decodes in that many threads.
    """
    uids = [record.uid for record in records]
    if cache_dir is None:
        return ArrayBundle(*_decode(dataset, records, size, n_jobs), uids)
    stem = f"{dataset.name}_{size}px_{cache_key(dataset, records, size)}"
    images_path, masks_path = Path(cache_dir) / f"{stem}_images.npy", Path(cache_dir) / f"{stem}_masks.npy"
    if not (images_path.is_file() and masks_path.is_file()):
        images, masks = _decode(dataset, records, size, n_jobs)
        for path, array in ((masks_path, masks), (images_path, images)):
            with atomic_open(path) as file:
                np.save(file, array)
    return ArrayBundle(np.load(images_path, mmap_mode="r"), np.load(masks_path, mmap_mode="r"), uids)


def cache_key(dataset: SegmentationDataset, records: Sequence[Record], size: int) -> str:
    """Hash of what the decoded arrays depend on (16 hex digits)."""
    content = {
        "version": CACHE_VERSION,
        "dataset": dataset.name,
        "options": dataset.options(),
        "size": size,
        "records": [[record.uid, _stat(record.image_path), _stat(record.mask_path)] for record in records],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def read_sample(dataset: SegmentationDataset, record: Record) -> tuple[np.ndarray, np.ndarray]:
    """Full-size (image (H, W, C), mask (H, W)) of ``record``; a DatasetError if sizes differ."""
    image, mask = dataset.read_image(record), dataset.read_mask(record)
    if image.shape[:2] != mask.shape:
        raise DatasetError(
            f"image {record.image_path or record.uid} is {image.shape[1]}x{image.shape[0]} (WxH) but "
            f"its mask {record.mask_path or record.uid} is {mask.shape[1]}x{mask.shape[0]}"
        )
    return image, mask


def _stat(path: Path | None) -> list[int] | None:
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError as error:
        raise DatasetError(f"cannot stat {path}: {error}") from error
    return [stat.st_size, stat.st_mtime_ns]


def _decode(
    dataset: SegmentationDataset, records: Sequence[Record], size: int, n_jobs: int
) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((len(records), dataset.in_channels, size, size), dtype=np.uint8)
    masks = np.empty((len(records), size, size), dtype=np.uint8)
    jobs = (delayed(decode_resized)(dataset, record, size) for record in records)
    decoded = Parallel(n_jobs=n_jobs, prefer="threads", return_as="generator")(jobs)
    progress = tqdm(decoded, total=len(records), desc=f"decode {dataset.name} @{size}")
    for row, (image, mask) in enumerate(progress):
        images[row], masks[row] = image, mask
    return images, masks


def decode_resized(dataset: SegmentationDataset, record: Record, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One record decoded and resized as the cache stores it: image (C, size, size), mask (size, size)."""
    image, mask = read_sample(dataset, record)
    pixels = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    resized = np.asarray(pixels.resize((size, size), Image.Resampling.BILINEAR))
    resized = resized.reshape(size, size, image.shape[2]).transpose(2, 0, 1)
    return resized, np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST))
