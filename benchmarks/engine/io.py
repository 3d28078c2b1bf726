"""Result files written atomically (see ``datasets.atomic``): a reader sees the old file or the new one.

Readers raise ``ResultsError`` naming the file when it is not what a run writes (garbage, a
truncated copy, the wrong type), never a bare decoder error.
"""
from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from defectseg.datasets.atomic import atomic_open


class ResultsError(ValueError):
    """A results file that cannot be read as expected; the message names the file."""


def write_json(path: Path, data: Any) -> None:
    with atomic_open(Path(path), "w") as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_yaml(path: Path, data: Any) -> None:
    with atomic_open(Path(path), "w") as handle:
        handle.write(yaml.safe_dump(data, sort_keys=False))


def save_torch(path: Path, data: Any) -> None:
    """``torch.save`` atomically: serialised in memory first, so that a failed write (a full disk) is an
    OSError naming ``path``, and the previous file stays as it was."""
    buffer = io.BytesIO()
    torch.save(data, buffer)
    with atomic_open(Path(path), "wb") as handle:
        handle.write(buffer.getbuffer())


def load_torch(path: Path, **options: Any) -> Any:
    """``torch.load(path, **options)``; a ResultsError naming the file if it cannot be loaded."""
    try:
        return torch.load(path, **options)
    except Exception as error:  # noqa: BLE001 - a damaged file raises UnpicklingError, RuntimeError, EOFError, ...
        raise ResultsError(f"{path} cannot be loaded ({type(error).__name__}: {error})") from error


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; a ResultsError naming the file if it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise ResultsError(f"{path} is not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise ResultsError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def read_yaml(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path`` (a resolved run config); a ResultsError naming the file if it is not one."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (yaml.YAMLError, ValueError) as error:
        raise ResultsError(f"{path} is not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise ResultsError(f"{path} must hold a mapping (a resolved run config)")
    return data


def remove_stale(directory: Path, written: Sequence[Path], suffixes: Sequence[str]) -> list[Path]:
    """Delete the files in ``directory`` with one of ``suffixes`` that are not in ``written``: outputs of
    an earlier build that this build no longer makes (a figure now without data, a dataset's table
    whose runs moved away). Returns the deleted paths, for a note."""
    keep = {Path(path).resolve() for path in written}
    stale = sorted(path for path in Path(directory).glob("*") if path.is_file() and path.suffix in suffixes and path.resolve() not in keep)
    for path in stale:
        path.unlink()
    return stale
