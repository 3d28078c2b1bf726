"""The grid's Dask side: the scheduler address, the threads of each run, and whether a lock's Dask owner lives.

* ``check_address`` and ``connect``: a ConfigError of one line for an address Dask cannot parse or
  a scheduler that does not answer (checked before anything runs; no 30-second wait on a refused port).
* ``threads_per_run``: one number for every run of the grid, taken once at its start: each host's
  cores shared by its worker threads, the least over hosts. It travels with the runs' settings,
  so a run gets the same threads on any worker, a restarted one included (``train.num_threads``
  fixes it in the run's configuration instead).
* ``owner_check``: a lock owner that names a worker of this scheduler (``lock_identity``) is alive
  while the scheduler lists that worker with the owner's pid, and gone otherwise: a worker that
  died, or its host, frees its runs as soon as the scheduler has noticed, not 10 minutes later.
"""
from __future__ import annotations

import socket
from typing import Any

from defectseg.methods import ConfigError

from defectseg.benchmarks.engine.folders import os_error_cause
from defectseg.benchmarks.engine.locks import OwnerCheck

CONNECT_SECONDS = 10
PROBED_SCHEMES = ("tcp", "tls", "ws", "wss")  # served over TCP: a refused port is known at once


def check_address(address: str) -> None:
    """ConfigError unless Dask can parse ``address`` and, for a TCP-based scheme, something listens there."""
    from distributed.comm.addressing import get_address_host_port, parse_address

    try:
        scheme = parse_address(address)[0]
        host, port = get_address_host_port(address)
    except ValueError as error:
        raise ConfigError(f"--scheduler {address!r} is not a Dask scheduler address ({error}); expected e.g. tcp://10.0.0.5:8786") from error
    if scheme in PROBED_SCHEMES:
        try:
            socket.create_connection((host or "127.0.0.1", port), timeout=CONNECT_SECONDS).close()
        except OSError as error:
            raise ConfigError(f"cannot reach the Dask scheduler at {address} ({_cause(error)}): start it, or check the address") from error


def connect(address: str) -> Any:
    """A ``dask.distributed.Client`` of the scheduler at ``address``; a ConfigError if it is not one or does not answer."""
    from distributed import Client

    check_address(address)
    try:
        return Client(address, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError) as error:
        raise ConfigError(f"the Dask scheduler at {address} did not answer within {CONNECT_SECONDS} s ({_cause(error)})") from error


def _cause(error: BaseException) -> str:
    return os_error_cause(error) if isinstance(error, OSError) else str(error) or type(error).__name__


def scheduler_address(client: Any) -> str:
    """The scheduler's own address (the same string for every worker and client of it)."""
    return client.scheduler_info(n_workers=0)["address"]


def threads_per_run(client: Any, cores_of: Any) -> int:
    """CPU threads of each run: per host, its cores (``cores_of()`` run on each worker) // its worker threads; the least."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    cores = client.run(cores_of)
    threads: dict[str, int] = {}
    host_cores: dict[str, int] = {}
    for address, info in workers.items():
        threads[info["host"]] = threads.get(info["host"], 0) + int(info["nthreads"])
        host_cores[info["host"]] = int(cores.get(address, 1))
    return max(1, min((host_cores[host] // count for host, count in threads.items()), default=1))


def lock_identity(scheduler: str) -> dict[str, str]:
    """What a run lock taken on this Dask worker records besides pid and host."""
    from distributed import get_worker

    return {"dask_worker": get_worker().address, "dask_scheduler": scheduler}


def _worker_pids(dask_scheduler: Any) -> dict[str, int | None]:
    """Run on the scheduler: every worker's address and pid."""
    return {address: state.pid for address, state in dask_scheduler.workers.items()}


def owner_check(scheduler: str, client: Any) -> OwnerCheck:
    """Alive (True) or gone (False) for a lock owner naming a worker of ``scheduler``; None (cannot tell) for others.

    ``client``: a client of that scheduler (on a worker, ``distributed.get_client()``).
    """
    def alive(owner: dict[str, Any]) -> bool | None:
        if owner.get("dask_scheduler") != scheduler or not owner.get("dask_worker"):
            return None
        return client.run_on_scheduler(_worker_pids).get(owner["dask_worker"]) == owner["pid"]

    return alive
