"""Atomic file writes: a reader sees the old file or the complete new one, never half of one."""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def write_yaml(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(yaml.safe_dump(data, sort_keys=False)))


def save_torch(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: torch.save(data, tmp))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
