"""The grid on a Dask cluster: a two-process LocalCluster on loopback runs a smoke grid."""
from __future__ import annotations

import os

import pytest
from grid_helpers import PLUGIN, plugin_methods, tiny_profile, keep_torch_threads  # noqa: F401 (autouse fixture)

from benchmarks.engine.layout import run_dir
from benchmarks.grid.execute import expand_grid, run_grid
from benchmarks.engine.run_folder import completed_metrics

distributed = pytest.importorskip("dask.distributed")


def test_grid_on_a_local_dask_cluster(tmp_path, monkeypatch):
    marker = tmp_path / "starts.txt"
    monkeypatch.setenv("GRID_TEST_MARKER", str(marker))  # inherited by the worker processes
    with plugin_methods():
        runs = expand_grid(tiny_profile("methods=[grid_tiny, grid_raise]", "seeds=[0, 1]"))
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        result = run_grid(
            runs, tmp_path / "results", device="cpu", backend="dask", scheduler=cluster.scheduler_address,
            plugins=[PLUGIN], progress=False,
        )
    assert sorted((r["method"], r["seed"]) for r in result.completed) == [("grid_tiny", 0), ("grid_tiny", 1)]
    assert sorted(reason.split(":")[0] for _, reason in result.failed) == ["RuntimeError", "RuntimeError"]
    with plugin_methods():
        assert all(completed_metrics(r, tmp_path / "results") for r in runs if r["method"] == "grid_tiny")
    assert all((run_dir(tmp_path / "results", r) / "failure.json").exists() for r in runs if r["method"] == "grid_raise")
    pids = {int(line.split()[0]) for line in marker.read_text().splitlines()}
    assert os.getpid() not in pids  # trained on the Dask workers
