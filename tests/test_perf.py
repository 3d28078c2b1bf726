"""The performance harness: it runs, its reference path decodes files per sample, and both paths compute the same thing.

Correctness only (tiny 32x32 configurations); timings are the benchmark's job, not the tests'.
"""
import copy
import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from defectseg.benchmarks.perf import benchmark as perf
from defectseg.benchmarks.engine.config import PROFILE_DEFAULTS
from defectseg.benchmarks.perf.data import ReferenceDataset, numpy_flip_rot90, perf_images, reference_loader
from defectseg.benchmarks.perf.paths import FastPath, PeakMemory, PerfConfig, ReferencePath, eval_flops, parse_variant, step_flops
from defectseg.datasets.transforms import random_flip_rot90, to_float
from defectseg.methods import LabeledBatch, available_methods, build_method

CONFIG = PerfConfig(32, 2, 2)
TRAIN = copy.deepcopy(PROFILE_DEFAULTS["train"])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Synthetic stand-ins in NEU-Seg's layout (a data root without NEU-Seg)."""
    root = tmp_path_factory.mktemp("perf")
    return perf_images(root / "no_data_here", 4, 4, root / "standin")


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: two threads on a shared 2-core machine stall each other at every op."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def arrays_of(images):
    return perf.fast_arrays(images, CONFIG.size)


def test_harness_writes_both_paths_and_ratios(tmp_path):
    out = tmp_path / "out"
    argv = [
        "--methods", "supervised", "--configs", "32:2:2", "--steps", "2", "--warmup", "1",
        "--eval-images", "2", "--eval-repeats", "1", "--workers", "0", "--no-memory", "--device", "cpu",
        "--data-root", str(tmp_path / "no_data_here"), "--out", str(out), "--variants", "bf16+cl", "--matmul-size", "256",
    ]
    assert perf.main(argv) == 0
    rows = pd.read_csv(out / "perf.csv")
    assert set(rows.path) == {"reference", "fast", "fast[bf16+cl]"}
    assert (rows.gflop_per_step > 0).all() and (rows.step_ms > 0).all()
    assert rows.final_loss.notna().all()
    report = json.loads((out / "perf.json").read_text())
    table = pd.DataFrame(report["comparison"])
    for column in ("ref step ms", "fast step ms", "step speedup", "ref eval ms/img", "fast eval ms/img", "eval speedup"):
        assert column in table.columns
    assert table["step speedup"].iloc[0] == pytest.approx(table["ref step ms"].iloc[0] / table["fast step ms"].iloc[0])
    fast = rows[rows.path == "fast"].iloc[0]
    low, high = table[["speedup low", "speedup high"]].iloc[0]
    assert low <= high and len(report["rows"][0]["step_ms_blocks"]) == 2
    assert fast.step_ms_at_matmul_rate == pytest.approx(1000 * fast.gflop_per_step / 1e3 / report["matmul_tflops"][fast.precision])
    assert table["speedup at matmul rate"].iloc[0] == pytest.approx(table["ref step ms"].iloc[0] / fast.step_ms_at_matmul_rate)
    assert table["ensemble/main FLOPs"].isna().all()  # supervised has no ensemble
    assert report["machine"]["torch"] == torch.__version__ and "matmul_tflops" in report
    assert "step speedup" in (out / "perf.md").read_text() and "Partial" not in (out / "perf.md").read_text()
    assert report["complete"] is True


def test_a_stopped_run_keeps_what_it_measured(tmp_path, monkeypatch):
    out = tmp_path / "out"
    argv = [
        "--methods", "supervised", "mean_teacher", "--configs", "32:2:2", "--steps", "1", "--warmup", "1",
        "--eval-images", "2", "--eval-repeats", "1", "--workers", "0", "--device", "cpu",
        "--data-root", str(tmp_path / "no_data_here"), "--out", str(out), "--matmul-size", "256",
    ]
    measure = perf.Bench.measure

    def measure_or_die(bench):
        if bench.method_name == "mean_teacher":
            raise MemoryError("killed")
        return measure(bench)

    monkeypatch.setattr(perf.Bench, "measure", measure_or_die)
    with pytest.raises(MemoryError):
        perf.main(argv)
    assert set(pd.read_csv(out / "perf.csv").method) == {"supervised"}
    report = json.loads((out / "perf.json").read_text())
    assert report["complete"] is False and report["benches"] == 2
    assert "**Partial**: 1 of 2" in (out / "perf.md").read_text()


def test_reference_path_decodes_files_for_every_sample(images, monkeypatch):
    opened = []
    original_open = Image.open

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return original_open(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    loader = reference_loader(images, CONFIG.size, 2, 2, batches=3, workers=0, pin_memory=False)
    batches = list(loader)
    assert len(batches) == 3 and batches[0][0].shape == (4, 3, 32, 32) and batches[0][1].shape == (4, 32, 32)
    assert len(opened) == 3 * 4 * 2  # every batch, every sample: its image and its mask
    assert sum(path.endswith(".jpg") for path in opened) == 3 * 4


def test_reference_and_fast_augmentation_give_the_same_batch(images):
    labeled_images, labeled_masks, _ = arrays_of(images)
    generator = torch.Generator().manual_seed(5)
    coins = (torch.rand((3, 4), generator=torch.Generator().manual_seed(5)) < 0.5).numpy()  # what the fast path draws
    fast_images, fast_masks = random_flip_rot90(labeled_images, labeled_masks.long(), generator=generator)
    dataset = ReferenceDataset(images.dataset, images.labeled, CONFIG.size)
    reference = [dataset.load(i, coins[:, i]) for i in range(4)]
    assert torch.equal(torch.stack([image for image, _ in reference]), to_float(fast_images))
    assert torch.equal(torch.stack([mask for _, mask in reference]), fast_masks)


def test_numpy_rot90_turns_like_torch():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    rotated, mask = numpy_flip_rot90(image, image[0], np.array([False, False, True]))
    assert np.array_equal(rotated, torch.from_numpy(image).rot90(1, (-2, -1)).numpy())
    assert np.array_equal(mask, rotated[0])


@pytest.mark.parametrize("method_name", ["supervised", "uaps"])
def test_fast_path_computes_the_reference_loss_in_fp32(images, method_name):
    torch.manual_seed(0)
    method = build_method(method_name, {}, 3, 4)
    device = torch.device("cpu")
    variant = parse_variant("fp32", TRAIN)
    reference = ReferencePath(copy.deepcopy(method), images, CONFIG, TRAIN, device, batches=1, workers=0)
    fast = FastPath(copy.deepcopy(method), variant, arrays_of(images), CONFIG, TRAIN, device)
    labeled, unlabeled = reference.next_batch()
    layout = torch.channels_last if variant.channels_last else torch.contiguous_format
    fast_batch = (LabeledBatch(labeled.images.contiguous(memory_format=layout), labeled.masks), unlabeled.contiguous(memory_format=layout))
    losses = []
    for path, batch in ((reference, (labeled, unlabeled)), (fast, fast_batch)):
        for module in path.method.modules():  # element-wise dropout draws depend on the memory layout
            if isinstance(module, torch.nn.Dropout):
                module.eval()
        torch.manual_seed(1)
        losses.append(path.train_step(batch, 3000, 10_000))
    reference_losses, fast_losses = losses
    assert set(fast_losses) == set(reference_losses)
    for name, value in reference_losses.items():
        assert float(fast_losses[name].detach()) == pytest.approx(float(value.detach()), rel=1e-4, abs=1e-6), name
    reference.close()


def test_step_flops_are_counted(images):
    torch.manual_seed(0)
    method = build_method("supervised", {}, 3, 4)
    batch = (LabeledBatch(torch.randn(2, 3, 32, 32), torch.randint(0, 4, (2, 32, 32))), torch.randn(2, 3, 32, 32))
    flops = step_flops(method, batch, 100)
    assert flops > 2 * 0.1e9  # forward + backward of two 32x32 images through the paper U-Net
    assert all(p.grad is None for p in method.parameters())


def test_step_drift_tells_a_path_still_warming_up():
    assert perf.step_drift([2.0, 1.5, 1.0, 1.0]) == pytest.approx(1.75)
    assert perf.step_drift([1.0, 1.02, 0.99, 1.0]) == pytest.approx(1.01 / 0.995)
    assert np.isnan(perf.step_drift([1.0]))


def test_paired_speedup_range_pairs_blocks_timed_together():
    assert perf.paired_speedup_range([100.0, 300.0, 200.0], [50.0, 100.0, 200.0]) == {"speedup low": 1.0, "speedup high": 3.0}


def _flops(fn) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_eval_flops_count_one_encoder_pass_for_the_ensemble():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    uaps = build_method("uaps", {}, 3, 4).train()
    counts = eval_flops(uaps, images)
    assert uaps.training  # mode restored
    net = uaps.net.eval()
    features = net.encoder(images)
    encoder, decoder = _flops(lambda: net.encoder(images)), _flops(lambda: net.main_decoder(features))
    assert counts["main"] * 2 == encoder + decoder
    assert counts["variants"] * 2 == encoder + 4 * decoder  # one encoder pass for the four decoders
    assert eval_flops(build_method("supervised", {}, 3, 4), images)["variants"] == 0  # no ensemble


def test_peak_memory_sees_a_large_cpu_tensor():
    with PeakMemory(torch.device("cpu")) as peak:
        block = torch.ones(64 * 2**20 // 4)
        time.sleep(0.05)
        del block
    assert peak.peak_mib > 40


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="unknown setting 'fp16'"):
        parse_variant("fp16+cl", TRAIN)
    with pytest.raises(Exception, match="SIZE:LABELLED:UNLABELLED"):
        perf.parse_config("128x8")


def test_paper_run_reports_iterations_per_second(tmp_path, monkeypatch):
    from defectseg.benchmarks.perf import extras as perf_extras

    monkeypatch.setattr(perf_extras, "STANDIN_IMAGES", 40)
    tiny = ["train.image_size=32", "train.batch_size=2", "train.unlabeled_batch_size=2"]
    result = perf_extras.paper_run(0.5, torch.device("cpu"), tmp_path / "no_data_here", tmp_path / "out", overrides=tiny)
    assert result["iterations"] >= 1 and result["iterations_per_s"] > 0 and "stand-ins" in result["data"]
    assert json.loads((tmp_path / "out" / "paper_run.json").read_text())["images_per_step"] == 4


def test_all_methods_start_with_uaps_and_supervised():
    names = perf.resolve_methods(["all"])
    assert names[:2] == ["uaps", "supervised"]
    assert sorted(names) == sorted(available_methods())


def test_gpu_session_script_parses_and_its_wheels_are_the_pinned_versions():
    """The prepared GPU session is valid bash, and the wheels it installs are the versions CI tests."""
    root = Path(__file__).resolve().parents[1]
    subprocess.run(["bash", "-n", str(root / "benchmarks/perf/device_session.sh")], check=True)
    pins = dict(line.split("==") for line in (root / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    command = subprocess.run(["make", "-n", "device-wheels"], cwd=root, check=True, capture_output=True, text=True).stdout
    wheels = dict(re.findall(r"([a-z-]+)==([\d.]+)", command))
    assert set(wheels) == {"segmentation-models-pytorch", "scikit-posthocs"}, command
    assert all(pins[name] == version for name, version in wheels.items()), wheels
