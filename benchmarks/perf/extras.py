"""A check beside the path comparison: a timed paper-configuration run (``paper_run``).

UAPS (default options) on NEU-Seg at 256x256 with 16 labelled + 16 unlabelled images per step,
trained for a wall-clock budget with the engine's own data, state and step (``TrainState``,
``train_step``); reports iterations/s. Falls back to synthetic stand-ins in NEU-Seg's layout (and
says so) when the data root has no NEU-Seg. (The fp32 vs bf16 accuracy check is a pair of
profiles: ``run_all.py benchmark --profile accuracy_check`` and ``--profile accuracy_check_fp32``.)
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from defectseg.datasets.neu import NEUSeg

from defectseg.benchmarks.engine.config import load_profile, resolve_run
from defectseg.benchmarks.engine.io import write_json
from defectseg.benchmarks.engine.run import RunConfig, Workspace
from defectseg.benchmarks.engine.run_data import load_run_data
from defectseg.benchmarks.engine.trainer import TrainState, train_step
from defectseg.benchmarks.perf.data import perf_data_root, write_standin
from defectseg.benchmarks.perf.paths import synchronize

PAPER_OVERRIDES = ["train.image_size=256", "train.batch_size=16", "train.unlabeled_batch_size=16"]
STANDIN_IMAGES = 400
PAPER_RUN_TOTAL = 10_000  # the run length the method's schedules (ramp-ups) assume


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
        run = RunConfig(resolve_run(load_profile("quick", overrides), "neu", 0.1, method_name, 0))
        loading = time.perf_counter()
        data = load_run_data(run, Workspace(out, data_root=root, device=str(device)))
        loading = time.perf_counter() - loading
    train = run.train.resolved(device)
    state = TrainState.start(run, data, train, device)
    losses_logged: list[tuple[int, float]] = []
    step, warm_step, warm_time = 0, 5, None
    synchronize(device)
    start = time.perf_counter()
    while True:
        losses = train_step(state, data, train, step, PAPER_RUN_TOTAL)
        step += 1
        if step == warm_step:
            synchronize(device)
            warm_time = time.perf_counter()
        if step % train.log_every == 0:
            losses_logged.append((step, float(losses["loss"].detach())))  # the runner's only sync
        if time.perf_counter() - start >= seconds:
            break
    synchronize(device)
    losses_logged.append((step, float(losses["loss"].detach())))
    elapsed = time.perf_counter() - start
    images_per_step = train.batch_size + train.unlabeled_batch_size
    steady = (step - warm_step) / (time.perf_counter() - warm_time) if warm_time and step > warm_step else float("nan")
    result = {
        "method": method_name,
        "data": source,
        "device": str(device),
        "image_size": train.image_size,
        "images_per_step": images_per_step,
        "precision": train.precision,
        "channels_last": train.channels_last,
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
