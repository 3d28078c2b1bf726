"""Exclusive locks on run directories (and GPUs) that hold across processes, hosts and Dask workers.

A lock is a small file created with ``O_CREAT | O_EXCL``: exactly one creator succeeds, on a
local disk and on NFS (v3 and later) alike. It holds the owner's pid, host, start time and a
random token, and its owner refreshes its modification time every ``HEARTBEAT_SECONDS`` from a
daemon thread. A lock is *stale*, and may be broken, when

* its owner ran on this host and that pid no longer exists (a killed or crashed run), or
* it has not been refreshed for ``stale_after`` seconds (owner on another host that died, or a
  pid reused by an unrelated process), or
* it cannot be read as an owner record (empty or garbled: its creator was killed between creating
  and writing it) and is older than ``UNREADABLE_GRACE_SECONDS``, or
* its owner ran on another host and the lock's ``owner_alive`` check says it is gone (on Dask: the
  owner record names a worker of this scheduler that the scheduler no longer lists).

An owner on another host that no check can vouch for is *unverified* (``FileLock.verdict`` is
None): a dead host's lock holds until it is ``stale_after`` old, and callers say so.

Breaking a stale lock is itself guarded by a ``<lock>.break`` file (also O_EXCL), so two
processes that both find the same stale lock cannot remove a fresh lock the other just created.

Why not ``fcntl.flock``: flock locks vanish with their process (no stale locks), but on NFS they
are emulated with byte-range locks that depend on the server's lock manager, and they are not
honoured at all on several shared filesystems (some FUSE, CIFS and Lustre mounts), where two
Dask workers on different machines would both get the lock. An O_EXCL file with a heartbeat
works wherever file creation is atomic, and a reader can see who holds it and since when.
Clocks: the staleness age compares the local clock with the file's mtime; hosts sharing a
results directory need clocks within a few minutes of each other (NTP).
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 600.0  # a lock not refreshed for this long is stale, whatever its host
BREAK_GUARD_STALE_SECONDS = 60.0  # a breaker that died mid-break leaves its guard this long at most
UNREADABLE_GRACE_SECONDS = 10.0  # an owner writes its record within milliseconds of creating the lock


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs; a zombie (dead, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    if not Path("/proc/self/stat").exists():
        return True  # no /proc (not Linux): a zombie cannot be told apart
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:  # gone meanwhile
        return False
    return state != "Z"


def _create_exclusive(path: Path, content: bytes) -> bool:
    """Create ``path`` with ``content`` if it does not exist; False if it does."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _read(path: Path) -> tuple[bytes, float] | None:
    """(content, mtime) of ``path``, or None if it does not exist."""
    try:
        with open(path, "rb") as handle:
            content = handle.read()
            return content, os.fstat(handle.fileno()).st_mtime
    except FileNotFoundError:
        return None


def _parse(content: bytes) -> dict[str, Any] | None:
    """The owner record, or None if ``content`` is not one (being written by its creator, or garbage)."""
    try:
        owner = json.loads(content)
    except ValueError:
        return None
    valid = isinstance(owner, dict) and isinstance(owner.get("pid"), int) and owner["pid"] > 0 and isinstance(owner.get("host"), str)
    return owner if valid else None


def describe_owner(owner: dict[str, Any] | None) -> str:
    if owner is None:
        return f"an unreadable lock file (being created, or left by a killed process: broken once {UNREADABLE_GRACE_SECONDS:.0f} s old)"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
    worker = f" (Dask worker {owner['dask_worker']})" if owner.get("dask_worker") else ""
    return f"pid {owner.get('pid')} on {owner.get('host')}{worker} since {started}"


OwnerCheck = Callable[[dict[str, Any]], bool | None]  # owner record -> alive, gone, or None: cannot tell


class FileLock:
    """An exclusive, heartbeat-refreshed lock file; ``acquire()`` never blocks."""

    def __init__(
        self,
        path: Path,
        heartbeat: float = HEARTBEAT_SECONDS,
        stale_after: float = STALE_AFTER_SECONDS,
        identity: dict[str, Any] | None = None,
        owner_alive: OwnerCheck | None = None,
    ) -> None:
        """``identity``: extra fields of the owner record this object writes (e.g. its Dask worker);
        ``owner_alive``: tells whether an owner on another host is alive (True), gone (False) or cannot be told (None)."""
        if heartbeat >= stale_after:
            raise ValueError(f"heartbeat ({heartbeat} s) must be shorter than stale_after ({stale_after} s)")
        self.path = Path(path)
        self.heartbeat, self.stale_after = heartbeat, stale_after
        self.identity, self.owner_alive = dict(identity or {}), owner_alive
        self.token: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self.token is not None

    def owner(self) -> dict[str, Any] | None:
        """The current owner record (pid, host, started, token), or None if unlocked or unreadable."""
        found = _read(self.path)
        return None if found is None else _parse(found[0])

    def is_live(self) -> bool:
        """Whether the lock file exists and is not stale; only reads (breaks nothing)."""
        found = _read(self.path)
        return found is not None and not self._is_stale(*found)

    def acquire(self) -> bool:
        """Take the lock; False if a live owner holds it. Stale locks are broken on the way."""
        if self.held:
            raise RuntimeError(f"lock {self.path} is already held by this object")
        for _ in range(5):
            token = uuid.uuid4().hex
            record = {**self.identity, "pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "token": token}
            if _create_exclusive(self.path, json.dumps(record).encode()):
                self.token = token
                self._start_heartbeat()
                return True
            found = _read(self.path)
            if found is not None and not self._is_stale(*found):
                return False
            if found is not None:
                self._break(found[0])
        return False

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if this object still owns it."""
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        owner = self.owner()
        if owner is not None and owner.get("token") == self.token:
            self.path.unlink(missing_ok=True)
        self.token, self._thread = None, None

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def verdict(self, owner: dict[str, Any]) -> bool | None:
        """Whether ``owner`` still runs: its pid on this host, ``owner_alive`` elsewhere; None where nothing can tell."""
        if owner["host"] == socket.gethostname():
            return _pid_alive(owner["pid"])
        return None if self.owner_alive is None else self.owner_alive(owner)

    def age(self) -> float | None:
        """Seconds since the owner last refreshed the lock; None if there is no lock."""
        found = _read(self.path)
        return None if found is None else time.time() - found[1]

    def _is_stale(self, content: bytes, mtime: float) -> bool:
        age = time.time() - mtime
        if age > self.stale_after:
            return True
        owner = _parse(content)
        if owner is None:
            return age > UNREADABLE_GRACE_SECONDS
        return self.verdict(owner) is False

    def _break(self, stale_content: bytes) -> None:
        """Remove the lock if it still is the stale one we saw; one breaker at a time."""
        guard = self.path.with_name(self.path.name + ".break")
        if not _create_exclusive(guard, str(os.getpid()).encode()):
            found = _read(guard)
            if found is not None and time.time() - found[1] > BREAK_GUARD_STALE_SECONDS:
                guard.unlink(missing_ok=True)
            else:
                time.sleep(0.05)
            return
        try:
            current = _read(self.path)
            if current is not None and current[0] == stale_content and self._is_stale(*current):
                self.path.unlink(missing_ok=True)
        finally:
            guard.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {self.path}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return


@contextmanager
def lease_device(devices: list[str], lock_dir: Path, poll_seconds: float = 2.0) -> Iterator[str]:
    """Hold one of ``devices`` (e.g. ``cuda:0``) exclusively on this host; waits while all are taken.

    ``lock_dir`` must be local to the host (device names are per host), e.g. the temp directory.
    """
    if not devices:
        raise ValueError("lease_device needs at least one device")
    Path(lock_dir).mkdir(parents=True, exist_ok=True)
    while True:
        for device in devices:
            lock = FileLock(Path(lock_dir) / f"{device.replace(':', '')}.lock")
            if lock.acquire():
                try:
                    yield device
                finally:
                    lock.release()
                return
        time.sleep(poll_seconds)
