"""Result files written atomically (see ``datasets.atomic``): a reader sees the old file or the new one."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml

from datasets.atomic import atomic_open


def write_json(path: Path, data: Any) -> None:
    with atomic_open(Path(path), "w") as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_yaml(path: Path, data: Any) -> None:
    with atomic_open(Path(path), "w") as handle:
        handle.write(yaml.safe_dump(data, sort_keys=False))


def save_torch(path: Path, data: Any) -> None:
    with atomic_open(Path(path), "wb") as handle:
        torch.save(data, handle)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
