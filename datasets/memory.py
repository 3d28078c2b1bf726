"""Memory that decoded arrays need, checked before decoding: an image size too large for this machine is
one error naming the need, not a failed allocation halfway through."""
from __future__ import annotations

from pathlib import Path

from .base import DatasetError

MEMINFO = Path("/proc/meminfo")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``); None where unknown."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_decoded_memory(name: str, count: int, channels: int, size: int, copies: int) -> None:
    """DatasetError if ``copies`` of ``count`` images of ``channels`` x ``size``² uint8 and their masks need more
    memory than is available (decoded arrays, then a run's parts: 1 copy at a time with a cache, which is
    memory-mapped, 2 without)."""
    needed = copies * count * (channels + 1) * size * size
    available = available_memory()
    if available is not None and needed > available:
        raise DatasetError(
            f"{name} at {size} px needs about {needed / 2**30:.1f} GiB of memory ({count} images and masks, decoded), "
            f"{available / 2**30:.1f} GiB are available: lower train.image_size"
        )
