"""Fault injection: kill -9 of a worker, of the main process and of one of two grids on one folder,
corrupted cache / checkpoint / split / metrics / lock files, runs of another configuration, and
user errors on the command line (the tiny grid and its reference: ``fault_helpers``).

Kills land at a random moment of a run: the delay is in each assertion's message.
$GRID_TEST_STEP_SECONDS slows the steps down so that a kill meets a run in the middle. More
faults: test_faults_claims.py (run locks, Ctrl-C), test_faults_filesystem.py (read-only, full
disk, not a folder), test_faults_results.py (damaged results, mixed cells).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import yaml
import fault_helpers
from fault_helpers import METHOD, PACE, RNG, assert_like_reference, benchmark_command, linux_only, lock_owners, running, start, starts, wait_for
from grid_helpers import PLUGIN, TINY, keep_torch_threads  # noqa: F401 (autouse fixture)

import run_all
from defectseg.benchmarks.engine.run import Workspace
from defectseg.benchmarks.reporting.aggregate import collect_runs
from defectseg.benchmarks.engine.config import config_hash
from defectseg.benchmarks.engine.layout import run_dir
from defectseg.benchmarks.grid.execute import run_grid
from defectseg.benchmarks.engine.io import write_json
from defectseg.benchmarks.engine.locks import UNREADABLE_GRACE_SECONDS, FileLock
from defectseg.benchmarks.reporting.regenerate import benchmark_commands
from defectseg.datasets import DatasetError
from defectseg.datasets.cache import load_arrays
from defectseg.datasets.mtiles import MTiles
from defectseg.datasets.neu import NEUSeg
from defectseg.datasets.synthetic import SyntheticDefects
from defectseg.methods import get_method_class
from tests.test_datasets import write_mtiles, write_neu

plugin, runs, reference, copy_of_reference = fault_helpers.plugin, fault_helpers.runs, fault_helpers.reference, fault_helpers.copy_of_reference

# ---------------------------------------------------------------------------------------------
# killed processes


@pytest.mark.process
@linux_only
def test_a_killed_worker_fails_only_its_run_and_the_rerun_completes_it(runs, reference, tmp_path, monkeypatch):
    monkeypatch.setenv("GRID_TEST_STEP_SECONDS", PACE)
    delay = RNG.uniform(0.0, 1.0)
    killed: list[int] = []

    def kill_a_worker() -> None:
        (pid, *_) = wait_for(lambda: [p for p in lock_owners(tmp_path).values() if p != os.getpid()])
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
        killed.append(pid)

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    result = run_grid(runs, Workspace(tmp_path, device="cpu"), jobs=2, plugins=[PLUGIN], progress=False)
    killer.join()
    context = f"(kill {delay:.2f} s after the lock)"
    (victim, reason), = result.failed
    assert f"WorkerDiedError: worker process {killed[0]} was killed by signal 9, SIGKILL" in reason, context
    assert len(result.completed) == len(runs) - 1, context  # the other runs carried on
    failure = json.loads((run_dir(tmp_path, victim) / "failure.json").read_text())
    assert failure["error"] == "WorkerDiedError" and "out of memory" in failure["reason"], context
    assert not lock_owners(tmp_path) and not list(tmp_path.glob("runs/**/.lock")), context  # released

    monkeypatch.delenv("GRID_TEST_STEP_SECONDS")
    rerun = run_grid(runs, Workspace(tmp_path, device="cpu"), progress=False)
    assert rerun.completed == [victim] and len(rerun.skipped_done) == len(runs) - 1, context
    assert_like_reference(tmp_path, reference, runs, context)


@pytest.mark.process
@linux_only
def test_killing_the_main_process_kills_its_workers_before_they_start_queued_runs(runs, reference, tmp_path):
    marker, delay = tmp_path / "starts.txt", RNG.uniform(0.0, 0.8)
    main = start(benchmark_command(tmp_path / "results", "--jobs", "2"), GRID_TEST_STEP_SECONDS=PACE, GRID_TEST_MARKER=str(marker))
    workers = wait_for(lambda: len(lock_owners(tmp_path / "results")) == 2 and lock_owners(tmp_path / "results"))
    time.sleep(delay)
    main.kill()
    main.communicate(timeout=60)
    context = f"(main killed {delay:.2f} s after both workers took a run)"
    wait_for(lambda: not any(running(pid) for pid in workers.values()), timeout=10)
    started = starts(marker)
    time.sleep(1.5)
    assert starts(marker) == started, f"a run started after the main process died {context}"
    assert not run_dir(tmp_path / "results", runs[2]).exists(), context  # only queued: never started

    rerun = run_grid(runs, Workspace(tmp_path / "results", device="cpu"), progress=False)  # breaks the dead workers' locks
    assert not rerun.failed and not rerun.skipped_running, context
    assert_like_reference(tmp_path / "results", reference, runs, context)


@pytest.mark.process
@linux_only
def test_two_grids_on_one_folder_one_killed(runs, reference, tmp_path):
    marker, barrier, delay = tmp_path / "starts.txt", tmp_path / "barrier", RNG.uniform(0.0, 2.0)
    barrier.mkdir()
    env = {"GRID_TEST_STEP_SECONDS": PACE, "GRID_TEST_MARKER": str(marker), "GRID_TEST_BARRIER": f"{barrier}:2"}
    first, second = (start(benchmark_command(tmp_path / "results", "--jobs", "1"), **env) for _ in range(2))
    wait_for(lambda: len(list(barrier.iterdir())) == 2)  # both are training
    time.sleep(delay)
    first.kill()
    first.communicate(timeout=60)
    output = second.communicate(timeout=300)[0]
    context = f"(first grid killed {delay:.2f} s into training)"
    assert second.returncode == 0, f"{output} {context}"

    rerun = run_grid(runs, Workspace(tmp_path / "results", device="cpu"), progress=False)
    assert not rerun.failed and not rerun.skipped_running, context
    assert len(starts(marker)) + len(rerun.completed) <= len(runs) + 1, context  # only the killed run trained twice
    assert_like_reference(tmp_path / "results", reference, runs, context)


# ---------------------------------------------------------------------------------------------
# corrupted files


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_cache_file_is_named_and_decoded_again(tmp_path, capfd, damage):
    dataset = SyntheticDefects(num_images=8, image_size=32, seed=0)
    expected = load_arrays(dataset, dataset.records(), 16, tmp_path)
    images, masks = np.array(expected.images), np.array(expected.masks)
    (path,) = tmp_path.glob("*_images.npy")
    size = path.stat().st_size
    path.write_bytes(os.urandom(size) if damage == "garbage" else path.read_bytes()[: size // 2])
    capfd.readouterr()
    again = load_arrays(dataset, dataset.records(), 16, tmp_path)
    assert f"cache file {path}" in capfd.readouterr().err
    np.testing.assert_array_equal(again.images, images)
    np.testing.assert_array_equal(again.masks, masks)


@pytest.mark.parametrize("victim", ["last.pt", "best.pt", "split.ref"])
def test_a_corrupt_checkpoint_is_set_aside_and_the_run_restarts(runs, reference, tmp_path, monkeypatch, capfd, victim):
    run = runs[0]
    cls = get_method_class(METHOD)
    original = cls.on_step_end

    def interrupt(self, step: int) -> None:
        original(self, step)
        if step == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(cls, "on_step_end", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_grid([run], Workspace(tmp_path, device="cpu"), progress=False)
    monkeypatch.undo()
    directory = run_dir(tmp_path, run)
    assert (directory / "last.pt").exists()
    (directory / victim).write_bytes(b"not a checkpoint")
    capfd.readouterr()

    assert len(run_grid([run], Workspace(tmp_path, device="cpu"), progress=False).completed) == 1
    err = capfd.readouterr().err
    assert f"checkpoint {directory / 'last.pt'}" in err and "the run restarts from step 0" in err
    assert len(list(directory.glob("last.pt.corrupt-*"))) == 1  # set aside, not deleted
    assert_like_reference(tmp_path, reference, [run])


def test_a_corrupt_metrics_json_fails_its_run_by_name_and_the_grid_carries_on(runs, copy_of_reference, capsys):
    results = copy_of_reference
    damaged = run_dir(results, runs[1]) / "metrics.json"
    damaged.write_text("{garbage")
    result = run_grid(runs, Workspace(results, device="cpu"), progress=False)
    (run, reason), = result.failed
    assert run == runs[1] and f"{damaged} is not valid JSON" in reason and "move it away" in reason
    assert len(result.skipped_done) == 2 and damaged.read_text() == "{garbage"  # nothing written over it
    capsys.readouterr()
    assert run_all.main(["tables", "--results-dir", str(results)]) == 2
    assert f"error: {damaged} is not valid JSON" in capsys.readouterr().err


def test_empty_and_garbled_locks_are_stale_after_a_short_grace(runs, copy_of_reference):
    results = copy_of_reference
    directory = run_dir(results, runs[0])
    (directory / "metrics.json").unlink()
    lock = directory / ".lock"
    lock.write_bytes(b"")  # killed between creating and writing it
    result = run_grid([runs[0]], Workspace(results, device="cpu"), progress=False)
    assert "unreadable lock file" in result.skipped_running[0][1]  # fresh: maybe being written
    for content in (b"", b'{"pid": "x"'):
        lock.write_bytes(content)
        old = time.time() - UNREADABLE_GRACE_SECONDS - 1
        os.utime(lock, (old, old))
        holder = FileLock(lock)
        assert holder.acquire(), content  # broken: older than the grace period
        holder.release()
    lock.write_bytes(b"")
    os.utime(lock, (time.time() - UNREADABLE_GRACE_SECONDS - 1,) * 2)
    assert len(run_grid([runs[0]], Workspace(results, device="cpu"), progress=False).completed) == 1


@linux_only
def test_a_lock_held_by_a_zombie_is_stale(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # exits; not reaped until wait(): a zombie
    wait_for(lambda: not running(child.pid), timeout=30)
    path = tmp_path / ".lock"
    path.write_text(json.dumps({"pid": child.pid, "host": socket.gethostname(), "started": time.time(), "token": "t"}))
    holder = FileLock(path)
    assert holder.acquire()
    holder.release()
    child.wait()


# ---------------------------------------------------------------------------------------------
# runs of another configuration


def test_another_configuration_never_trains_over_a_run(runs, copy_of_reference, capsys):
    results = copy_of_reference
    before = {run["seed"]: (run_dir(results, run) / "metrics.json").stat().st_mtime_ns for run in runs}
    argv = ["benchmark", "--profile", "smoke", "--results-dir", str(results), "--device", "cpu", "--plugin", str(PLUGIN)]
    argv += ["--methods", METHOD, "--seeds", "0", *(f"--set={o}" for o in TINY), "--set=train.iterations=8"]
    assert run_all.main(argv) == 1
    err = capsys.readouterr().err
    directory = run_dir(results, runs[0])
    assert f"{directory} holds a completed run of another configuration (train.iterations: 6 (there) / 8 (requested))" in err
    assert "another --results-dir" in err and not (directory / "failure.json").exists()
    assert {run["seed"]: (run_dir(results, run) / "metrics.json").stat().st_mtime_ns for run in runs} == before


def test_tables_refuse_a_cell_mixing_configurations(runs, copy_of_reference, capsys):
    results = copy_of_reference
    directory = run_dir(results, runs[2])
    config = yaml.safe_load((directory / "config.yaml").read_text())
    config["train"]["iterations"] = 8  # seed 2 now stands for another experiment
    config["config_hash"] = config_hash({k: v for k, v in config.items() if k != "config_hash"})
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = json.loads((directory / "metrics.json").read_text())
    write_json(directory / "metrics.json", {**metrics, "config_hash": config["config_hash"]})
    assert run_all.main(["tables", "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert f"{run_dir(results, runs[0])} and {directory} are runs of one table cell with different configurations" in err
    assert "train.iterations: 6 (seed0) / 8 (seed2)" in err


def test_the_report_command_reruns_exactly_the_reported_runs(runs, copy_of_reference, capsys):
    results = copy_of_reference
    shutil.rmtree(run_dir(results, runs[1]))  # seeds 0 and 2 reported
    commands, notes = benchmark_commands(collect_runs(results), "smoke", results)
    (command,) = commands
    assert not notes and "--seeds 0 2" in command and "--set train.iterations=6" in command
    argv = shlex.split(command)[2:] + ["--plugin", str(PLUGIN), "--device", "cpu"]
    capsys.readouterr()
    assert run_all.main(argv) == 0
    assert "0 completed, 2 skipped (done)" in capsys.readouterr().out  # the same two runs, nothing retrained


# ---------------------------------------------------------------------------------------------
# input files and the command line


def test_unreadable_dataset_files_are_named_never_skipped(tmp_path):
    folder = write_mtiles(tmp_path) / "MT_Crack" / "Imgs"
    (folder / "b.jpg").symlink_to(folder / "missing.jpg")
    with pytest.raises(DatasetError, match=rf"image {folder / 'b.jpg'} \(a symlink to .*missing.jpg\) cannot be opened"):
        MTiles(tmp_path).records()
    (folder / "b.jpg").unlink()
    (folder / "b.jpg").symlink_to(folder / "b.jpg")
    with pytest.raises(DatasetError, match="b.jpg .*Too many levels of symbolic links"):
        MTiles(tmp_path).records()
    (folder / "b.jpg").unlink()
    (folder / "a.png").unlink()
    (folder / "a.png").symlink_to(folder / "gone.png")
    with pytest.raises(DatasetError, match=rf"mask {folder / 'a.png'} \(a symlink"):
        MTiles(tmp_path).records()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--dataset", "nonexistent"], "unknown dataset 'nonexistent'"),
        (["--ratio", "0"], "ratio must be a fraction in (0, 1]"),
        (["--ratio", "1.5"], "ratio must be a fraction in (0, 1]"),
        (["--ratio", "nan"], "ratio must be a fraction in (0, 1]"),
        (["--seed", "-1"], "seed must be an integer from 0"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--dataset", "mtiles", "--data-root", "{tmp}/empty"], "mtiles data not found"),
        (["--dataset", "mtiles", "--data-root", "{tmp}"], "cannot read image"),
        (["--set", "train.image_size=40"], "train.image_size (40, for synthetic) must be a multiple of 16"),
        (["--set", "train.image_size=40", "--set", "common_method_options.backbone=smp:Unet:resnet18"], "must be a multiple of 32"),
        (["--set", "train.image_size=1048576"], "GiB are available: lower train.image_size"),
        *((["--set", f"dataset_options.synthetic.num_images={n}"], "set is empty") for n in range(1, 5)),
        (["--set", "train.image_size=[64"], "override 'train.image_size=[64': the value is not valid YAML"),
    ],
)
def test_train_user_errors_are_one_line_and_exit_2(tmp_path, capsys, arguments, message):
    root = write_mtiles(tmp_path)
    for image in root.glob("MT_*/Imgs/a.*"):  # five images per class: enough for a split
        for copy in "bcde":
            shutil.copy(image, image.with_stem(copy))
    (root / "MT_Break" / "Imgs" / "a.jpg").write_bytes(b"not a jpeg")
    values = {"--dataset": "synthetic", "--ratio": "0.5", "--method": "supervised", "--profile": "smoke"}
    values.update((key, value.format(tmp=tmp_path)) for key, value in zip(arguments[::2], arguments[1::2]) if key != "--set")
    sets = [f"--set={value}" for key, value in zip(arguments[::2], arguments[1::2]) if key == "--set"]
    argv = ["train", "--results-dir", str(tmp_path / "results"), *(x for item in values.items() for x in item), *sets]
    assert run_all.main(argv) == 2
    err = capsys.readouterr().err  # progress bars aside (decoding), one line: the error
    assert "Traceback" not in err and err.count("error: ") == 1 and err.endswith("\n") and message in err.splitlines()[-1], err
    with pytest.raises(Exception, match=re.escape(message)):
        run_all.main([*argv, "--debug"])


def test_a_folder_named_like_an_image_and_a_mask_without_its_image_are_named(tmp_path):
    folder = write_mtiles(tmp_path) / "MT_Crack" / "Imgs"
    (folder / "z.jpg").mkdir()
    with pytest.raises(DatasetError, match=rf"image {folder / 'z.jpg'} is not a regular file; rename or remove it"):
        MTiles(tmp_path).records()
    (folder / "z.jpg").rmdir()
    shutil.copy(folder / "a.jpg", folder / "b.jpg")
    shutil.copy(folder / "a.png", folder / "b.png")
    (folder / "a.jpg").unlink()  # its mask a.png stays
    with pytest.raises(DatasetError, match=rf"mask {folder / 'a.png'} has no image in {folder} \(1 such mask\(s\)\)"):
        MTiles(tmp_path).records()
    neu = write_neu(tmp_path / "neu")
    (neu / "images" / "test" / "te0001.jpg").unlink()
    with pytest.raises(DatasetError, match=rf"mask {neu / 'annotations' / 'test' / 'te0001.png'} has no image"):
        NEUSeg(tmp_path / "neu").records()


def test_a_nan_loss_message_starts_its_own_line(plugin, tmp_path, capsys):
    argv = ["train", "--profile", "smoke", "--results-dir", str(tmp_path), "--device", "cpu", "--plugin", str(PLUGIN)]
    argv += ["--dataset", "synthetic", "--ratio", "0.2", "--method", "grid_nan", *(f"--set={o}" for o in TINY)]
    assert run_all.main(argv) == 1
    before, error = capsys.readouterr().err.rsplit("error: the run failed: non-finite loss", 1)
    assert before.endswith(("\r", "\n")), before[-80:]  # the progress bar was closed first
    assert "Traceback" not in before and error.count("\n") == 1


def test_report_tables_and_plots_agree_on_empty_and_unknown(copy_of_reference, tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "runs").mkdir(parents=True)
    for command in ("tables", "plots", "report"):
        assert run_all.main([command, "--results-dir", str(empty)]) == 1, command
        assert capsys.readouterr().err == f"error: nothing written: no completed runs under {empty / 'runs'}\n", command
        assert run_all.main([command, "--results-dir", str(copy_of_reference), "--profile", "nonexistent"]) == 2, command
        assert capsys.readouterr().err == (f"error: no runs of profile 'nonexistent' under {copy_of_reference / 'runs'} "
                                           "(profiles there: smoke)\n"), command
    assert not (empty / "report").exists()


def test_a_yaml_error_in_a_profile_is_one_line(tmp_path, capsys):
    profile = tmp_path / "broken.yaml"
    profile.write_text("train:\n  iterations: 10\n lr: [0.1\n")
    assert run_all.main(["train", "--profile", str(profile), "--dataset", "synthetic", "--ratio", "0.5", "--method", "supervised"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: profile {profile} is not valid YAML: ") and ", column " in err, err


@pytest.mark.parametrize(
    ("address", "message"),
    [("foo:bar", "--scheduler 'foo:bar' is not a Dask scheduler address"), ("http://x:1", "unknown address scheme 'http'"),
     ("tcp://127.0.0.1:{port}", "cannot reach the Dask scheduler at tcp://127.0.0.1:{port} (connection refused)")],
)
def test_a_bad_or_unreachable_scheduler_is_one_line_at_once(tmp_path, capsys, address, message):
    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    argv = ["benchmark", "--profile", "smoke", "--results-dir", str(tmp_path), "--backend", "dask", "--scheduler", address.format(port=port)]
    started = time.monotonic()
    assert run_all.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(port=port) in err and time.monotonic() - started < 10, err
    assert not list(tmp_path.iterdir())  # checked before anything ran


@pytest.mark.parametrize("command", ["eval", "predictions", "uncertainty", "similarity"])
def test_eval_and_pictures_of_a_missing_run_are_one_line_and_exit_2(tmp_path, capsys, command):
    assert run_all.main([command, "--run-dir", str(tmp_path / "nope")]) == 2
    missing = tmp_path / "nope" / "config.yaml"
    assert capsys.readouterr().err == f"error: {missing} not found: expected a run directory written by 'run_all.py train'\n"


def test_results_follow_the_umask(reference, runs):
    expected = 0o666 & ~_umask()
    files = [path for path in run_dir(reference, runs[0]).iterdir() if path.is_file()]
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in files} == {path.name: expected for path in files}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
