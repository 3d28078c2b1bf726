"""Shared parts of the fault tests (tests/test_faults*.py): the tiny grid, its uninterrupted reference,
and helpers to start, watch and compare grids.

Every scenario runs the tiny grid of ``grid_helpers.TINY`` (``grid_stateful``: an EMA teacher and
all RNGs in play, seeds 0-2, 6 steps, checkpoints every 2) and ends by checking that no run was lost,
none trained twice or with mixed settings, and that every result equals the one of an
uninterrupted grid (metrics.json and best.pt, timings aside).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from grid_helpers import PLUGIN, REPO, TINY, plugin_methods, tiny_profile

from defectseg.benchmarks.engine.run import Workspace
from defectseg.benchmarks.engine.layout import run_dir
from defectseg.benchmarks.grid.execute import expand_grid, run_grid

METHOD, SEEDS = "grid_stateful", (0, 1, 2)
TIMINGS = {"train_seconds", "iterations_per_second", "eval_ms_per_image", "variant_ms_per_image", "environment"}
PACE = "0.3"  # seconds per training step while a kill is due: a run lasts > 2 s after taking its lock
RNG = random.Random()  # the runs seed the global one: kill delays would repeat
linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")


@pytest.fixture(scope="module")
def plugin():
    with plugin_methods() as names:
        yield names


@pytest.fixture(scope="module")
def runs(plugin) -> list[dict[str, Any]]:
    return expand_grid(tiny_profile(f"methods=[{METHOD}]", f"seeds={list(SEEDS)}"))


@pytest.fixture(scope="module")
def reference(runs, tmp_path_factory) -> Path:
    """The uninterrupted grid, in this process."""
    results = tmp_path_factory.mktemp("reference")
    assert len(run_grid(runs, Workspace(results, device="cpu"), progress=False).completed) == len(runs)
    return results


@pytest.fixture
def copy_of_reference(reference, tmp_path) -> Path:
    return Path(shutil.copytree(reference, tmp_path / "results"))


def outcome(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    metrics = json.loads((directory / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in TIMINGS}, torch.load(directory / "best.pt", weights_only=True)


def assert_like_reference(results: Path, reference: Path, runs: list[dict[str, Any]], context: str = "") -> None:
    """Every run completed once, cleanly, with the uninterrupted grid's metrics and weights."""
    for run in runs:
        directory = run_dir(results, run)
        metrics, weights = outcome(directory)
        expected_metrics, expected_weights = outcome(run_dir(reference, run))
        assert metrics == expected_metrics, f"{directory} {context}"
        assert all(torch.equal(weights[k], expected_weights[k]) for k in expected_weights), f"{directory} {context}"
        leftovers = [name for name in (".lock", "last.pt", "failure.json") if (directory / name).exists()]
        assert not leftovers, f"{directory}: {leftovers} {context}"


def lock_owners(results: Path) -> dict[Path, int]:
    """Run folder -> pid in its lock, for every readable lock under ``results``."""
    owners = {}
    for path in results.glob("runs/*/*/*/*/seed*/.lock"):
        try:
            owners[path.parent] = json.loads(path.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            continue
    return owners


def wait_for(condition: Callable[[], Any], timeout: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {condition}")


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def benchmark_command(results: Path, *extra: str) -> list[str]:
    command = [sys.executable, "run_all.py", "benchmark", "--profile", "smoke", "--results-dir", str(results), "--device", "cpu"]
    command += ["--plugin", str(PLUGIN), "--methods", METHOD, "--seeds", *map(str, SEEDS), *extra]
    return command + [f"--set={o}" for o in TINY]


def train_arguments(results: Path, run: dict[str, Any], *extra: str) -> list[str]:
    """``run_all.py train`` arguments (after the script) of one run of the tiny grid."""
    arguments = ["train", "--profile", "smoke", "--results-dir", str(results), "--device", "cpu", "--plugin", str(PLUGIN)]
    arguments += ["--dataset", run["dataset"], "--ratio", str(run["ratio"]), "--method", run["method"], "--seed", str(run["seed"])]
    return arguments + [*extra, *(f"--set={o}" for o in TINY)]


def start(command: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def starts(marker: Path) -> list[str]:
    return marker.read_text().splitlines() if marker.exists() else []
