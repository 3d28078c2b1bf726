"""Two checks beside the path comparison: a timed paper-configuration run, and fp32 vs bf16 accuracy.

* ``paper_run``: UAPS (default options) on NEU-Seg at 256x256 with 16 labelled + 16 unlabelled
  images per step, trained for a wall-clock budget with the runner's own data, step and logging
  code; reports iterations/s. Falls back to synthetic stand-ins in NEU-Seg's layout (and says so)
  when the data root has no NEU-Seg.
* ``accuracy_check``: the same runs (synthetic data, 64x64, same seeds) trained in float32 and with
  bfloat16 autocast + channels-last, through ``train_run``; test metrics side by side, with the
  spread over seeds to judge the difference against, and each best checkpoint also evaluated in
  both precisions (to tell a training effect from an evaluation effect).
"""
from __future__ import annotations

import csv
import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from datasets.neu import NEUSeg
from methods import LabeledBatch, build_method

from benchmarks.engine.config import load_profile, resolve_run, run_dir
from benchmarks.engine.environment import resolved_train_settings
from benchmarks.engine.evaluate import evaluate
from benchmarks.engine.io import write_json
from benchmarks.perf.data import perf_data_root, write_standin
from benchmarks.perf.paths import synchronize
from benchmarks.engine.runner import EpochSampler, base_method, load_run_data, optimizer_step, sample_batch, setup_training, train_run

PAPER_OVERRIDES = ["train.image_size=256", "train.batch_size=16", "train.unlabeled_batch_size=16"]
STANDIN_IMAGES = 400


def paper_run(
    seconds: float, device: torch.device, data_root: Path | None, out: Path, method_name: str = "uaps",
    overrides: list[str] = PAPER_OVERRIDES,
) -> dict[str, Any]:
    """Train ``method_name`` in the paper configuration for ``seconds``; returns (and writes) its rates."""
    root = perf_data_root(data_root)
    with tempfile.TemporaryDirectory(prefix="perf_paper_") as standin:
        source = f"NEU-Seg under {root.resolve()}"
        if not (root / NEUSeg.folder).is_dir():
            root = write_standin(Path(standin), STANDIN_IMAGES)
            source = f"{STANDIN_IMAGES} synthetic stand-ins in NEU-Seg's layout (no NEU-Seg under the data root)"
        run_config = resolve_run(load_profile("quick", overrides), "neu", 0.1, method_name, 0)
        loading = time.perf_counter()
        data = load_run_data(run_config, root, None, None)
        loading = time.perf_counter() - loading
    train = resolved_train_settings(run_config["train"], device)
    torch.manual_seed(0)
    method = build_method(method_name, run_config["method_options"], data.in_channels, len(data.class_names))
    optimizer = setup_training(method, device, train)
    labeled_sampler = EpochSampler(len(data.labeled_images), train["batch_size"], 1)
    unlabeled_sampler = EpochSampler(len(data.unlabeled_images), train["unlabeled_batch_size"], 2)
    generator = torch.Generator().manual_seed(3)
    losses_logged: list[tuple[int, float]] = []
    step, warm_step, warm_time = 0, 5, None
    synchronize(device)
    start = time.perf_counter()
    while True:
        images, masks = sample_batch(data.labeled_images, data.labeled_masks, labeled_sampler, generator, device, train)
        unlabeled, _ = sample_batch(data.unlabeled_images, None, unlabeled_sampler, generator, device, train)
        losses = optimizer_step(method, optimizer, LabeledBatch(images, masks), unlabeled, step, 10_000, device, train["precision"])
        step += 1
        if step == warm_step:
            synchronize(device)
            warm_time = time.perf_counter()
        if step % train["log_every"] == 0:
            losses_logged.append((step, float(losses["loss"].detach())))  # the runner's only sync
        if time.perf_counter() - start >= seconds:
            break
    synchronize(device)
    losses_logged.append((step, float(losses["loss"].detach())))
    elapsed = time.perf_counter() - start
    images_per_step = train["batch_size"] + train["unlabeled_batch_size"]
    steady = (step - warm_step) / (time.perf_counter() - warm_time) if warm_time and step > warm_step else float("nan")
    result = {
        "method": method_name,
        "data": source,
        "device": str(device),
        "image_size": train["image_size"],
        "images_per_step": images_per_step,
        "precision": train["precision"],
        "channels_last": train["channels_last"],
        "data_loading_s": round(loading, 2),
        "iterations": step,
        "seconds": round(elapsed, 2),
        "iterations_per_s": step / elapsed,
        "iterations_per_s_after_warmup": steady,
        "images_per_s": images_per_step * step / elapsed,
        "loss_first_logged": losses_logged[0],
        "loss_last_logged": losses_logged[-1],
    }
    print(pd.Series(result).to_string(), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "paper_run.json", result)
    return result


def _test_miou(run_config: dict[str, Any], results: Path, cache_dir: Path, precision: str) -> float:
    """Test mIoU of a finished run's best checkpoint, evaluated (on the CPU) in ``precision``."""
    data = load_run_data(run_config, None, cache_dir, None)
    method = build_method(base_method(run_config), run_config["method_options"], data.in_channels, len(data.class_names))
    method.load_state_dict(torch.load(run_dir(results, run_config) / "best.pt", map_location="cpu", weights_only=True))
    device = torch.device("cpu")
    metrics = evaluate(method, data.test_images, data.test_masks, data.class_names, device, precision=precision)
    return metrics["standard"]["miou"]


ACCURACY_SETTINGS = {"fp32": ("fp32", False), "bf16+cl": ("bf16", True)}


def accuracy_check(iterations: int, methods: list[str], device: torch.device, out: Path, seeds: tuple[int, ...] = (0, 1)) -> pd.DataFrame:
    """Train each method on synthetic 64x64 data in fp32 and in bf16 + channels-last; test metrics."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="perf_accuracy_") as tmp:
        for method, seed, (name, (precision, channels_last)) in itertools.product(methods, seeds, ACCURACY_SETTINGS.items()):
            overrides = [
                f"train.iterations={iterations}", f"train.precision={precision}", f"train.channels_last={channels_last}",
                "train.image_size=64", "train.batch_size=8", "train.unlabeled_batch_size=8",
                f"train.val_every={max(iterations // 4, 1)}", f"train.checkpoint_every={iterations}", f"train.log_every={max(iterations // 10, 1)}",
                "dataset_options.synthetic={num_images: 200, image_size: 64}",
            ]
            run_config = resolve_run(load_profile("smoke", overrides), "synthetic", 0.2, method, seed)
            results = Path(tmp) / name
            metrics = train_run(run_config, results, device=str(device), cache_dir=Path(tmp) / "cache", progress=False)
            with open(run_dir(results, run_config) / "train_log.csv", newline="") as handle:
                last = list(csv.DictReader(handle))[-1]
            rows.append({
                "method": method, "setting": name, "seed": seed, "iterations": iterations,
                "test_miou": metrics["standard"]["miou"], "test_mdice": metrics["standard"]["mdice"],
                **{f"test_miou_eval_{p}": _test_miou(run_config, results, Path(tmp) / "cache", p) for p in ("fp32", "bf16")},
                "final_train_loss": float(last["loss"]), "train_seconds": metrics["train_seconds"],
            })
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "accuracy.csv", index=False)
    columns = ["test_miou", "test_miou_eval_fp32", "test_miou_eval_bf16", "final_train_loss", "train_seconds"]
    summary = frame.groupby(["method", "setting"])[columns].agg(["mean", "std"])
    print(frame.to_string(index=False), summary.to_string(), sep="\n\n", flush=True)
    return frame
