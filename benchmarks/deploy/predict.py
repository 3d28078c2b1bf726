"""Apply a trained network to a folder of new images: masks at each image's own size, overlays, defect areas.

Writes under ``out``:

    masks/<stem>.png     class ids (uint8; 0 background, then the classes in the order of the run's dataset)
    overlays/<stem>.png  the image with each defect class painted half-transparent in its colour
                         (the palette of the run pictures, ``benchmarks.engine.pictures``)
    areas.csv            one row per image: file, width, height, then per defect class and for all
                         defects together the pixel count and the fraction of the image

Each image is resized to the run's training size as in training, the network's default prediction
(logits) is resized back to the image's size (bilinear) and its argmax taken, so every mask has the
size of its image. Images are read and predicted in batches. Files without an image suffix
(``datasets.custom.IMAGE_SUFFIXES``) are left out and named; an image that cannot be read is named
and skipped: ``Outcome.unreadable`` lists them for the caller to fail on.
"""
from __future__ import annotations

import csv
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from defectseg.datasets.atomic import atomic_open
from defectseg.datasets.base import DatasetError
from defectseg.datasets.custom import IMAGE_SUFFIXES
from defectseg.datasets.imagefiles import decode_image
from defectseg.methods import ConfigError

from defectseg.benchmarks.deploy.network import Network
from defectseg.benchmarks.engine.pictures import colorize

MASKS, OVERLAYS, AREAS = "masks", "overlays", "areas.csv"
OVERLAY_ALPHA = 0.5
PNG_LEVEL = 1  # zlib level of the PNGs written: 2.5x faster than PIL's default 6 for an overlay, lossless either way
UPSAMPLE_ELEMENTS = 1 << 26  # logits resized to image size at once: at most 64 M floats (256 MB)


@dataclass
class Outcome:
    """What ``predict_folder`` did: images predicted, images it could not read (messages), files left out."""

    predicted: list[Path] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)


def list_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) of ``folder`` (not its subfolders; hidden files skipped), sorted; a
    ConfigError if the folder is missing, holds no image, or two images share a stem (their outputs would clash)."""
    if not Path(folder).is_dir():
        raise ConfigError(f"--images {folder} is not a folder")
    files = sorted(path for path in Path(folder).iterdir() if path.is_file() and not path.name.startswith("."))
    images = [path for path in files if path.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise ConfigError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    stems: dict[str, Path] = {}
    for path in images:
        if path.stem in stems:
            raise ConfigError(f"{stems[path.stem]} and {path} share the stem {path.stem!r}, so their masks would share a name: rename one")
        stems[path.stem] = path
    return images, [path for path in files if path not in images]


def predict_folder(network: Network, folder: Path, out: Path, batch_size: int = 32, progress: bool = True) -> Outcome:
    """Predict every image of ``folder`` into ``out`` (module docstring); returns what was done."""
    images, ignored = list_images(folder)
    outcome = Outcome(ignored=ignored)
    defect_names = network.class_names[1:]
    rows = []
    with ThreadPoolExecutor(max_workers=2) as pool, tqdm(total=len(images), unit="image", disable=not progress, desc="predict") as bar:
        for batch in _decoded_batches(images, network.in_channels, batch_size, pool):
            readable = [(path, image) for path, image in batch if not isinstance(image, str)]
            outcome.unreadable += [image for _, image in batch if isinstance(image, str)]
            if readable:
                masks = predict_masks(network, [image for _, image in readable])
                rows += pool.map(lambda item: _write(item[0][0], item[0][1], item[1], out, len(network.class_names)), zip(readable, masks))
                outcome.predicted += [path for path, _ in readable]
            bar.update(len(batch))
    with atomic_open(Path(out) / AREAS, "w") as file:
        writer = csv.writer(file)
        writer.writerow(["image", "width", "height", *(f"{name}_{unit}" for name in (*defect_names, "defect") for unit in ("pixels", "fraction"))])
        writer.writerows(rows)
    return outcome


@torch.inference_mode()
def predict_masks(network: Network, images: list[np.ndarray]) -> list[np.ndarray]:
    """Class-id masks (uint8, each the size of its image) of uint8 images (H, W, C) of any sizes.

    The logits of images of one size are resized together, ``UPSAMPLE_ELEMENTS`` at most at a time.
    """
    logits = network.method.predict(network.inputs(images)).float()
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        by_size.setdefault(image.shape[:2], []).append(index)
    masks: dict[int, np.ndarray] = {}
    for size, indices in by_size.items():
        step = max(1, UPSAMPLE_ELEMENTS // (logits.shape[1] * size[0] * size[1]))
        for start in range(0, len(indices), step):
            chunk = indices[start : start + step]
            scores = logits[chunk]
            if tuple(scores.shape[2:]) != size:
                scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
            masks.update(zip(chunk, scores.argmax(1).to(torch.uint8).cpu().numpy()))
    return [masks[index] for index in range(len(images))]


def _decoded_batches(paths: list[Path], channels: int, batch_size: int, pool: ThreadPoolExecutor) -> Iterator[list[tuple[Path, np.ndarray | str]]]:
    """Batches of (path, decoded image or the error naming it), the next batch decoding while one is predicted."""
    chunks = [paths[start : start + batch_size] for start in range(0, len(paths), batch_size)]
    pending = pool.submit(_decode_all, chunks[0], channels)
    for following in [*chunks[1:], None]:
        batch = pending.result()
        if following is not None:
            pending = pool.submit(_decode_all, following, channels)
        yield batch


def _decode_all(paths: list[Path], channels: int) -> list[tuple[Path, np.ndarray | str]]:
    decoded: list[tuple[Path, np.ndarray | str]] = []
    for path in paths:
        try:
            decoded.append((path, decode_image(path, channels)))
        except DatasetError as error:
            decoded.append((path, str(error)))
    return decoded


def _write(path: Path, image: np.ndarray, mask: np.ndarray, out: Path, num_classes: int) -> list[object]:
    """Write the mask and the overlay of one image; its row of areas.csv."""
    for folder, picture in ((MASKS, Image.fromarray(mask)), (OVERLAYS, _overlay(image, mask))):
        target = Path(out) / folder / f"{path.stem}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        picture.save(target, compress_level=PNG_LEVEL)
    counts = np.bincount(mask.ravel(), minlength=num_classes)
    pixels = [*counts[1:].tolist(), int(counts[1:].sum())]
    return [path.name, mask.shape[1], mask.shape[0], *(value for count in pixels for value in (count, round(count / mask.size, 6)))]


def _overlay(image: np.ndarray, mask: np.ndarray) -> Image.Image:
    """The image in RGB with defect pixels blended with their class colour."""
    rgb = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).convert("RGB")
    colours = Image.fromarray(colorize(torch.from_numpy(mask)))
    return Image.composite(Image.blend(rgb, colours, OVERLAY_ALPHA), rgb, Image.fromarray(mask > 0))
