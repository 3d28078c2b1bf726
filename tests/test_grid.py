"""The benchmark grid: expansion, variants, skipping, locks, failure isolation, parallel workers."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from grid_helpers import PLUGIN, REPO, TINY, plugin_methods, tiny_profile, keep_torch_threads  # noqa: F401 (autouse fixture)

import run_all
from defectseg.benchmarks.engine.run import RunConfig, Workspace
from defectseg.benchmarks.engine.config import config_hash, load_profile, resolve_run
from defectseg.benchmarks.engine.layout import run_dir
from defectseg.benchmarks.grid.execute import available_cores, expand_grid, run_grid, warm_cache
from defectseg.benchmarks.engine.locks import FileLock
from defectseg.benchmarks.engine.run_state import completed_run
from defectseg.methods import ConfigError, available_methods


@pytest.fixture(scope="module")
def plugin():
    with plugin_methods() as names:
        yield names


def _summary(results_dir, profile="smoke"):
    return json.loads((results_dir / "runs" / profile / "summary.json").read_text())


# ---------------------------------------------------------------------------------------------
# expansion and variants


def test_expansion_order_and_overrides():
    profile = load_profile("smoke", ["ratios=[0.1, 0.2]", "seeds=[0, 1]"])
    runs = expand_grid(profile)
    assert [(r["ratio"], r["seed"]) for r in runs] == [(0.1, 0), (0.1, 1), (0.2, 0), (0.2, 1)]
    runs = expand_grid(profile, methods=["supervised"], datasets=["synthetic"], ratios=[0.5], seeds=[3])
    assert [(r["dataset"], r["ratio"], r["method"], r["base_method"], r["seed"]) for r in runs] == [
        ("synthetic", 0.5, "supervised", "supervised", 3)
    ]


def test_all_and_available_keywords(tmp_path):
    runs = expand_grid(load_profile("smoke", ["methods=all", "datasets=available"]), data_root=tmp_path)
    assert [r["method"] for r in runs] == available_methods()
    assert {r["dataset"] for r in runs} == {"synthetic"}  # nothing else under an empty data root


def test_missing_dataset_is_an_error_unless_skipped(tmp_path):
    with pytest.raises(ConfigError, match=r"\['neu'\] not found under the data root.*NEU_data"):
        expand_grid(load_profile("smoke", ["datasets=[synthetic, neu]"]), data_root=tmp_path)
    profile = load_profile("smoke", ["datasets=[synthetic, neu]", "skip_missing_datasets=true"])
    assert {r["dataset"] for r in expand_grid(profile, data_root=tmp_path)} == {"synthetic"}
    with pytest.raises(ConfigError, match="unknown dataset"):
        expand_grid(load_profile("smoke"), datasets=["nope"])


def test_variant_resolves_to_its_base_method_with_its_options(tmp_path):
    profile = load_profile(
        "smoke",
        [
            "method_variants={sup_tconv: {method: supervised, options: {backbone: unet-tconv}, ratios: [0.3]}}",
            "methods=[supervised, sup_tconv]",
            "method_options.supervised.rampup_fraction=0.5",
        ],
    )
    runs = expand_grid(profile)
    assert [(r["method"], r["ratio"]) for r in runs] == [("supervised", 0.2), ("sup_tconv", 0.3)]
    variant = runs[1]
    assert variant["base_method"] == "supervised"
    # base defaults <- method_options of the base <- the variant's options
    assert variant["method_options"] == {"backbone": "unet-tconv", "rampup_fraction": 0.5, "dice_form": "ssl4mis"}
    assert run_dir(tmp_path, variant) == tmp_path / "runs" / "smoke" / "synthetic" / "0.3" / "sup_tconv" / "seed0"
    assert config_hash(variant) != config_hash(resolve_run(profile, "synthetic", 0.3, "supervised", 0))
    # --ratios overrides a variant's own ratios too
    assert {r["ratio"] for r in expand_grid(profile, ratios=[0.7])} == {0.7}


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("{supervised: {method: supervised}}", "clashes with the registered method"),
        ("{v: {method: nope}}", r"method_variants.v.method: unknown method 'nope'"),
        ("{v: {method: supervised, options: {depth: 3}}}", r"unknown option\(s\) \['depth'\] for method 'v \(variant of supervised\)'"),
    ],
)
def test_bad_variant_is_a_clear_error(variant, message):
    profile = load_profile("smoke", [f"method_variants={variant}", f"methods=[{variant[1:].split(':')[0]}]"])
    with pytest.raises(ConfigError, match=message):
        expand_grid(profile)


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("{v: [supervised]}", "must be a mapping"),
        ("{v: {options: {}}}", "v.method must name a registered method"),
        ("{v: {method: supervised, seeds: [1]}}", r"unknown config key\(s\) \['seeds'\] in method_variants.v"),
        ("{v: {method: supervised, ratios: 0.1}}", "v.ratios must be a non-empty list"),
    ],
)
def test_malformed_variant_fails_when_the_profile_loads(variant, message):
    with pytest.raises(ConfigError, match=message):
        load_profile("smoke", [f"method_variants={variant}"])


def test_shipped_profiles_expand(tmp_path):
    (tmp_path / "NEU_data").mkdir()
    assert {r["method"] for r in expand_grid(load_profile("cpu"), data_root=tmp_path)} == set(available_methods())
    ablations = load_profile("ablations")
    if "uaps" in available_methods():  # UAPS registers itself in methods/uaps.py
        runs = expand_grid(ablations, data_root=tmp_path)  # DAGM absent: skipped
        assert {r["dataset"] for r in runs} == {"neu"}
        assert {r["base_method"] for r in runs} == {"uaps"}
        assert {r["ratio"] for r in runs if r["method"] == "uaps_mix_average"} == {0.1, 0.3, 0.5}
        assert next(r for r in runs if r["method"] == "uaps_loss_seg")["method_options"]["losses"] == []


# ---------------------------------------------------------------------------------------------
# running


def test_workers_share_the_cores_and_a_second_invocation_trains_nothing(plugin, tmp_path, monkeypatch):
    marker = tmp_path / "starts.txt"
    monkeypatch.setenv("GRID_TEST_MARKER", str(marker))
    runs = expand_grid(tiny_profile("methods=[grid_tiny]", "seeds=[0, 1]", "train.num_threads=null"))
    first = run_grid(runs, Workspace(tmp_path, device="cpu"), jobs=2, plugins=[PLUGIN], progress=False)
    assert len(first.completed) == 2, first.failed
    starts = [line.split() for line in marker.read_text().splitlines()]
    assert all(int(pid) != os.getpid() for pid, _ in starts)  # trained in worker processes
    assert {int(threads) for _, threads in starts} == {max(1, available_cores() // 2)}
    metrics = [run_dir(tmp_path, r) / "metrics.json" for r in runs]
    mtimes = [path.stat().st_mtime_ns for path in metrics]
    assert not any((run_dir(tmp_path, r) / ".lock").exists() for r in runs)

    second = run_grid(runs, Workspace(tmp_path, device="cpu"), progress=False)
    assert (len(second.completed), len(second.skipped_done)) == (0, 2)
    assert [path.stat().st_mtime_ns for path in metrics] == mtimes
    assert len(marker.read_text().splitlines()) == 2
    summary = _summary(tmp_path)
    assert summary["counts"] == {"completed": 0, "skipped_done": 2, "skipped_running": 0, "skipped_unreachable": 0, "failed": 0}
    assert summary["finished"] is not None

    changed = expand_grid(tiny_profile("methods=[grid_tiny]", "seeds=[0]", "train.num_threads=null", "train.iterations=4"))
    (failed,) = run_grid(changed, Workspace(tmp_path, device="cpu"), progress=False).failed  # another config: not trained over
    assert "RunConflictError" in failed[1] and "train.iterations: 6 (there) / 4 (requested)" in failed[1]
    assert [path.stat().st_mtime_ns for path in metrics] == mtimes


def test_failures_are_recorded_and_the_grid_carries_on(plugin, tmp_path, capsys):
    argv = ["benchmark", "--profile", "smoke", "--results-dir", str(tmp_path), "--device", "cpu"]
    argv += ["--methods", "grid_nan", "grid_raise", "grid_tiny"] + [f"--set={o}" for o in TINY]
    assert run_all.main(argv) == 1
    err = capsys.readouterr().err
    assert "2 run(s) failed" in err and "NonFiniteLossError" in err and "grid_raise fails on purpose" in err

    runs = expand_grid(tiny_profile("methods=[grid_nan, grid_raise, grid_tiny]"))
    nan_run, raise_run, good_run = (run_dir(tmp_path, r) for r in runs)
    assert json.loads((nan_run / "failure.json").read_text())["error"] == "NonFiniteLossError"
    assert json.loads((raise_run / "failure.json").read_text())["reason"] == "grid_raise fails on purpose"
    assert (good_run / "metrics.json").exists()
    summary = _summary(tmp_path)
    assert summary["counts"] == {"completed": 1, "skipped_done": 0, "skipped_running": 0, "skipped_unreachable": 0, "failed": 2}
    assert {item["method"]: item["reason"].split(":")[0] for item in summary["failed"]} == {
        "grid_nan": "NonFiniteLossError",
        "grid_raise": "RuntimeError",
    }


def test_run_locked_by_a_live_process_is_skipped_and_stale_locks_are_broken(plugin, tmp_path):
    runs = expand_grid(tiny_profile("methods=[grid_tiny]", "seeds=[0, 1]"))
    held, stale = (run_dir(tmp_path, r) for r in runs)
    held.mkdir(parents=True)
    stale.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    (stale / ".lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "started": time.time(), "token": "x"}))
    with FileLock(held / ".lock") as lock:
        assert lock.acquire()
        result = run_grid(runs, Workspace(tmp_path, device="cpu"), progress=False)
    assert [r["seed"] for r in result.completed] == [1]
    assert len(result.skipped_running) == 1 and f"pid {os.getpid()}" in result.skipped_running[0][1]
    assert not (stale / ".lock").exists() and not (held / ".lock").exists()
    assert _summary(tmp_path)["skipped_running"][0]["held_by"].startswith(f"pid {os.getpid()}")


def test_file_lock_staleness(tmp_path):
    path = tmp_path / ".lock"
    first, second = FileLock(path), FileLock(path, heartbeat=1, stale_after=5)
    assert first.acquire() and not second.acquire()
    assert first.owner()["pid"] == os.getpid()
    os.utime(path, (time.time() - 60, time.time() - 60))  # owner stopped refreshing it
    assert second.acquire()
    first.release()  # no longer the owner: leaves the other's lock alone
    assert second.owner()["token"] == second.token
    second.release()
    assert not path.exists()
    other_host = {"pid": 1, "host": "elsewhere", "started": time.time(), "token": "t"}
    path.write_text(json.dumps(other_host))
    assert not FileLock(path).acquire()  # fresh lock of another host: live


def test_file_lock_heartbeat_refreshes_mtime(tmp_path):
    path = tmp_path / ".lock"
    with FileLock(path, heartbeat=0.05, stale_after=5) as lock:
        assert lock.acquire()
        os.utime(path, (0, 0))
        time.sleep(0.3)
        assert path.stat().st_mtime > time.time() - 5


@pytest.mark.process
def test_two_processes_run_each_run_once(tmp_path):
    marker, barrier = tmp_path / "starts.txt", tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "GRID_TEST_MARKER": str(marker), "GRID_TEST_BARRIER": f"{barrier}:2"}
    command = [sys.executable, "run_all.py", "benchmark", "--profile", "smoke", "--results-dir", str(tmp_path / "results")]
    command += ["--device", "cpu", "--plugin", str(PLUGIN), "--methods", "grid_tiny", "--seeds", "0", "1", "2"]
    command += [f"--set={o}" for o in TINY]
    processes = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=240)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert len(marker.read_text().splitlines()) == 3  # three training starts in all
    assert sum("skipped (running elsewhere)" in line for out in outputs for line in out.splitlines() if "seed" in line) >= 1
    with plugin_methods():
        runs = expand_grid(tiny_profile("methods=[grid_tiny]", "seeds=[0, 1, 2]"))
        assert all(completed_run(run.directory(tmp_path / "results"), run.hash) for run in map(RunConfig, runs))


def test_backend_arguments_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="needs --scheduler"):
        run_grid([], Workspace(tmp_path), backend="dask")
    with pytest.raises(ConfigError, match="backend must be one of"):
        run_grid([], Workspace(tmp_path), backend="ray")


def test_gpu_jobs_are_capped_at_one_run_per_device(monkeypatch):
    from defectseg.benchmarks.grid import execute as grid

    monkeypatch.setattr(grid.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(grid.torch.cuda, "device_count", lambda: 2)
    assert grid.cuda_devices("auto") == grid.cuda_devices("cuda") == ["cuda:0", "cuda:1"]
    assert grid.cuda_devices("cuda:1") == ["cuda:1"] and grid.cuda_devices("cpu") == []
    assert grid._local_jobs(None, "auto") == 2  # default: one run per GPU
    assert grid._local_jobs(5, "cuda") == 2
    assert grid._local_jobs(None, "cuda:1") == 1
    assert grid._local_jobs(None, "cpu") == 1 and grid._local_jobs(3, "cpu") == 3


def test_device_leases_are_exclusive(tmp_path):
    import threading

    from defectseg.benchmarks.engine.locks import lease_device

    devices, got = ["cuda:0", "cuda:1"], []
    with lease_device(devices, tmp_path) as first, lease_device(devices, tmp_path) as second:
        assert {first, second} == set(devices)

        def third() -> None:
            with lease_device(devices, tmp_path, poll_seconds=0.02) as device:
                got.append(device)

        waiting = threading.Thread(target=third)
        waiting.start()
        time.sleep(0.2)
        assert not got  # both devices taken: waits
    waiting.join(timeout=5)
    assert got and got[0] in devices
    assert not list(tmp_path.glob("*.lock"))


def test_warm_cache_decodes_each_dataset_and_size_once_and_leaves_broken_data_to_the_runs(tmp_path, capsys):
    runs = [RunConfig(run) for run in expand_grid(tiny_profile("methods=[supervised]", "seeds=[0, 1]"))]
    cache = tmp_path / "cache"
    workspace = Workspace(tmp_path, data_root=tmp_path, cache_dir=cache)
    warm_cache(runs, workspace, threads=2)
    assert len(list(cache.glob("*_images.npy"))) == 1 and len(list(cache.glob("*_masks.npy"))) == 1
    first = [path.stat().st_mtime_ns for path in sorted(cache.iterdir())]
    warm_cache(runs, workspace, threads=2)
    assert [path.stat().st_mtime_ns for path in sorted(cache.iterdir())] == first  # cached: not decoded again
    missing = resolve_run(load_profile("smoke"), "neu", 0.1, "supervised", 0)
    warm_cache([RunConfig(missing)], Workspace(tmp_path, data_root=tmp_path / "no-data", cache_dir=cache), threads=1)
    assert "could not pre-decode neu" in capsys.readouterr().out


def test_ratios_per_dataset_replace_the_profile_ratios_for_that_dataset():
    profile = load_profile("smoke", ["ratios=[0.1, 0.2]", "ratios_per_dataset={neu: [0.5]}"])
    runs = expand_grid(profile, datasets=["synthetic"])
    assert [r["ratio"] for r in runs] == [0.1, 0.2]
    from defectseg.benchmarks.engine.config import method_ratios

    assert method_ratios(profile, "supervised", "neu") == [0.5]
    with pytest.raises(ConfigError, match="ratios_per_dataset.neu must be a non-empty list"):
        load_profile("smoke", ["ratios_per_dataset={neu: 0.5}"])
