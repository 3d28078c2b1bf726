"""A procedural defect segmentation set, generated deterministically from a seed (no files).

Each image is a 1-channel texture (smoothed noise + one or two faint gratings, random brightness)
with 1-3 defects of one class, its image-level label. Each class has its own look:

* 1 scratch: bright, long, nearly straight lines of even width;
* 2 pit: dark filled blobs with a wobbly outline;
* 3 crack: dark, jagged random walks that fork, narrower than scratches.

About 10% of the images are defect-free (label 0). Line widths and blob sizes scale with the image
size and stay at least 2 pixels wide when the image is halved (generated at 128 px, trained at 64
px), and every defect differs from the texture by 14-35% of the grey range (the texture's own
standard deviation is ~5%), so each class is visible and distinct at 64 px: 20 labelled images
and 80 steps of 8 give a U-Net about 0.7 test mIoU (the quick profile). Per-defect contrast,
per-pixel jitter, grain noise, textures and shapes vary, so it is not trivial either: a scratch
and a crack differ in brightness, width and straightness, a pit and a crack in shape only.
Image ``i`` depends only on ``(seed, i, image_size)``; records have no files.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .base import DatasetError, Record, SegmentationDataset

FREE_PROBABILITY = 0.1
SCRATCH, PIT, CRACK = 1, 2, 3
POLARITY = {SCRATCH: 1.0, PIT: -1.0, CRACK: -1.0}  # brighter (+) or darker (-) than the texture
GENERATOR_VERSION = 2  # bump when the pixels change (it is part of the decoded-array cache key)

Point = tuple[float, float]


class SyntheticDefects(SegmentationDataset):
    """``num_images`` procedural ``image_size``² grayscale images, generated lazily and cached."""

    name = "synthetic"
    class_names = ("background", "scratch", "pit", "crack")
    in_channels = 1
    folder = ""  # generated: nothing on disk
    test_fraction = 0.2
    val_fraction = 0.15

    def __init__(self, num_images: int = 300, image_size: int = 128, seed: int = 0) -> None:
        if num_images < 1 or image_size < 16:
            raise DatasetError(
                f"synthetic dataset needs num_images >= 1 and image_size >= 16, "
                f"got num_images={num_images}, image_size={image_size}"
            )
        self.num_images = num_images
        self.image_size = image_size
        self.seed = seed
        self._samples: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def options(self) -> dict[str, object]:
        """The constructor options and the generator version (both change the pixels)."""
        return {"num_images": self.num_images, "image_size": self.image_size, "seed": self.seed, "generator": GENERATOR_VERSION}

    def records(self) -> list[Record]:
        width = len(str(self.num_images - 1))
        return [
            Record(f"{index:0{width}d}", None, None, None, _draw_label(self._rng(index)))
            for index in range(self.num_images)
        ]

    def read_image(self, record: Record) -> np.ndarray:
        return self._sample(record)[0][:, :, None]

    def read_mask(self, record: Record) -> np.ndarray:
        return self._sample(record)[1]

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64([self.seed, index]))

    def _sample(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        index = int(record.uid) if record.uid.isdigit() else -1
        if not 0 <= index < self.num_images:
            raise DatasetError(f"record {record.uid!r} is not one of the {self.num_images} synthetic images")
        if index not in self._samples:
            self._samples[index] = generate(self._rng(index), self.image_size)
        return self._samples[index]


def generate(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One read-only (image, mask) pair, both uint8 (size, size); the label is drawn first."""
    label = _draw_label(rng)
    image = _texture(rng, size)
    canvas = Image.new("L", (size, size))  # pixel value: 1-based defect index
    draw = ImageDraw.Draw(canvas)
    count = 0 if label == 0 else int(rng.integers(1, 4))
    for defect in range(1, count + 1):
        _DRAWERS[label](draw, rng, size, defect)
    defects = np.asarray(canvas)
    if count:
        contrast = np.concatenate([[0.0], POLARITY[label] * rng.uniform(0.18, 0.35, size=count)])
        image += contrast[defects] * rng.uniform(0.8, 1.0, size=image.shape)
    image += rng.normal(0.0, rng.uniform(0.01, 0.04), size=image.shape)
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    mask = np.where(defects > 0, label, 0).astype(np.uint8)
    pixels.flags.writeable = mask.flags.writeable = False
    return pixels, mask


def _draw_label(rng: np.random.Generator) -> int:
    return 0 if rng.random() < FREE_PROBABILITY else int(rng.integers(1, 4))


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Float background: brightness + smoothed noise + one or two sinusoidal gratings."""
    cells = int(rng.integers(3, 10))
    coarse = Image.fromarray(rng.normal(size=(cells, cells)).astype(np.float32))  # mode "F"
    smooth = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64)
    image = rng.uniform(0.35, 0.65) + rng.uniform(0.02, 0.05) * smooth
    y, x = (axis / size for axis in np.ogrid[:size, :size])
    for _ in range(int(rng.integers(1, 3))):
        angle, frequency, phase = rng.uniform(0, np.pi), rng.uniform(3, 16), rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * frequency * (x * np.cos(angle) + y * np.sin(angle)) + phase)
        image = image + rng.uniform(0.01, 0.035) * wave
    return image


def _inside(rng: np.random.Generator, size: int, margin: float = 0.1) -> Point:
    low, high = margin * size, (1 - margin) * size
    return float(rng.uniform(low, high)), float(rng.uniform(low, high))


def _width(rng: np.random.Generator, size: int, low: float, high: float) -> int:
    """A line width of ``low``-``high`` times the image size, at least 4 px (2 px at half size)."""
    return max(4, round(rng.uniform(low, high) * size))


def _draw_scratch(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, fill: int) -> None:
    """A line across much of the image, bent slightly once."""
    (x, y), angle = _inside(rng, size), rng.uniform(0, 2 * np.pi)
    length, bend = rng.uniform(0.5, 0.9) * size, rng.normal(0, 0.03) * size
    dx, dy = np.cos(angle) * length, np.sin(angle) * length
    middle = (x + dx / 2 - np.sin(angle) * bend, y + dy / 2 + np.cos(angle) * bend)
    draw.line([(x, y), middle, (x + dx, y + dy)], fill=fill, width=_width(rng, size, 0.04, 0.06), joint="curve")


def _draw_pit(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, fill: int) -> None:
    """A filled, rotated ellipse with a wobbly outline."""
    (x, y), angle = _inside(rng, size), rng.uniform(0, np.pi)
    radii = rng.uniform(0.05, 0.11, size=2) * size
    theta = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    wobble = 1 + 0.15 * rng.normal(size=theta.size)
    u, v = radii[0] * np.cos(theta) * wobble, radii[1] * np.sin(theta) * wobble
    xs = x + u * np.cos(angle) - v * np.sin(angle)
    ys = y + u * np.sin(angle) + v * np.cos(angle)
    draw.polygon(list(zip(xs.tolist(), ys.tolist())), fill=fill)


def _draw_crack(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, fill: int) -> None:
    """A jagged random walk that forks into up to two shorter branches."""
    width = _width(rng, size, 0.03, 0.04)
    walks = [(_inside(rng, size, 0.2), rng.uniform(0, 2 * np.pi), int(rng.integers(15, 30)))]
    branches = 0
    while walks:
        (x, y), angle, steps = walks.pop()
        points = [(x, y)]
        for _ in range(steps):
            angle += rng.normal(0, 0.45)
            step = rng.uniform(0.015, 0.035) * size
            x, y = x + np.cos(angle) * step, y + np.sin(angle) * step
            points.append((x, y))
            if branches < 2 and rng.random() < 0.06:
                branches += 1
                walks.append(((x, y), angle + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2), steps // 2))
        draw.line(points, fill=fill, width=width, joint="curve")


_DRAWERS = {SCRATCH: _draw_scratch, PIT: _draw_pit, CRACK: _draw_crack}
