"""A tiny DAGM 2007 tree in the official layout, to test and smoke-run the DAGM loader.

    from tests.dagm_fixture import make_dagm_fixture
    make_dagm_fixture(data_root)                       # data_root/DAGM_data/Class1/...
    make_dagm_fixture(data_root, kaggle_nested=True)   # data_root/DAGM_data/DAGM_KaggleUpload/Class1/...

Every ``Class{1..10}/{Train,Test}`` folder gets ``images_per_class`` textured ``NNNN.PNG`` images
(all but the last defective, with a 0/255 ellipse mask ``Label/NNNN_label.PNG`` and a darker
ellipse in the image) and a ``Label/Labels.txt``: a header line, then tab-separated rows
``<index> <defective 0|1> <image> 0 <mask file|0>``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

NUM_CLASSES = 10


def make_dagm_fixture(
    root: Path, kaggle_nested: bool = False, images_per_class: int = 3, size: int = 64
) -> Path:
    """Write the tree under ``root/DAGM_data`` (``root`` is the data root); return that folder."""
    dataset = Path(root) / "DAGM_data"
    tree = dataset / "DAGM_KaggleUpload" if kaggle_nested else dataset
    rng = np.random.default_rng(2007)
    for k in range(1, NUM_CLASSES + 1):
        for split in ("Train", "Test"):
            folder = tree / f"Class{k}" / split
            (folder / "Label").mkdir(parents=True, exist_ok=True)
            rows = []
            for i in range(1, images_per_class + 1):
                name = f"{i:04d}.PNG"
                defective = i < images_per_class or images_per_class == 1
                mask = _ellipse(rng, size) if defective else np.zeros((size, size), np.uint8)
                texture = rng.normal(128, 20, size=(size, size)) - 0.25 * mask
                Image.fromarray(np.clip(texture, 0, 255).astype(np.uint8)).save(folder / name)
                mask_name = f"{i:04d}_label.PNG" if defective else "0"
                if defective:
                    Image.fromarray(mask).save(folder / "Label" / mask_name)
                rows.append(f"{i}\t{int(defective)}\t{name}\t0\t{mask_name}")
            (folder / "Label" / "Labels.txt").write_text("1\n" + "\n".join(rows) + "\n")
    return dataset


def _ellipse(rng: np.random.Generator, size: int) -> np.ndarray:
    """A 0/255 mask with one ellipse."""
    canvas = Image.new("L", (size, size))
    x, y = rng.uniform(0.3, 0.7, size=2) * size
    rx, ry = rng.uniform(0.08, 0.2, size=2) * size
    ImageDraw.Draw(canvas).ellipse([x - rx, y - ry, x + rx, y + ry], fill=255)
    return np.asarray(canvas)
