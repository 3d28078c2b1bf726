"""The grid: methods x datasets x ratios x seeds of a profile, expanded into runs and executed.

Execution, one task per run:

* ``backend="local"``: ``jobs`` worker processes (``jobs=1`` runs in this process), started with
  ``spawn`` and reused, one run at a time each. A worker that dies (the kernel's OOM killer,
  ``kill -9``) fails only its own run: that run gets ``failure.json`` naming the signal, its lock is
  released, a new worker takes the next run and the others carry on. Workers die with this process
  (``PR_SET_PDEATHSIG`` on Linux; elsewhere they exit before their next run), so no orphan goes on
  to start runs that were only queued. Each run sets torch's CPU threads to ``cores // jobs`` so
  workers x threads <= cores. On CUDA, ``jobs`` defaults to (and is capped at) the number of
  visible GPUs, and every run leases one GPU exclusively for its duration (a lock file per device
  on the host, see ``locks.lease_device``), so no two runs ever share a device, also across
  benchmark processes on the same machine.
* ``backend="dask"``: one task per run submitted to a Dask cluster (``dask.distributed``), so a
  worker runs one run per worker thread: nothing inside a run hands work back to the scheduler.
  Every run takes the same CPU threads, fixed at the grid's start (``dask_cluster.threads_per_run``;
  ``train.num_threads`` fixes them in the run's config) so that a run retried on another or a
  restarted worker computes the same result, and, on GPU hosts, leases a GPU of its host. A run
  whose worker dies is retried by Dask and resumes from its checkpoint; its lock names its worker,
  so a retry breaks it as soon as the scheduler no longer lists that worker. Paths are made
  absolute: the results, data and cache directories must be on a filesystem shared by the workers
  at the same path, and the workers must import this repository (same code and environment).

Every run is isolated: it is skipped when it completed with the same resolved config ("skipped
(done)", ``run_state.completed_run``), skipped when another live process holds its
``<run dir>/.lock`` ("skipped (running elsewhere)") or a process of another host that nothing
here can check ("skipped (locked by an unreachable host)": the command then exits non-zero), resumed
from its ``last.pt`` when it was interrupted, and recorded as failed (``failure.json`` plus the
summary) when it raises, its loss becomes NaN or its worker dies, while the grid carries on. A
run whose folder holds another configuration's run, or damaged results, is failed with the
reason and nothing is written there. ``<results>/runs/<profile>/summary.json`` (rewritten
atomically after every run) lists what this invocation completed, skipped and saw fail.
"""
from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from defectseg.datasets import DATASETS, available_datasets, get_dataset
from defectseg.datasets.base import resolve_data_root
from defectseg.datasets.cache import load_arrays
from defectseg.methods import ConfigError, available_methods, load_entry_point_plugins, load_plugin

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.config import method_ratios, resolve_run
from defectseg.benchmarks.engine.folders import error_reason
from defectseg.benchmarks.engine.io import ResultsError, write_json
from defectseg.benchmarks.engine.run import RunConfig, TrainSettings, Workspace
from defectseg.benchmarks.engine.run_folder import write_failure
from defectseg.benchmarks.engine.run_lock import RunHeldError, claimed
from defectseg.benchmarks.engine.run_state import completed_run
from defectseg.benchmarks.engine.runner import check_record_every, train_pending
from defectseg.benchmarks.grid import dask_cluster
from defectseg.benchmarks.engine.locks import FileLock, OwnerCheck, lease_device

BACKENDS = ("local", "dask")
COMPLETED, SKIPPED_DONE, SKIPPED_RUNNING, FAILED = "completed", "skipped (done)", "skipped (running elsewhere)", "failed"
SKIPPED_UNREACHABLE = "skipped (locked by an unreachable host)"
SUMMARY_KEYS = {
    "completed": COMPLETED, "skipped_done": SKIPPED_DONE, "skipped_running": SKIPPED_RUNNING,
    "skipped_unreachable": SKIPPED_UNREACHABLE, "failed": FAILED,
}
REPO_ROOT = Path(__file__).resolve().parents[2]
DEVICE_LOCK_DIR = Path(tempfile.gettempdir()) / "defectseg-device-locks"
PR_SET_PDEATHSIG = 1  # linux/prctl.h
WORKER_EXIT_SECONDS = 10.0  # how long idle workers get to exit before they are terminated


class WorkerDiedError(RuntimeError):
    """A local worker process died (killed by a signal, or exited) while it ran a run."""


@dataclass
class GridResult:
    """Outcome of every run of one invocation, in grid order."""

    completed: list[dict[str, Any]] = field(default_factory=list)  # run configs
    skipped_done: list[dict[str, Any]] = field(default_factory=list)
    skipped_running: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (run config, lock owner)
    skipped_unreachable: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (run config, lock owner)
    failed: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (run config, reason)

    def counts(self) -> dict[str, int]:
        return {
            COMPLETED: len(self.completed),
            SKIPPED_DONE: len(self.skipped_done),
            SKIPPED_RUNNING: len(self.skipped_running),
            SKIPPED_UNREACHABLE: len(self.skipped_unreachable),
            FAILED: len(self.failed),
        }


# ---------------------------------------------------------------------------------------------
# expansion


def expand_grid(
    profile: dict[str, Any],
    data_root: Path | None = None,
    methods: list[str] | None = None,
    datasets: list[str] | None = None,
    ratios: list[float] | None = None,
    seeds: list[int] | None = None,
) -> list[dict[str, Any]]:
    """Resolved run configs, dataset-major; explicit arguments override the profile's lists.

    ``all`` among the methods stands for every registered method (variants are named one by one),
    ``available`` among the datasets for every dataset found under the data root. A listed dataset
    that is missing is an error, or dropped with a note when the profile sets
    ``skip_missing_datasets``. A variant with its own ``ratios`` runs at those ratios only, and a
    dataset listed in ``ratios_per_dataset`` at its own, unless ``ratios`` is given here. A run
    whose ``train.record_every`` is not a multiple of its ``train.val_every`` is a ConfigError.
    """
    method_names = _expand(methods or profile["methods"], "all", available_methods)
    dataset_names = _select_datasets(datasets or profile["datasets"], data_root, profile["skip_missing_datasets"])
    runs = []
    for dataset in dataset_names:
        ratios_of = {method: [float(r) for r in (ratios or method_ratios(profile, method, dataset))] for method in method_names}
        all_ratios = list(dict.fromkeys(r for method in method_names for r in ratios_of[method]))
        runs += [
            resolve_run(profile, dataset, ratio, method, seed)
            for ratio in all_ratios
            for method in method_names
            if ratio in ratios_of[method]
            for seed in (seeds or profile["seeds"])
        ]
    for run in runs:
        check_record_every(TrainSettings.of(run["train"]))
    return runs


def _expand(names: str | list[str], keyword: str, expansion: Any) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    expanded = [item for name in names for item in (expansion() if name == keyword else [name])]
    return list(dict.fromkeys(expanded))


def _select_datasets(names: str | list[str], data_root: Path | None, skip_missing: bool) -> list[str]:
    found = available_datasets(data_root)
    selected = _expand(names, "available", lambda: found)
    unknown = [name for name in selected if name not in DATASETS]
    if unknown:
        raise ConfigError(f"unknown dataset(s) {unknown}; valid names: {sorted(DATASETS)} or 'available'")
    missing = [name for name in selected if name not in found and DATASETS[name].folder]  # ``folder``: its runs check its path
    if missing:
        root = resolve_data_root(data_root).resolve()
        folders = [f"{DATASETS[name].folder}/" for name in missing]
        if not skip_missing:
            raise ConfigError(
                f"dataset(s) {missing} not found under the data root {root} (expected {folders}); "
                "download them (make data), pass --datasets with the ones you have, or set skip_missing_datasets: true"
            )
        print(f"note: skipping dataset(s) {missing}: not found under {root} (expected {folders})", file=sys.stderr)
    return [name for name in selected if name not in missing]


# ---------------------------------------------------------------------------------------------
# execution


@dataclass(frozen=True)
class RunSettings:
    """Everything a worker needs besides the run (its workspace with absolute paths; picklable)."""

    workspace: Workspace
    plugins: tuple[Path, ...]
    progress: bool
    threads: int  # torch CPU threads of every run (``train.num_threads`` of a run overrides it)
    scheduler: str | None = None  # on Dask: the scheduler's address, which run locks record


def run_grid(
    runs: list[dict[str, Any]],
    workspace: Workspace,
    jobs: int | None = None,
    backend: str = "local",
    scheduler: str | None = None,
    plugins: list[Path] | tuple[Path, ...] = (),
    progress: bool = True,
) -> GridResult:
    """Run every run of ``runs`` (resolved run configs) in ``workspace`` (see the module docstring); a failing
    run is recorded and the grid carries on.

    ``jobs`` applies to the local backend only; on Dask the workers' threads set the concurrency.
    """
    check_backend(backend, scheduler)
    workspace = workspace.absolute()
    settings = RunSettings(workspace=workspace, plugins=tuple(Path(p).resolve() for p in plugins), progress=False, threads=1)
    typed = [RunConfig(run_config) for run_config in runs]
    tracker = _Tracker(typed, workspace.results_dir, backend, progress)
    pending = []
    for index, run in enumerate(typed):
        if _is_done(run, workspace.results_dir):
            tracker.record({"index": index, "status": SKIPPED_DONE, "detail": None, "seconds": 0.0}, quiet=True)
        else:
            pending.append((index, run))
    if len(pending) < len(runs):
        tqdm.write(f"{len(runs) - len(pending)} run(s) already done: skipped (done)")
    try:
        if pending and backend == "local":
            jobs = _local_jobs(jobs, workspace.device)
            tracker.jobs = jobs
            if jobs > 1 and workspace.cache_dir is not None:
                warm_cache([run for _, run in pending], workspace, jobs)
            settings = replace(settings, threads=max(1, available_cores() // jobs), progress=progress and jobs == 1)
            if jobs == 1:
                for index, run in pending:
                    tracker.record(execute_run(index, run, settings))
            else:
                _run_in_workers(pending, settings, jobs, tracker)
        elif pending:
            _run_on_dask(pending, settings, scheduler, tracker)
    finally:
        tracker.close()
    return tracker.result


def check_backend(backend: str, scheduler: str | None) -> None:
    """ConfigError unless ``backend`` is known and ``scheduler`` is given exactly with ``dask``."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if (backend == "dask") != (scheduler is not None):
        raise ConfigError("--backend dask needs --scheduler ADDRESS, and --scheduler needs --backend dask")


def _is_done(run: RunConfig, results_dir: Path) -> bool:
    """Whether the run completed with this config; damaged results are left to the run to report."""
    try:
        return completed_run(run.directory(results_dir), run.hash) is not None
    except ResultsError:
        return False


@dataclass
class _Worker:
    """A local worker process, its end of the task pipe, and the run it holds (index, run)."""

    process: BaseProcess
    connection: Connection
    task: tuple[int, RunConfig] | None = None
    started: float = 0.0


def _run_in_workers(pending: list[tuple[int, RunConfig]], settings: RunSettings, jobs: int, tracker: _Tracker) -> None:
    """Run ``pending`` on ``jobs`` worker processes, replacing any that dies (its run is failed)."""
    queue = deque(pending)
    workers: list[_Worker] = []
    try:
        while queue or any(worker.task for worker in workers):
            workers = [worker for worker in workers if not worker.connection.closed]
            while queue and len(workers) < jobs:
                workers.append(_start_worker())
            for worker in workers:
                if worker.task is None and queue:
                    _assign(worker, queue, settings)
            busy = [worker for worker in workers if worker.task]
            if not busy:
                continue  # the idle workers had died: replaced on the next pass
            ready = wait([worker.connection for worker in busy] + [worker.process.sentinel for worker in busy])
            for worker in busy:
                if worker.connection in ready or worker.process.sentinel in ready:
                    tracker.record(_collect(worker, settings))
    finally:
        _stop_workers(workers)


def _start_worker() -> _Worker:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_worker_main, args=(theirs, os.getpid()), name="defectseg-worker")
    process.start()
    theirs.close()
    return _Worker(process, ours)


def _assign(worker: _Worker, queue: deque, settings: RunSettings) -> None:
    """Send the next queued run to an idle worker; back to the queue if the worker died idle."""
    task = queue.popleft()
    try:
        worker.connection.send((*task, settings))
    except OSError:  # BrokenPipeError
        queue.appendleft(task)
        worker.connection.close()
        return
    worker.task, worker.started = task, time.perf_counter()


def _collect(worker: _Worker, settings: RunSettings) -> dict[str, Any]:
    """The outcome of the worker's run: what it sent, or a failure if it died first."""
    index, run = worker.task
    worker.task = None
    try:
        if worker.connection.poll():
            return worker.connection.recv()
    except (EOFError, OSError):
        pass
    worker.connection.close()
    worker.process.join()
    error = WorkerDiedError(_death_reason(worker.process))
    _record_dead_worker(run, settings, error)
    detail = f"{type(error).__name__}: {error}"
    return {"index": index, "status": FAILED, "detail": detail, "seconds": time.perf_counter() - worker.started}


def _death_reason(process: BaseProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        cause = " (out of memory: the kernel's OOM killer sends it, as does kill -9)" if -code == signal.SIGKILL else ""
        return f"worker process {process.pid} was killed by signal {-code}, {name}{cause}"
    return f"worker process {process.pid} exited with code {code} before finishing the run"


def _record_dead_worker(
    run: RunConfig, settings: RunSettings, error: BaseException, owner_alive: OwnerCheck | None = None
) -> None:
    """Write the run's ``failure.json`` and release the dead worker's lock (taken over, then dropped).

    Nothing is written if another process has taken the run over, or it completed after all.
    """
    results_dir = settings.workspace.results_dir
    directory = run.directory(results_dir)
    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(directory / layout.LOCK, owner_alive=owner_alive)
    if not lock.acquire():
        return
    try:
        if not _is_done(run, results_dir):
            write_failure(run, results_dir, error)
    finally:
        lock.release()


def _stop_workers(workers: list[_Worker]) -> None:
    """Close the pipes (idle workers exit), then terminate whatever still runs after a grace period."""
    for worker in workers:
        worker.connection.close()
    deadline = time.monotonic() + WORKER_EXIT_SECONDS
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.terminate()
            worker.process.join()


def _worker_main(connection: Connection, parent: int) -> None:
    """A worker process: runs the tasks sent over ``connection`` one at a time until it closes."""
    _die_with_parent(parent)
    try:
        while True:
            try:
                task = connection.recv()
            except EOFError:
                return
            connection.send(execute_run(*task))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the run wrote its failure.json
        return


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def warm_cache(runs: list[RunConfig], workspace: Workspace, threads: int) -> None:
    """Decode every (dataset, options, image size, resize) the runs need into the workspace's cache, once, here.

    Without it, parallel workers starting on the same dataset would each decode it. A dataset that fails to
    load is left to its runs, which record the error in their ``failure.json``.
    """
    done: set[str] = set()
    for run in runs:
        train = run.train
        key = json.dumps([run.dataset, run.dataset_options, train.image_size, train.resize], sort_keys=True, default=str)
        if key in done:
            continue
        done.add(key)
        try:
            dataset = get_dataset(run.dataset, workspace.data_root, **run.dataset_options)
            load_arrays(dataset, dataset.records(), train.image_size, workspace.cache_dir, n_jobs=threads, resize=train.resize)
        except Exception as error:  # noqa: BLE001 - reported by the runs themselves
            tqdm.write(f"note: could not pre-decode {run.dataset} ({error}); its runs will report it")


def _run_on_dask(pending: list[tuple[int, RunConfig]], settings: RunSettings, scheduler: str, tracker: _Tracker) -> None:
    """One task per run (Dask retries a run whose worker died: it resumes from its checkpoint)."""
    from distributed import as_completed

    with dask_cluster.connect(scheduler) as client:
        _check_cluster_imports(client, scheduler)
        tracker.jobs = sum(client.nthreads().values())
        settings = replace(settings, threads=dask_cluster.threads_per_run(client, available_cores),
                           scheduler=dask_cluster.scheduler_address(client))
        tqdm.write(f"dask: {tracker.jobs} worker thread(s), one run each; {settings.threads} CPU thread(s) per run "
                   "(train.num_threads overrides)")
        tasks = {client.submit(execute_run, index, run, settings, pure=False): (index, run) for index, run in pending}
        for task in as_completed(tasks):
            tracker.record(_dask_outcome(task, *tasks[task], settings, client))


def _check_cluster_imports(client: Any, address: str) -> None:
    """Fail fast where Dask would hang: the scheduler and every worker must import this repository."""
    probe = ("import defectseg.benchmarks.grid.execute", {})  # exec'd remotely: our tasks are pickled by reference
    try:
        client.run_on_scheduler(exec, *probe)
        client.run(exec, *probe)
    except ImportError as error:
        raise ConfigError(
            f"the Dask cluster at {address} cannot import this repository ({error}); start its scheduler and "
            f"workers with PYTHONPATH={REPO_ROOT} and the same Python environment as here"
        ) from error


def _dask_outcome(task: Any, index: int, run: RunConfig, settings: RunSettings, client: Any) -> dict[str, Any]:
    """What the task returned; a failure (recorded in the run folder) if it raised, e.g. its workers kept dying."""
    try:
        return task.result()
    except Exception as error:  # noqa: BLE001 - KilledWorker after Dask's retries, or a cancelled task
        _record_dead_worker(run, settings, error, dask_cluster.owner_check(settings.scheduler, client))
        return {"index": index, "status": FAILED, "detail": error_reason(error), "seconds": 0.0}


def cuda_devices(device: str) -> list[str]:
    """The GPUs a ``--device`` value means here: all visible ones for auto/cuda, one for cuda:N."""
    if device in ("auto", "cuda"):
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return [device] if device.startswith("cuda:") else []


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _local_jobs(jobs: int | None, device: str) -> int:
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    devices = cuda_devices(device)
    if devices:
        if jobs is not None and jobs > len(devices):
            tqdm.write(f"note: --jobs {jobs} capped at {len(devices)}: one run per GPU at a time")
        return min(jobs or len(devices), len(devices))
    jobs = jobs or 1
    if jobs > available_cores():
        tqdm.write(f"note: --jobs {jobs} exceeds the {available_cores()} CPU cores: one thread per run, oversubscribed")
    return jobs


def execute_run(index: int, run: RunConfig, settings: RunSettings) -> dict[str, Any]:
    """One grid task, run in a worker: never raises for a run's own failure."""
    start = time.perf_counter()
    status, detail = _execute(run, settings)
    return {"index": index, "status": status, "detail": detail, "seconds": time.perf_counter() - start}


def _execute(run: RunConfig, settings: RunSettings) -> tuple[str, str | None]:
    try:
        return _claim_and_train(run, settings)
    except RunHeldError as held:
        return (SKIPPED_RUNNING if held.verified else SKIPPED_UNREACHABLE), held.holder
    except Exception as error:  # noqa: BLE001 - isolation: recorded (train_pending wrote failure.json), the grid carries on
        return FAILED, error_reason(error)


def _claim_and_train(run: RunConfig, settings: RunSettings) -> tuple[str, str | None]:
    """Train the run under its lock (a RunHeldError if a live process holds it), unless done by then.

    ``run_grid`` queued it as not done; under the lock it is looked at again, as another process
    may have completed it meanwhile. On Dask the lock names this worker, and a lock of a worker
    the scheduler no longer lists is broken.
    """
    workspace = settings.workspace
    directory = workspace.run_dir(run)
    identity, owner_alive = None, None
    if settings.scheduler is not None:
        from distributed import get_client

        identity = dask_cluster.lock_identity(settings.scheduler)
        owner_alive = dask_cluster.owner_check(settings.scheduler, get_client())
    with claimed(directory, identity, owner_alive):
        if completed_run(directory, run.hash) is not None:
            return SKIPPED_DONE, None
        with _device(workspace.device) as device:
            train_pending(
                run, replace(workspace, device=device), settings.progress,
                before=lambda: _prepare_worker(settings),  # e.g. a plugin that fails to load is the run's failure
            )
    return COMPLETED, None


def _prepare_worker(settings: RunSettings) -> None:
    """Register plugin methods in this worker process and take the grid's CPU threads per run."""
    load_entry_point_plugins()
    for plugin in settings.plugins:
        load_plugin(plugin)  # a no-op for a file this process already loaded
    torch.set_num_threads(settings.threads)


@contextmanager
def _device(device: str) -> Iterator[str]:
    devices = cuda_devices(device)
    if not devices:
        yield device
        return
    with lease_device(devices, DEVICE_LOCK_DIR) as leased:
        yield leased


# ---------------------------------------------------------------------------------------------
# reporting


class _Tracker:
    """Collects outcomes, prints one line per run and keeps ``summary.json`` up to date."""

    def __init__(self, runs: list[RunConfig], results_dir: Path, backend: str, progress: bool) -> None:
        self.runs, self.results_dir, self.backend = runs, results_dir, backend
        self.outcomes: dict[int, dict[str, Any]] = {}
        self.jobs: int | None = None
        self.started = time.time()
        self.bar = tqdm(total=len(runs), desc="benchmark", unit="run", disable=not progress or not runs)
        profiles = sorted({run.profile for run in runs})
        self.summary_path = layout.summary_path(results_dir, profiles[0]) if len(profiles) == 1 else None
        self.result = GridResult()

    def record(self, outcome: dict[str, Any], quiet: bool = False) -> None:
        """Add one outcome; unless ``quiet``, print it and rewrite the summary."""
        self.outcomes[outcome["index"]] = outcome
        self.bar.update(1)
        self._rebuild()
        if quiet:
            return
        run = self.runs[outcome["index"]]
        line = f"{outcome['status']:<27} {run.label}  ({outcome['seconds']:.0f} s)"
        if outcome["detail"]:
            line += f": {outcome['detail']}"
        tqdm.write(line)
        self._write_summary(finished=False)

    def close(self) -> None:
        self.bar.close()
        self._write_summary(finished=True)

    def _rebuild(self) -> None:
        result = GridResult()
        for index in sorted(self.outcomes):
            outcome, run = self.outcomes[index], self.runs[index].config
            status = outcome["status"]
            if status == COMPLETED:
                result.completed.append(run)
            elif status == SKIPPED_DONE:
                result.skipped_done.append(run)
            elif status == SKIPPED_RUNNING:
                result.skipped_running.append((run, outcome["detail"]))
            elif status == SKIPPED_UNREACHABLE:
                result.skipped_unreachable.append((run, outcome["detail"]))
            else:
                result.failed.append((run, outcome["detail"]))
        self.result = result

    def _write_summary(self, finished: bool) -> None:
        if self.summary_path is None:
            return

        def entry(index: int) -> dict[str, Any]:
            run, outcome = self.runs[index], self.outcomes[index]
            item = {"dataset": run.dataset, "ratio": run.ratio, "method": run.method, "base_method": run.base_method, "seed": run.seed}
            item["dir"] = run.label
            item["seconds"] = round(outcome["seconds"], 1)
            if outcome["detail"]:
                item["reason" if outcome["status"] == FAILED else "held_by"] = outcome["detail"]
            return item

        by_status = {status: [entry(i) for i in sorted(self.outcomes) if self.outcomes[i]["status"] == status]
                     for status in SUMMARY_KEYS.values()}
        write_json(
            self.summary_path,
            {
                "profile": self.summary_path.parent.name,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "backend": self.backend,
                "jobs": self.jobs,
                "started": _timestamp(self.started),
                "finished": _timestamp(time.time()) if finished else None,
                "runs": len(self.runs),
                "pending": len(self.runs) - len(self.outcomes),
                **{key: by_status[status] for key, status in SUMMARY_KEYS.items()},
                "counts": {key: len(by_status[status]) for key, status in SUMMARY_KEYS.items()},
            },
        )


def _timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))
