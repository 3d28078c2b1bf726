"""Dataset registry: names -> dataset classes, their options, construction from a data root and options."""
from __future__ import annotations

import inspect
import os
from typing import Any

from defectseg.options import ConfigError, Option, flag, integer, number, resolve_options, text

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
    "option_specs",
]


def get_dataset(
    name: str, data_root: str | os.PathLike | None = None, **options: object
) -> SegmentationDataset:
    """The dataset ``name`` under ``data_root`` (see resolve_data_root) built with ``options`` (checked: ConfigError)."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    cls = DATASETS[name]
    resolved = resolve_options(option_specs(name), options, f"dataset {name!r}")
    if _needs_root(cls):
        return cls(resolve_data_root(data_root), **resolved)
    return cls(**resolved)


def option_specs(name: str) -> dict[str, Option]:
    """The options of dataset ``name`` (a key of ``DATASETS``): its constructor's parameters with a default, each
    typed by its default and unbounded (the dataset checks ranges itself)."""
    return {
        key: _option_like(parameter.default, f"option {key!r} of dataset {name!r}")
        for key, parameter in inspect.signature(DATASETS[name].__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def _option_like(default: Any, where: str) -> Option:
    """The option a constructor default stands for: true/false, an integer, a number or a string."""
    if isinstance(default, bool):
        return flag(default)
    if isinstance(default, int):
        return integer(default, None)
    if isinstance(default, float):
        return number(default, None)
    if isinstance(default, str):
        return text(default)
    raise ConfigError(f"{where} cannot be set from a profile: its default {default!r} is not true/false, a number or a string")


def available_datasets(data_root: str | os.PathLike | None = None) -> list[str]:
    """Names of the datasets usable now: generated ones always, others if their folder exists (never
    ``folder``, whose folder its options name)."""
    root = resolve_data_root(data_root)
    return [name for name, cls in DATASETS.items() if not _needs_root(cls) or (cls.folder and (root / cls.folder).is_dir())]


def _parameters(cls: type[SegmentationDataset]) -> list[str]:
    return list(inspect.signature(cls.__init__).parameters)[1:]  # drop self


def _needs_root(cls: type[SegmentationDataset]) -> bool:
    return "root" in _parameters(cls)
