"""The run lock: one process at a time trains a run folder, a grid's worker or a lone ``train`` alike.

``claimed(directory)`` holds ``<run dir>/.lock`` (``benchmarks.engine.locks.FileLock``) for its body,
or raises ``RunHeldError`` naming the owner. An owner is *verified* when something here can tell
that it runs: its pid on this host, or a Dask worker its scheduler still lists. An owner on
another host that nothing can check is *unverified*: its host may be gone, and its lock holds
until it has not been refreshed for ``STALE_AFTER_SECONDS``.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.io import ResultsError
from defectseg.benchmarks.engine.locks import STALE_AFTER_SECONDS, FileLock, OwnerCheck, describe_owner


class RunHeldError(ResultsError):
    """Another process holds the run's lock; ``holder`` names it, ``verified`` says whether it is known to run."""

    def __init__(self, directory: Path, owner: dict[str, Any] | None, verified: bool, age: float | None) -> None:
        self.directory, self.owner, self.verified = Path(directory), owner, verified
        self.holder = describe_owner(owner)
        if verified:
            message = (f"{directory} is being trained by {self.holder}: not training it twice; "
                       "wait for it to finish (run_all.py status) or stop that process")
        else:
            refreshed = "?" if age is None else f"{age:.0f}"
            self.holder += (f", a host that cannot be checked from here (lock refreshed {refreshed} s ago; "
                            f"broken {STALE_AFTER_SECONDS / 60:.0f} min after its last refresh)")
            message = (f"{directory} is held by {self.holder}: if that host is gone, rerun once the lock is stale, "
                       f"or delete {directory / layout.LOCK} when you are sure nothing trains the run")
        super().__init__(message)


def _lock(directory: Path, identity: dict[str, Any] | None, owner_alive: OwnerCheck | None) -> FileLock:
    return FileLock(Path(directory) / layout.LOCK, identity=identity, owner_alive=owner_alive)


def _held(lock: FileLock, directory: Path) -> RunHeldError:
    owner = lock.owner()
    verified = owner is None or lock.verdict(owner) is not None  # None: an unreadable lock being created
    return RunHeldError(directory, owner, verified, lock.age())


@contextmanager
def claimed(directory: Path, identity: dict[str, Any] | None = None, owner_alive: OwnerCheck | None = None) -> Iterator[None]:
    """Hold the run folder's lock (creating the folder) for the body; RunHeldError if a live owner has it.

    ``identity`` and ``owner_alive``: see ``FileLock``.
    """
    Path(directory).mkdir(parents=True, exist_ok=True)
    lock = _lock(directory, identity, owner_alive)
    if not lock.acquire():
        raise _held(lock, directory)
    try:
        yield
    finally:
        lock.release()


def check_not_held(directory: Path) -> None:
    """RunHeldError if a live process holds the run folder's lock; reads only (for ``eval`` and pictures)."""
    lock = _lock(directory, None, None)
    if lock.is_live():
        raise _held(lock, directory)
