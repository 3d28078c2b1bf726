"""Profiles, overrides and the validation of config keys."""
import json
import subprocess

import pytest
import torch

from defectseg.benchmarks.engine import environment
from defectseg.benchmarks.engine.config import apply_override, config_hash, load_profile, resolve_run
from defectseg.benchmarks.engine.layout import run_dir
from defectseg.datasets.atomic import write_once
from defectseg.methods import ConfigError


def test_every_shipped_profile_loads():
    from defectseg.benchmarks.engine.config import CONFIG_DIR

    names = [p.stem for p in CONFIG_DIR.glob("*.yaml")]
    assert {"smoke", "quick"} <= set(names)
    for name in names:
        assert load_profile(name)["profile"] == name


def test_override_any_value_parsed_as_yaml():
    profile = load_profile("smoke", ["train.iterations=7", "train.precision=bf16", "ratios=[0.1, 0.5]"])
    assert profile["train"]["iterations"] == 7
    assert profile["train"]["precision"] == "bf16"
    assert profile["ratios"] == [0.1, 0.5]


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.iteratons'.*'iterations'"):
        load_profile("smoke", ["train.iteratons=3"])
    with pytest.raises(ConfigError, match="unknown config key 'foo'"):
        apply_override(load_profile("smoke"), "foo=1")


def test_unknown_profile_lists_known_ones():
    with pytest.raises(ConfigError, match="known profiles"):
        load_profile("nope")


def test_bad_profile_file_names_the_key(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("train: {lr: 0.01, epochs: 3}\n")
    with pytest.raises(ConfigError, match="train.epochs"):
        load_profile(str(path))


def test_unknown_method_option_lists_valid_options():
    profile = load_profile("smoke", ["method_options.supervised.depth=3"])
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['depth'\] for method 'supervised'.*backbone"):
        resolve_run(profile, "synthetic", 0.1, "supervised", 0)


def test_unknown_method_is_an_error():
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        resolve_run(load_profile("smoke"), "synthetic", 0.1, "nope", 0)


def test_resolved_run_hash_and_directory(tmp_path):
    profile = load_profile("smoke")
    a = resolve_run(profile, "synthetic", 0.1, "supervised", 0)
    assert a["method_options"]["backbone"] == "unet"
    assert config_hash(a) == config_hash(resolve_run(profile, "synthetic", 0.1, "supervised", 0))
    assert config_hash(a) != config_hash(resolve_run(profile, "synthetic", 0.1, "supervised", 1))
    assert run_dir(tmp_path, a) == tmp_path / "runs" / "smoke" / "synthetic" / "0.1" / "supervised" / "seed0"


def test_precision_defaults_to_auto_and_rejects_unknown_values():
    train = load_profile("smoke")["train"]
    assert train["precision"] == "auto" and train["channels_last"] is True
    with pytest.raises(ConfigError, match=r"train.precision must be one of \['auto', 'fp32', 'bf16'\], got 'fp16'"):
        load_profile("smoke", ["train.precision=fp16"])
    with pytest.raises(ConfigError, match="train.channels_last must be true or false, got 'yes please'"):
        load_profile("smoke", ["train.channels_last=yes please"])


def test_auto_precision_is_bf16_only_where_the_hardware_has_bf16_units(monkeypatch):
    cpu = torch.device("cpu")
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(environment, "native_bf16", lambda device, native=native: native)
        assert environment.resolve_precision("auto", cpu) == expected
        assert environment.resolve_precision("fp32", cpu) == "fp32" and environment.resolve_precision("bf16", cpu) == "bf16"


def test_pinned_bf16_warns_where_the_cpu_runs_it_slower_than_float32(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(environment, "native_bf16", lambda device: True)
    assert environment.slow_bf16_warning("bf16", cpu) is None
    monkeypatch.setattr(environment, "native_bf16", lambda device: False)
    assert environment.slow_bf16_warning("fp32", cpu) is None and environment.slow_bf16_warning("auto", cpu) is None
    for units, reason in ((False, "has neither AVX-512 BF16 nor AMX, so bf16 is emulated"), (True, "measures bf16 matrix products slower")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda units=units: units)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        warning = environment.slow_bf16_warning("bf16", cpu)
        assert warning.startswith("warning: train.precision is bf16") and reason in warning
        assert environment.cpu_model() in warning and "--set train.precision=auto" in warning


@pytest.fixture
def fresh_probe(monkeypatch, tmp_path):
    """An empty precision-probe folder and no probe remembered in this process."""
    monkeypatch.setenv("DEFECTSEG_CACHE_HOME", str(tmp_path / "cache"))
    environment.cpu_bf16_beats_fp32.cache_clear()
    yield tmp_path / "cache"
    environment.cpu_bf16_beats_fp32.cache_clear()  # later tests read this machine's own probe


def _rates(monkeypatch, bf16_rate: float) -> None:
    monkeypatch.setattr(environment, "matmul_tflops",
                        lambda device, dtype, size, repeats=5: bf16_rate if dtype == torch.bfloat16 else 1.0)


def test_auto_precision_on_a_cpu_is_bf16_only_where_a_bf16_product_measures_faster(monkeypatch, fresh_probe):
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    for bf16_rate, expected in ((2.0, True), (0.5, False)):  # the flags alone do not decide
        environment.precision_probe_path().unlink(missing_ok=True)
        environment.cpu_bf16_beats_fp32.cache_clear()
        _rates(monkeypatch, bf16_rate)
        assert environment.native_bf16(cpu) is expected
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    environment.precision_probe_path().unlink(missing_ok=True)
    environment.cpu_bf16_beats_fp32.cache_clear()
    _rates(monkeypatch, 2.0)
    assert environment.native_bf16(cpu) is False  # no bf16 units: never bf16


def test_the_precision_probe_is_measured_once_per_machine_so_every_process_agrees(monkeypatch, fresh_probe):
    _rates(monkeypatch, 2.0)
    assert environment.cpu_bf16_beats_fp32() is True
    path = environment.precision_probe_path()
    record = json.loads(path.read_text())
    assert path.parent == fresh_probe and record["bf16_faster"] is True and record["cpu"] == environment.cpu_model()
    assert record["bf16_tflops"] == 2.0 and record["fp32_tflops"] == 1.0

    _rates(monkeypatch, 0.5)  # a later process measuring under load would decide otherwise
    environment.cpu_bf16_beats_fp32.cache_clear()
    assert environment.cpu_bf16_beats_fp32() is True  # but reads the machine's probe


def test_of_two_processes_writing_the_probe_the_first_decides(fresh_probe):
    path = fresh_probe / "probe.json"
    assert write_once(path, b"first") == b"first"
    assert write_once(path, b"second") == b"first"
    assert path.read_bytes() == b"first" and [p.name for p in fresh_probe.iterdir()] == ["probe.json"]  # no temporary left


def test_a_damaged_precision_probe_is_named_and_measured_again(monkeypatch, fresh_probe, capfd):
    path = environment.precision_probe_path()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    _rates(monkeypatch, 0.5)
    assert environment.cpu_bf16_beats_fp32() is False
    assert f"warning: {path} is not a precision probe" in capfd.readouterr().err
    assert json.loads(path.read_text())["bf16_faster"] is False


def test_results_name_the_commit_the_process_loaded_not_a_later_checkout(monkeypatch, tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "one"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert environment.read_git_commit(tmp_path) == head
    assert environment.read_git_commit(tmp_path / "missing") is None

    loaded = environment.git_commit()
    assert loaded == environment.read_git_commit(environment.REPO_ROOT)

    run = subprocess.run

    def no_git(command, *args, **kwargs):
        assert command[0] != "git", "git_commit read the checkout again instead of the commit loaded at import"
        return run(command, *args, **kwargs)

    monkeypatch.setattr(environment.subprocess, "run", no_git)
    assert environment.git_commit() == loaded
    assert environment.environment(torch.device("cpu"))["git_commit"] == loaded


def test_matmul_rate_is_flops_over_the_median_time(monkeypatch):
    """2 n³ FLOPs over the median of the timed products (the warm-up left out), in TFLOP/s."""
    durations = iter([9.0, 0.004, 0.001, 0.002])  # warm-up, then three timed products: median 0.002 s
    clock = iter([0.0])
    ticks: list[float] = []

    def perf_counter() -> float:  # start and stop of each product, stop = start + its duration
        if len(ticks) % 2 == 0:
            ticks.append(next(clock, ticks[-1] if ticks else 0.0))
        else:
            ticks.append(ticks[-1] + next(durations))
        return ticks[-1]

    monkeypatch.setattr(environment.time, "perf_counter", perf_counter)
    rate = environment.matmul_tflops(torch.device("cpu"), torch.float32, 64, repeats=3)
    assert rate == pytest.approx(2 * 64**3 / 0.002 / 1e12)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("split_seed=abc", r"split_seed must be an integer in \[0, 4294967295\] \(or 'per_seed': each seed its own labelled subset\), got 'abc'"),
        ("seeds=[0, x]", r"seeds\[1\] must be an integer in \[0, 4294967295\], got 'x'"),
        ("seeds=3", "seeds must be a non-empty list of integers"),
        ("ratios=[1.5]", r"ratios must be a non-empty list of labelled fractions in \(0, 1\].*got \[1.5\]"),
        ("skip_missing_datasets=maybe", "skip_missing_datasets must be true or false, got 'maybe'"),
        ("methods=3", "methods must be a name or a non-empty list of names, got 3"),
        ("dataset_options.synthetic.num_images=abc", "dataset_options.synthetic.num_images must be an integer, got 'abc'"),
        ("dataset_options.synthetic.size=3", r"unknown config key 'dataset_options.synthetic.size'.*'num_images'"),
        ("dataset_options.nope={a: 1}", "dataset_options names unknown dataset 'nope'"),
    ],
)
def test_ill_typed_profile_keys_fail_when_loaded_naming_key_value_and_expectation(override, message):
    with pytest.raises(ConfigError, match=message):
        load_profile("smoke", [override])



def test_ill_typed_method_option_fails_before_any_run_starts():
    from defectseg.benchmarks.grid.execute import expand_grid

    profile = load_profile("smoke", ["methods=[uaps]", "method_options.uaps.lambda1=-1"])
    with pytest.raises(ConfigError, match="option 'lambda1' of method 'uaps' must be a number >= 0, got -1"):
        resolve_run(profile, "synthetic", 0.2, "uaps", 0)
    with pytest.raises(ConfigError, match="lambda1"):  # the grid resolves every run before it starts one
        expand_grid(profile, datasets=["synthetic"])


def test_per_seed_splits_make_each_seed_a_unit_with_its_own_labelled_subset(tmp_path):
    from defectseg.benchmarks.engine.run import RunConfig, Workspace
    from defectseg.benchmarks.engine.run_data import load_run_data

    fixed, units = load_profile("smoke"), load_profile("smoke", ["split_seed=per_seed"])
    assert [resolve_run(units, "synthetic", 0.2, "supervised", seed)["split_seed"] for seed in (0, 3)] == [0, 3]
    # seed 0 of a per-seed profile is the fixed split 0 run: the same hash, so a completed run is reused
    assert config_hash(resolve_run(units, "synthetic", 0.2, "supervised", 0)) == config_hash(resolve_run(fixed, "synthetic", 0.2, "supervised", 0))
    splits = {(method, seed): load_run_data(RunConfig(resolve_run(units, "synthetic", 0.2, method, seed)), Workspace(tmp_path)).split
              for method in ("supervised", "mean_teacher") for seed in (0, 1)}
    assert splits[("supervised", 1)] == splits[("mean_teacher", 1)]  # within a unit, one split for every method
    assert splits[("supervised", 0)].labeled != splits[("supervised", 1)].labeled  # each unit its own labelled images
    assert splits[("supervised", 0)].test != splits[("supervised", 1)].test  # the synthetic set carves its test set per split


def test_a_split_seed_that_is_neither_a_seed_nor_per_seed_is_named():
    with pytest.raises(ConfigError, match=r"split_seed must be an integer in \[0, 4294967295\] \(or 'per_seed'.*got 'each'"):
        load_profile("smoke", ["split_seed=each"])
