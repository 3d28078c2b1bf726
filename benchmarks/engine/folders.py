"""Filesystem errors in words: one line naming the path and the cause, for every command and run.

``describe_os_error`` turns an OSError (read-only file system, a file where a folder is expected,
no space left on device, permission denied, ...) into ``<path>: <cause>``; ``require_folder`` and
``writable_folder`` check a command's folder options before anything runs.
"""
from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

from defectseg.methods import ConfigError

CAUSES = {
    errno.ENOTDIR: "not a folder (a file stands where a folder is expected)",
    errno.EISDIR: "a folder, where a file is expected",
    errno.ENOSPC: "no space left on device",
}


def os_error_cause(error: OSError) -> str:
    """The cause of ``error`` in lower-case words, e.g. ``read-only file system``."""
    cause = CAUSES.get(error.errno) or error.strerror or str(error) or type(error).__name__
    return cause[:1].lower() + cause[1:]


def describe_os_error(error: OSError) -> str:
    """``<path>: <cause>`` (both paths of a rename or copy), or the cause alone when the error names no path."""
    paths = " -> ".join(str(path) for path in (error.filename, error.filename2) if path is not None)
    return f"{paths}: {os_error_cause(error)}" if paths else os_error_cause(error)


def error_reason(error: BaseException) -> str:
    """A failed run's reason: the error's type and message, a filesystem error as ``describe_os_error`` words it."""
    words = describe_os_error(error) if isinstance(error, OSError) else str(error)
    return f"{type(error).__name__}: {words}"


def require_folder(path: Path | None, option: str) -> None:
    """ConfigError if ``path`` (the value of ``option``), or the nearest of its parents that exists, is not a folder."""
    if path is None:
        return
    for candidate in (Path(path), *Path(path).parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "" if candidate == Path(path) else f" ({candidate} is)"
                raise ConfigError(f"{option} {path} is a file, not a folder{where}")
            return


def writable_folder(path: Path, option: str) -> None:
    """Create the folder ``path`` (the value of ``option``) if need be; a ConfigError naming the cause unless a file can be written there."""
    require_folder(path, option)
    probe = Path(path) / f".write-probe-{uuid.uuid4().hex[:12]}"
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"{option} {path} is not writable ({os_error_cause(error)})") from error
