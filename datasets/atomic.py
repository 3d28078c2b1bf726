"""Atomic file writes: write a temporary file next to the target, then os.replace it.

The temporary file is created with mode 0666 minus the process umask, like any ``open()``, so
results in a shared folder stay readable by the group or others as the user's umask allows. A
write that fails (no space left, a read-only folder) leaves the previous file as it was and
raises an OSError naming the target, not the temporary file.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` on success and is deleted on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise _naming(error, path, temporary) from error
    try:
        with os.fdopen(descriptor, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _naming(error, path, temporary) from error
        raise


def _naming(error: OSError, path: Path, temporary: Path) -> OSError:
    """``error`` about ``path``, where it names the temporary file or no file (a failed write); else unchanged."""
    if error.filename not in (None, str(temporary)):
        return error
    return OSError(error.errno, error.strerror or str(error), str(path))


def write_once(path: Path, data: bytes) -> bytes:
    """Create ``path`` holding ``data`` unless it exists; return what ``path`` holds afterwards.

    Of several processes racing to create the file, the first one's bytes stand and every process
    returns them: the content is complete in a temporary file before it is linked into place.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(temporary, "xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return path.read_bytes()
    finally:
        temporary.unlink(missing_ok=True)
    return data
