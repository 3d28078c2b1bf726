"""The data of one run: its split of the dataset and the decoded uint8 tensors of each part."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from defectseg.datasets import get_dataset
from defectseg.datasets.base import NO_MASK, DatasetError
from defectseg.datasets.cache import ArrayBundle, load_arrays
from defectseg.datasets.splits import Split, make_split

from defectseg.benchmarks.engine.run import RunConfig, Workspace


@dataclass
class RunData:
    class_names: tuple[str, ...]
    in_channels: int
    split: Split
    labeled_images: Tensor  # uint8 (N, C, H, W)
    labeled_masks: Tensor  # uint8 (N, H, W)
    unlabeled_images: Tensor
    val_images: Tensor
    val_masks: Tensor
    test_images: Tensor
    test_masks: Tensor
    test_ids: list[str]  # uids of the test images, in the order of test_images
    val_ids: list[str]  # uids of the validation images, in the order of val_images


def load_run_data(run: RunConfig, workspace: Workspace) -> RunData:
    """Dataset (under the workspace's data root) -> split (``split_seed``, ``ratio``) -> decoded uint8 tensors
    of each subset (through the workspace's cache)."""
    dataset = get_dataset(run.dataset, workspace.data_root, **run.dataset_options)
    records = dataset.records()
    split = make_split(dataset, records, run.split_seed, run.ratio)
    bundle = load_arrays(dataset, records, run.train.image_size, workspace.cache_dir, resize=run.train.resize)

    def images(uids: list[str]) -> Tensor:
        return torch.from_numpy(bundle.subset(uids).images.copy())

    def masks(uids: list[str]) -> Tensor:
        return torch.from_numpy(labelled_masks(bundle, uids))

    max_val = run.train.val_max_images
    val_uids = split.val[:max_val] if max_val else split.val
    # with every training image labelled, the unlabelled stream reuses the labelled images
    unlabeled_uids = split.unlabeled or split.labeled
    return RunData(
        class_names=tuple(dataset.class_names),
        in_channels=dataset.in_channels,
        split=split,
        labeled_images=images(split.labeled),
        labeled_masks=masks(split.labeled),
        unlabeled_images=images(unlabeled_uids),
        val_images=images(val_uids),
        val_masks=masks(val_uids),
        test_images=images(split.test),
        test_masks=masks(split.test),
        test_ids=list(split.test),
        val_ids=list(val_uids),
    )


def labelled_masks(bundle: ArrayBundle, uids: list[str]) -> np.ndarray:
    """The masks of ``uids`` (a copy); a DatasetError if one is an image without a mask (``NO_MASK``),
    which must never be scored: it would count as labels no one drew."""
    masks = bundle.subset(uids).masks.copy()
    unlabelled = [uid for uid, bad in zip(uids, (masks == NO_MASK).reshape(len(masks), -1).any(1)) if bad]
    if unlabelled:
        raise DatasetError(f"{len(unlabelled)} image(s) without a mask were asked for as labelled, e.g. {unlabelled[:3]}")
    return masks
