"""Dataset registry: names -> dataset classes, construction from a data root and options."""
from __future__ import annotations

import inspect
import os

from .base import DatasetError, Record, SegmentationDataset, resolve_data_root
from .custom import CustomDataset
from .dagm import DAGM
from .mtiles import MTiles
from .neu import NEUSeg
from .synthetic import SyntheticDefects

DATASETS: dict[str, type[SegmentationDataset]] = {
    cls.name: cls for cls in (NEUSeg, MTiles, DAGM, SyntheticDefects, CustomDataset)
}

__all__ = [
    "DATASETS",
    "DatasetError",
    "Record",
    "SegmentationDataset",
    "available_datasets",
    "get_dataset",
]


def get_dataset(
    name: str, data_root: str | os.PathLike | None = None, **options: object
) -> SegmentationDataset:
    """The dataset ``name`` under ``data_root`` (see resolve_data_root) built with ``options``."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    cls = DATASETS[name]
    valid = _option_names(cls)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise DatasetError(
            f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; "
            f"valid options: {', '.join(valid) or 'none'}"
        )
    if _needs_root(cls):
        return cls(resolve_data_root(data_root), **options)
    return cls(**options)


def available_datasets(data_root: str | os.PathLike | None = None) -> list[str]:
    """Names of the datasets usable now: generated ones always, others if their folder exists (never
    ``folder``, whose folder its options name)."""
    root = resolve_data_root(data_root)
    return [name for name, cls in DATASETS.items() if not _needs_root(cls) or (cls.folder and (root / cls.folder).is_dir())]


def _parameters(cls: type[SegmentationDataset]) -> list[str]:
    return list(inspect.signature(cls.__init__).parameters)[1:]  # drop self


def _needs_root(cls: type[SegmentationDataset]) -> bool:
    return "root" in _parameters(cls)


def _option_names(cls: type[SegmentationDataset]) -> list[str]:
    return [name for name in _parameters(cls) if name != "root"]
