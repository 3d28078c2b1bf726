"""Decode image and mask files into uint8 arrays; every failure is a DatasetError naming the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .base import DatasetError

MASK_THRESHOLD = 128  # grayscale masks: pixels >= this are defect
_MASK_MODES = ("L", "P", "1")  # single-channel modes; "1" is widened to 0/255


def decode_image(path: Path, channels: int) -> np.ndarray:
    """The image at ``path`` as uint8 (H, W, channels), converted to RGB (3) or grayscale (1)."""
    mode = {1: "L", 3: "RGB"}[channels]
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert(mode))
    except (OSError, ValueError, SyntaxError) as error:
        raise DatasetError(f"cannot read image {path}: {error}") from error
    return array.reshape(array.shape[0], array.shape[1], channels)


def decode_mask(path: Path) -> np.ndarray:
    """The single-channel mask at ``path`` as raw uint8 values (H, W)."""
    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.asarray(image.convert("L") if mode == "1" else image)
    except (OSError, ValueError, SyntaxError) as error:
        raise DatasetError(f"cannot read mask {path}: {error}") from error
    if mode not in _MASK_MODES:
        raise DatasetError(
            f"mask {path} has image mode {mode!r}; expected a single-channel mask "
            f"(one of {', '.join(_MASK_MODES)})"
        )
    return np.ascontiguousarray(array, dtype=np.uint8)


def check_mask_values(mask: np.ndarray, class_names: tuple[str, ...], path: Path) -> np.ndarray:
    """``mask`` unchanged if all values are class ids, else a DatasetError naming the offending values."""
    bad = np.unique(mask[mask >= len(class_names)])
    if bad.size:
        raise DatasetError(
            f"mask {path} has values {bad.tolist()} outside the classes "
            f"0..{len(class_names) - 1} ({', '.join(class_names)})"
        )
    return mask


def threshold_mask(raw: np.ndarray, class_id: int) -> np.ndarray:
    """Binary defect mask (raw >= MASK_THRESHOLD) painted with ``class_id``."""
    return np.where(raw >= MASK_THRESHOLD, class_id, 0).astype(np.uint8)
