"""Filesystem faults: a read-only folder, a file where a folder is expected, a full disk. Each is one
line naming the path and the cause, exit 2, and leaves a state the rerun resumes from. The tiny grid
and its uninterrupted reference: ``fault_helpers``.

A read-only folder is a read-only bind mount when the tests run as root (errno EROFS, as on a
read-only volume), a folder without write permission otherwise (EACCES). A full disk is the
kernel's: writes of the chosen file go to /dev/full, which fails them with ENOSPC.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fault_helpers
import numpy as np
import pytest
import torch
from fault_helpers import assert_like_reference, train_arguments
from grid_helpers import keep_torch_threads  # noqa: F401 (autouse fixture)

import run_all
from defectseg.benchmarks.engine.layout import run_dir
from defectseg.datasets.cache import load_arrays
from defectseg.datasets.synthetic import SyntheticDefects

plugin, runs, reference, copy_of_reference = fault_helpers.plugin, fault_helpers.runs, fault_helpers.reference, fault_helpers.copy_of_reference
READ_ONLY = ("read-only file system", "permission denied")  # as root (bind mount) / as a user (mode 555)


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` (created) read-only for this process while the block runs."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if subprocess.run(["mount", "--bind", folder, folder], capture_output=True).returncode != 0:
        pytest.skip("running as root without the right to mount: cannot make a folder read-only")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", folder], capture_output=True, check=True)
        yield
    finally:
        subprocess.run(["umount", folder], capture_output=True, check=True)


def _error(capsys) -> str:
    """The error line of stderr (after any progress bar), checked to be the only error and no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error: ") == 1 and err.endswith("\n"), err
    return err.rstrip("\n").rsplit("\n", 1)[-1].rsplit("\r", 1)[-1]


def _read_only_cause(line: str) -> bool:
    return any(line.endswith(f"{cause})") or line.endswith(cause) for cause in READ_ONLY)


def _benchmark(results: Path, *extra: str) -> list[str]:
    argv = ["benchmark", "--profile", "smoke", "--results-dir", str(results), "--device", "cpu", "--plugin", str(fault_helpers.PLUGIN)]
    return argv + ["--methods", fault_helpers.METHOD, *extra, *(f"--set={o}" for o in fault_helpers.TINY)]


@pytest.mark.parametrize("command", ["train", "benchmark"])
def test_a_read_only_results_folder_is_one_line(runs, tmp_path, capsys, command):
    results = tmp_path / "results"
    argv = train_arguments(results, runs[0]) if command == "train" else _benchmark(results)
    with read_only(results):
        assert run_all.main(argv) == 2
    line = _error(capsys)
    assert line.startswith(f"error: --results-dir {results} is not writable (") and _read_only_cause(line), line


@pytest.mark.parametrize("command", ["tables", "report", "publish"])
def test_a_read_only_output_folder_is_one_line(copy_of_reference, tmp_path, capsys, command):
    out = tmp_path / "out"
    argv = [command, "--results-dir", str(copy_of_reference), "--to" if command == "publish" else "--out", str(out)]
    with read_only(out):
        assert run_all.main(argv) == 2
    line = _error(capsys)
    assert line.startswith(f"error: {out}/") and _read_only_cause(line), line


@pytest.mark.parametrize(
    ("command", "option"),
    [("train", "--results-dir"), ("train", "--cache-dir"), ("benchmark", "--cache-dir"), ("tables", "--out"), ("publish", "--to")],
)
@pytest.mark.parametrize("below", [False, True])
def test_a_file_where_a_folder_is_expected_is_one_line(runs, copy_of_reference, tmp_path, capsys, command, option, below):
    file = tmp_path / "a_file"
    file.write_text("")
    value = file / "sub" if below else file
    argv = {
        "train": train_arguments(copy_of_reference, runs[0]),
        "benchmark": _benchmark(copy_of_reference),
        "tables": ["tables", "--results-dir", str(copy_of_reference)],
        "publish": ["publish", "--results-dir", str(copy_of_reference)],
    }[command]
    if option == "--results-dir":
        argv = train_arguments(value, runs[0])
    else:
        argv = [*argv, option, str(value)]
    assert run_all.main(argv) == 2
    suffix = f" ({file} is)" if below else ""
    assert _error(capsys) == f"error: {option} {value} is a file, not a folder{suffix}"


def test_a_read_only_cache_folder_is_a_note_and_the_run_goes_on(runs, reference, tmp_path, capsys):
    cache = tmp_path / "cache"
    with read_only(cache):
        assert run_all.main(train_arguments(tmp_path / "results", runs[0], "--cache-dir", str(cache))) == 0
    err = capsys.readouterr().err
    assert f"note: cannot write the cache ({cache}/" in err and "decoded in memory, not cached" in err
    assert_like_reference(tmp_path / "results", reference, runs[:1])


def test_a_folder_in_place_of_a_cache_array_is_named_and_the_arrays_decoded(tmp_path, capfd):
    dataset = SyntheticDefects(num_images=8, image_size=32, seed=0)
    expected = load_arrays(dataset, dataset.records(), 16, tmp_path)
    images = np.array(expected.images)
    (path,) = tmp_path.glob("*_images.npy")
    path.unlink()
    path.mkdir()
    capfd.readouterr()
    again = load_arrays(dataset, dataset.records(), 16, tmp_path)
    err = capfd.readouterr().err
    assert f"cache file {path} is not a file (a folder?): move it away" in err and f"cannot write the cache ({path}:" in err
    np.testing.assert_array_equal(again.images, images)


def _full_disk(monkeypatch, name: str, nth: int) -> None:
    """From the ``nth`` atomic write of a file named ``name`` on, its writes go to /dev/full (ENOSPC)."""
    real_open, seen = os.open, []

    def open_(path, flags, mode=0o777, *, dir_fd=None):
        if Path(path).name.startswith(f".{name}.") and str(path).endswith(".tmp"):
            seen.append(path)
            if len(seen) >= nth:
                return real_open("/dev/full", os.O_WRONLY)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", open_)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize(("victim", "nth", "kept"), [("last.pt", 2, 2), ("best.pt", 1, None), ("metrics.json", 1, 4)])
def test_a_full_disk_keeps_the_previous_checkpoint_and_the_rerun_resumes(runs, reference, tmp_path, monkeypatch, capsys, victim, nth, kept):
    directory = run_dir(tmp_path, runs[0])
    _full_disk(monkeypatch, victim, nth)
    assert run_all.main(train_arguments(tmp_path, runs[0])) == 2
    monkeypatch.undo()
    assert _error(capsys) == f"error: {directory / victim}: no space left on device"
    assert not (directory / ".lock").exists() and not list(directory.glob(".*.tmp"))
    if kept is None:
        assert not (directory / "last.pt").exists()
    else:
        assert torch.load(directory / "last.pt", weights_only=False)["state"]["step"] == kept  # the previous one, whole
    assert run_all.main(train_arguments(tmp_path, runs[0])) == 0
    assert_like_reference(tmp_path, reference, runs[:1])
