"""Images of the performance benchmark, and the reference loader that decodes them per sample.

Both paths read the same NEU-Seg files: the real ones when the data root has ``NEU_data/``, else
synthetic stand-ins written in NEU-Seg's layout (200x200 RGB JPEG images, PNG class-id masks), so
the reference path decodes the same kind of files either way.

The reference loader is how the original training scripts (SSL4MIS, on which the UAPS code is
built) feed a network: a torch DataLoader whose batch sampler puts labelled and unlabelled indices
in one batch, over a Dataset that opens and decodes the image and mask files with PIL at every
access, resizes them, flips/rotates them with numpy and normalises them, one sample at a time.
The fast path decodes the same files once into uint8 arrays (``datasets.cache``) and augments whole
batches as tensors (``datasets.transforms``).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from defectseg.datasets.base import DATA_ROOT_ENV, DatasetError, Record
from defectseg.datasets.cache import decode_resized  # the cache's decoder: identical pixels
from defectseg.datasets.neu import NEUSeg
from defectseg.datasets.synthetic import generate
from defectseg.datasets.transforms import to_float

from defectseg.benchmarks.engine.environment import REPO_ROOT

NEU_IMAGE_SIZE = 200
SHARED_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class PerfImages:
    """NEU-Seg training records split into a labelled and an unlabelled pool."""

    dataset: NEUSeg
    labeled: list[Record]
    unlabeled: list[Record]
    source: str  # where the files come from, for the report


def perf_data_root(data_root: Path | None) -> Path:
    """``data_root``, else $DEFECTSEG_DATA_ROOT, else ``../shared/data`` beside the repository."""
    if data_root is not None:
        return Path(data_root)
    return Path(os.environ.get(DATA_ROOT_ENV, SHARED_DATA_ROOT))


def perf_images(data_root: Path | None, labeled: int, unlabeled: int, standin_dir: Path) -> PerfImages:
    """The first ``labeled`` + ``unlabeled`` NEU-Seg training records (stand-ins if NEU-Seg is absent)."""
    root = perf_data_root(data_root)
    if (root / NEUSeg.folder).is_dir():
        source = f"NEU-Seg files under {root.resolve()}"
    else:
        root = write_standin(standin_dir, labeled + unlabeled)
        source = f"synthetic stand-ins in NEU-Seg's layout (no {NEUSeg.folder}/ under {perf_data_root(data_root)})"
    dataset = NEUSeg(root)
    train = [record for record in dataset.records() if record.subset == "train"]
    if len(train) < labeled + unlabeled:
        raise DatasetError(f"{dataset.path} has {len(train)} training images; the benchmark needs {labeled + unlabeled}")
    return PerfImages(dataset, train[:labeled], train[labeled : labeled + unlabeled], source)


def write_standin(root: Path, count: int, seed: int = 0) -> Path:
    """Write ``count`` synthetic training images (+1 test image) in NEU-Seg's layout under ``root``.

    Existing files are kept, so a folder written once serves every configuration.
    """
    for subset, number in (("training", count), ("test", 1)):
        images, masks = root / NEUSeg.folder / "images" / subset, root / NEUSeg.folder / "annotations" / subset
        images.mkdir(parents=True, exist_ok=True)
        masks.mkdir(parents=True, exist_ok=True)
        for index in range(number):
            stem = f"{subset}_{index:05d}"
            if (images / f"{stem}.jpg").is_file() and (masks / f"{stem}.png").is_file():
                continue
            gray, mask = generate(np.random.Generator(np.random.PCG64([seed, index])), NEU_IMAGE_SIZE)
            Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2)).save(images / f"{stem}.jpg", quality=95)
            Image.fromarray(mask).save(masks / f"{stem}.png")
    return root


def numpy_flip_rot90(image: np.ndarray, mask: np.ndarray, coins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip, vertical flip, rot90 of one (C, H, W) image and its (H, W) mask where ``coins`` say.

    The same three transforms, in the same order, as ``datasets.transforms.random_flip_rot90``.
    """
    ops = (
        lambda x: np.flip(x, -1),
        lambda x: np.flip(x, -2),
        lambda x: np.rot90(x, 1, axes=(-2, -1)),
    )
    for coin, op in zip(coins, ops):
        if coin:
            image, mask = op(image), op(mask)
    return image, mask


class ReferenceDataset(Dataset):
    """Per access: decode one record's files (PIL), resize, flip/rot90 with numpy, normalise."""

    def __init__(self, dataset: NEUSeg, records: list[Record], size: int, seed: int = 0) -> None:
        self.dataset, self.records, self.size = dataset, records, size
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.load(index, self.rng.random(3) < 0.5)

    def load(self, index: int, coins: np.ndarray) -> tuple[Tensor, Tensor]:
        """Float image (C, H, W) normalised like the fast path, and int64 mask (H, W)."""
        image, mask = decode_resized(self.dataset, self.records[index], self.size)
        image, mask = numpy_flip_rot90(image, mask, coins)
        return to_float(torch.from_numpy(np.ascontiguousarray(image))), torch.from_numpy(mask.astype(np.int64))


class TwoStreamBatches(Sampler[list[int]]):
    """``labeled_batch`` random labelled indices then ``unlabeled_batch`` unlabelled ones, per batch.

    Indices ``[0, labeled_count)`` are labelled, the next ``unlabeled_count`` unlabelled (as in
    SSL4MIS's TwoStreamBatchSampler, drawn here without an epoch structure).
    """

    def __init__(self, labeled_count: int, unlabeled_count: int, labeled_batch: int, unlabeled_batch: int, batches: int, seed: int) -> None:
        self.counts = (labeled_count, unlabeled_count)
        self.batch_sizes = (labeled_batch, unlabeled_batch)
        self.batches, self.seed = batches, seed

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed)
        (nl, nu), (bl, bu) = self.counts, self.batch_sizes
        for _ in range(self.batches):
            labeled = torch.randperm(nl, generator=generator)[:bl]
            unlabeled = nl + torch.randperm(nu, generator=generator)[:bu]
            yield torch.cat([labeled, unlabeled]).tolist()


def _seed_worker(worker_id: int) -> None:
    """Give every worker its own numpy stream (else all workers would draw the same flips)."""
    info = get_worker_info()
    info.dataset.rng = np.random.default_rng(info.seed)


def reference_loader(
    images: PerfImages, size: int, labeled_batch: int, unlabeled_batch: int, batches: int, workers: int, pin_memory: bool, seed: int = 0
) -> DataLoader:
    """DataLoader yielding (images (Bl+Bu, C, H, W) float, masks (Bl+Bu, H, W) int64), labelled first."""
    dataset = ReferenceDataset(images.dataset, images.labeled + images.unlabeled, size, seed)
    sampler = TwoStreamBatches(len(images.labeled), len(images.unlabeled), labeled_batch, unlabeled_batch, batches, seed)
    return DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, pin_memory=pin_memory,
        worker_init_fn=_seed_worker if workers > 0 else None,
    )
