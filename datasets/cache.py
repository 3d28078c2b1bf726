"""Decode a dataset once per resolution into uint8 arrays, optionally cached as .npy files.

Images are resized to ``size`` x ``size`` bilinearly and masks by nearest neighbour (PIL,
``resize`` "bilinear"), or both by OpenCV's nearest-neighbour rule (``resize`` "nearest": what the
UAPS and simEps code's ``A.Resize(256, 256, interpolation=cv2.INTER_NEAREST)`` does to both).
Every record is validated while decoding (unreadable files, image/mask size mismatch, mask
values outside the classes all raise DatasetError). With a ``cache_dir`` the arrays are stored
as ``<name>_<size>px_<key>_{images,masks}.npy`` (written atomically), where ``key`` hashes the
uids, the size and mtime of every file and the dataset options, and later loads memory-map them.

``<name>_<size>px_<key>.json``, written after both arrays, is their manifest: the key (the
source files' fingerprint), and per array its shape, dtype, byte size and CRC-32. Every load
checks them all before memory-mapping (CRC-32 runs at several GB/s: ~0.15 s for NEU-Seg at 256
px); a cache file that does not match (garbage, truncated, another dataset's) is named on stderr
and decoded again, so nothing trains on a damaged cache.
"""
from __future__ import annotations

import hashlib
import json
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from PIL import Image
from tqdm import tqdm

from .atomic import atomic_open
from .base import NO_MASK, UNLABELED, DatasetError, Record, SegmentationDataset
from .memory import check_decoded_memory

CACHE_VERSION = 2  # bump when decoding changes (2: arrays verified against a manifest)
ARRAYS = ("images", "masks")
CHUNK_BYTES = 1 << 24
RESIZES = ("bilinear", "nearest")  # train.resize


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
    resize: str = "bilinear",
) -> ArrayBundle:
    """``records`` decoded at ``size`` px with ``resize`` (one of ``RESIZES``), from ``cache_dir`` if cached there (memory-mapped).

    ``n_jobs`` > 1 decodes in that many threads.
    """
    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {RESIZES}, got {resize!r}")
    check_decoded_memory(dataset.name, len(records), dataset.in_channels, size, copies=1 if cache_dir else 2)
    uids = [record.uid for record in records]
    if cache_dir is None:
        return ArrayBundle(*_decode(dataset, records, size, n_jobs, resize), uids)
    key = cache_key(dataset, records, size, resize)
    stem = Path(cache_dir) / f"{dataset.name}_{size}px_{key}"
    shapes = {"images": (len(records), dataset.in_channels, size, size), "masks": (len(records), size, size)}
    cached = stem.with_suffix(".json").is_file()  # the manifest is written last
    problem = _cache_problem(stem, key, shapes) if cached else None
    if problem:
        print(f"note: {problem}: decoding {dataset.name} at {size} px again", file=sys.stderr)
    if problem or not cached:
        arrays = dict(zip(ARRAYS, _decode(dataset, records, size, n_jobs, resize)))
        try:
            _write_cache(stem, key, arrays)
        except OSError as error:  # a read-only or full cache folder: the run goes on without the cache
            print(f"note: cannot write the cache ({error.filename}: {error.strerror}): {dataset.name} at {size} px "
                  "is decoded in memory, not cached", file=sys.stderr)
            return ArrayBundle(arrays["images"], arrays["masks"], uids)
    images, masks = (np.load(_array_path(stem, name), mmap_mode="r") for name in ARRAYS)
    return ArrayBundle(images, masks, uids)


def _array_path(stem: Path, name: str) -> Path:
    return stem.with_name(f"{stem.name}_{name}.npy")


def _write_cache(stem: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Both arrays, then the manifest describing them (each file atomically)."""
    manifest: dict[str, object] = {"version": CACHE_VERSION, "source_fingerprint": key}
    for name, array in arrays.items():
        path = _array_path(stem, name)
        with atomic_open(path) as file:
            np.save(file, array)
        manifest[name] = {"shape": list(array.shape), "dtype": str(array.dtype), "bytes": path.stat().st_size, "crc32": _crc32(path)}
    with atomic_open(stem.with_suffix(".json"), "w") as file:
        json.dump(manifest, file, indent=1)


def _cache_problem(stem: Path, key: str, shapes: dict[str, tuple[int, ...]]) -> str | None:
    """What is wrong with the cached arrays of ``stem`` against their manifest, naming the file; None if nothing."""
    path = stem.with_suffix(".json")
    try:
        manifest = json.loads(path.read_text())
        if manifest["source_fingerprint"] != key:
            return f"cache manifest {path} describes other source files"
        for name in ARRAYS:
            path = _array_path(stem, name)
            problem = _array_problem(path, manifest[name], shapes[name])
            if problem:
                return f"cache file {path} {problem}"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"cache file {path} cannot be checked ({error!r})"
    return None


def _array_problem(path: Path, expected: dict, shape: tuple[int, ...]) -> str | None:
    """What in ``path`` differs from its manifest entry ``expected`` and from ``shape`` (uint8)."""
    if not path.is_file():
        return "is not a file (a folder?): move it away"
    if path.stat().st_size != expected["bytes"]:
        return f"has {path.stat().st_size} bytes, its manifest says {expected['bytes']} (truncated or overwritten)"
    if _crc32(path) != expected["crc32"]:
        return "fails its checksum (its CRC-32 differs from the manifest's: corrupted)"
    array = np.load(path, mmap_mode="r")
    if array.shape != shape or tuple(expected["shape"]) != shape or array.dtype != np.uint8 or expected["dtype"] != "uint8":
        return f"holds {array.dtype} {array.shape}, expected uint8 {shape}"
    return None


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            crc = zlib.crc32(chunk, crc)
    return crc


def cache_key(dataset: SegmentationDataset, records: Sequence[Record], size: int, resize: str = "bilinear") -> str:
    """Hash of what the decoded arrays depend on (16 hex digits); ``resize`` enters it unless "bilinear",
    so that the keys of bilinear caches are those from before ``resize`` existed."""
    content = {
        "version": CACHE_VERSION,
        "dataset": dataset.name,
        "options": dataset.options(),
        "size": size,
        "records": [[record.uid, _stat(record.image_path), _stat(record.mask_path)] for record in records],
    }
    if resize != "bilinear":
        content["resize"] = resize
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
    dataset: SegmentationDataset, records: Sequence[Record], size: int, n_jobs: int, resize: str
) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((len(records), dataset.in_channels, size, size), dtype=np.uint8)
    masks = np.empty((len(records), size, size), dtype=np.uint8)
    jobs = (delayed(decode_resized)(dataset, record, size, resize) for record in records)
    decoded = Parallel(n_jobs=n_jobs, prefer="threads", return_as="generator")(jobs)
    progress = tqdm(decoded, total=len(records), desc=f"decode {dataset.name} @{size}")
    for row, (image, mask) in enumerate(progress):
        images[row], masks[row] = image, mask
    return images, masks


def decode_resized(dataset: SegmentationDataset, record: Record, size: int, resize: str = "bilinear") -> tuple[np.ndarray, np.ndarray]:
    """One record decoded and resized (``resize``) as the cache stores it: image (C, size, size), mask (size, size).

    An image without a mask (``UNLABELED``) gets a mask of ``NO_MASK``, a value no class has.
    """
    if record.subset == UNLABELED:
        return resize_image(dataset.read_image(record), size, resize), np.full((size, size), NO_MASK, dtype=np.uint8)
    image, mask = read_sample(dataset, record)
    return resize_image(image, size, resize), resize_mask(mask, size, resize)


def resize_image(image: np.ndarray, size: int, resize: str = "bilinear") -> np.ndarray:
    """A uint8 image (H, W, C) resized to (C, size, size), as every network sees its input: bilinearly (PIL), or
    by OpenCV's nearest-neighbour rule (``resize`` "nearest")."""
    if resize == "nearest":
        return _nearest(image, size).transpose(2, 0, 1)
    pixels = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    resized = np.asarray(pixels.resize((size, size), Image.Resampling.BILINEAR))
    return resized.reshape(size, size, image.shape[2]).transpose(2, 0, 1)


def resize_mask(mask: np.ndarray, size: int, resize: str = "bilinear") -> np.ndarray:
    """A mask (H, W) resized to (size, size) by nearest neighbour: PIL's (pixel centres), or OpenCV's (``resize`` "nearest")."""
    if resize == "nearest":
        return _nearest(mask, size)
    return np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST))


def _nearest(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` (H, W, ...) resized to (size, size, ...) by OpenCV's INTER_NEAREST."""
    return array[nearest_indices(array.shape[0], size)][:, nearest_indices(array.shape[1], size)]


def nearest_indices(source: int, size: int) -> np.ndarray:
    """The source index of each of ``size`` output pixels under OpenCV's INTER_NEAREST: floor(i / (size / source)) in
    float64, at most ``source`` - 1 (``resizeNN``, imgproc/src/resize.cpp). PIL's nearest samples pixel centres instead."""
    scale = 1.0 / (size / source)
    return np.minimum(np.floor(np.arange(size) * scale).astype(np.int64), source - 1)
