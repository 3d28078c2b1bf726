"""The grid on a Dask cluster: a two-worker LocalCluster (one thread each, on loopback) runs tiny grids.

One cluster serves every test (starting one costs seconds); its workers inherit $GRID_TEST_MARKER
(every training start appends its pid and torch threads) and $GRID_TEST_STEP_SECONDS (so that a
kill meets a run in the middle).
"""
from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from grid_helpers import PLUGIN, plugin_methods, tiny_profile, keep_torch_threads  # noqa: F401 (autouse fixture)

from defectseg.benchmarks.engine.run import RunConfig, Workspace
from defectseg.benchmarks.engine.layout import run_dir
from defectseg.benchmarks.engine.run_state import completed_run
from defectseg.benchmarks.grid.execute import expand_grid, run_grid

pytestmark = [pytest.mark.slow, pytest.mark.process]  # a real Dask cluster: processes, kills, minutes

distributed = pytest.importorskip("dask.distributed")

PACE = "0.25"  # seconds per training step: a 6-step run lasts a few seconds
TIMINGS = {"train_seconds", "iterations_per_second", "eval_ms_per_image", "variant_ms_per_image", "environment"}
RNG = random.Random()  # the runs seed the global one


@pytest.fixture(scope="module")
def marker(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("marker") / "starts.txt"


@pytest.fixture(scope="module")
def cluster(marker) -> Iterator[distributed.LocalCluster]:
    saved = {key: os.environ.get(key) for key in ("GRID_TEST_MARKER", "GRID_TEST_STEP_SECONDS")}
    os.environ.update(GRID_TEST_MARKER=str(marker), GRID_TEST_STEP_SECONDS=PACE)  # inherited by the workers
    try:
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as local:
            yield local
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


def _grid(runs: list[dict], results: Path, cluster: distributed.LocalCluster, cache_dir: Path | None = None):
    return run_grid(runs, Workspace(results, cache_dir=cache_dir, device="cpu"), backend="dask", scheduler=cluster.scheduler_address,
                    plugins=[PLUGIN], progress=False)


def _starts(marker: Path) -> list[tuple[int, int]]:
    """(pid, torch threads) of every training start so far."""
    return [tuple(map(int, line.split())) for line in marker.read_text().splitlines()] if marker.exists() else []


def _lock_owners(results: Path) -> list[int]:
    """The pid in every readable run lock under ``results``."""
    owners = []
    for path in results.glob("runs/*/*/*/*/seed*/.lock"):
        try:
            owners.append(json.loads(path.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            continue
    return owners


def _outcome(directory: Path) -> tuple[dict, dict]:
    metrics = json.loads((directory / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in TIMINGS}, torch.load(directory / "best.pt", weights_only=True)


def test_grid_on_a_local_dask_cluster(cluster, marker, tmp_path):
    with plugin_methods():
        runs = expand_grid(tiny_profile("methods=[grid_tiny, grid_raise]", "seeds=[0, 1]"))
    before = len(_starts(marker))
    result = _grid(runs, tmp_path / "results", cluster)
    assert sorted((r["method"], r["seed"]) for r in result.completed) == [("grid_tiny", 0), ("grid_tiny", 1)]
    assert sorted(reason.split(":")[0] for _, reason in result.failed) == ["RuntimeError", "RuntimeError"]
    with plugin_methods():
        assert all(completed_run(run.directory(tmp_path / "results"), run.hash) for run in map(RunConfig, runs) if run.method == "grid_tiny")
    assert all((run_dir(tmp_path / "results", r) / "failure.json").exists() for r in runs if r["method"] == "grid_raise")
    assert os.getpid() not in {pid for pid, _ in _starts(marker)[before:]}  # trained on the Dask workers


def test_one_run_per_worker_thread_on_a_fresh_cache(cluster, tmp_path):
    """Decoding inside a run hands no work back to Dask: a one-thread worker never holds two run locks."""
    with plugin_methods():
        runs = expand_grid(tiny_profile("methods=[grid_tiny]", "seeds=[0, 1, 2, 3]", "dataset_options.synthetic.num_images=160"))
    results, most = tmp_path / "results", Counter()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for pid, count in Counter(_lock_owners(results)).items():
                most[pid] = max(most[pid], count)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = _grid(runs, results, cluster, cache_dir=tmp_path / "cache")  # empty: every run decodes first
    finally:
        done.set()
        watcher.join()
    assert len(result.completed) == len(runs), result.failed
    assert most and max(most.values()) == 1, dict(most)


def test_a_worker_killed_mid_run_gives_the_results_of_an_uninterrupted_grid(cluster, marker, tmp_path):
    """The nanny restarts the killed worker at a new address; Dask retries its run, which breaks the dead
    worker's lock, resumes from its checkpoint and trains with the same CPU threads as every other run.

    ``grid_tiny`` (torch's RNG: dropout), not ``grid_stateful``: Dask's own threads draw from Python's global
    ``random`` module, so a method drawing from it is not reproducible on Dask (docs/reliability.md)."""
    with plugin_methods():
        runs = expand_grid(tiny_profile("methods=[grid_tiny]", "seeds=[0, 1, 2, 3]", "train.num_threads=null"))
    reference, results = tmp_path / "reference", tmp_path / "killed"
    assert len(_grid(runs, reference, cluster).completed) == len(runs)
    before, delay, killed = len(_starts(marker)), RNG.uniform(0.5, 1.5), []

    def kill_a_worker() -> None:
        deadline = time.monotonic() + 60
        while not (owners := [pid for pid in _lock_owners(results) if pid != os.getpid()]) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(delay)
        os.kill(owners[0], signal.SIGKILL)
        killed.append(owners[0])

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    result = _grid(runs, results, cluster)
    killer.join()
    context = f"(worker {killed} killed {delay:.2f} s after it took a run)"
    assert len(result.completed) == len(runs) and not result.failed, f"{result.failed} {context}"
    starts = _starts(marker)
    assert killed[0] in {pid for pid, _ in starts[before:]}, context
    assert len({threads for _, threads in starts}) == 1, f"{starts} {context}"  # one thread count, restarted worker too
    for run in runs:
        (metrics, weights), (expected, expected_weights) = _outcome(run_dir(results, run)), _outcome(run_dir(reference, run))
        assert metrics == expected, f"{run_dir(results, run)} {context}"
        assert all(torch.equal(weights[k], expected_weights[k]) for k in expected_weights), f"{run_dir(results, run)} {context}"
        assert not [n for n in (".lock", "last.pt", "failure.json") if (run_dir(results, run) / n).exists()], context


def test_locks_of_dead_workers_are_broken_and_others_named(cluster, tmp_path):
    """A lock naming a worker this scheduler no longer lists is broken at once (whatever its host); one of a
    listed worker is running elsewhere; one of another host that nothing can check is named as such."""
    with plugin_methods():
        runs = expand_grid(tiny_profile("methods=[grid_tiny]", "seeds=[0, 1, 2]"))
    with distributed.Client(cluster.scheduler_address) as client:
        (live, pid), *_ = client.run(os.getpid).items()
    now, scheduler = time.time(), cluster.scheduler_address
    owners = [
        {"pid": 4321, "host": "gone-host", "dask_worker": "tcp://127.0.0.1:9", "dask_scheduler": scheduler},
        {"pid": pid, "host": "another-host", "dask_worker": live, "dask_scheduler": scheduler},
        {"pid": 4321, "host": "another-host"},
    ]
    for run, owner in zip(runs, owners):
        run_dir(tmp_path, run).mkdir(parents=True)
        (run_dir(tmp_path, run) / ".lock").write_text(json.dumps({**owner, "started": now, "token": "t"}))
    result = _grid(runs, tmp_path, cluster)
    assert [r["seed"] for r in result.completed] == [0]
    (running, holder), = result.skipped_running
    assert running["seed"] == 1 and f"Dask worker {live}" in holder
    (unreachable, holder), = result.skipped_unreachable
    assert unreachable["seed"] == 2 and "pid 4321 on another-host" in holder and "a host that cannot be checked from here" in holder
