"""A fake but structurally exact results tree for the table, plot and report tests.

Profile ``fix`` (and a one-run profile ``other``): methods supervised (3 seeds), cps (3 seeds),
mean_teacher (1 seed) and uaps (2 seeds) on neu and dagm at 10% and 30%; mean_teacher has no
dagm/30% cell; uaps dagm/30% seed 1 failed (``failure.json``). UAPS ablation variants (``base_method: uaps``)
on neu: lambda1 0 and 0.3, lambda2 0.5, losses [], [ps], [ups], [ps, un], mixing average at 10%
and 30%, aux_decoders 0 and 1. There is no run of lambda1 0.5/1.0, of aux_decoders 2 or 4, nor
of the mixing ratio 50%.

Hand-checked cell: supervised neu 10% has standard mIoU 60, 62, 64 % and paper mIoU 70, 72, 74 %
over seeds 0..2 (mean 62 / 72, std 2, 3 seeds).

Per-image records (``per_image.npz``) for every completed run except cps on dagm at 30% and the
profile ``other`` (runs from before the records existed). Each run has 6 test images with class
1 only, image i with IoU (paper target) + OFFSETS[i], and one defect-free image whose false
positives bring the standard mIoU near its metrics.json value. So every run of one cell and
seed differs from another method's by a constant per image: cps beats supervised by 3 points in
every image under the paper protocol (a zero-width paired CI at +3).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from defectseg.benchmarks.engine.io import write_json, write_yaml
from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.per_image import PixelCounts, write_per_image

PROFILE = "fix"
CLASSES = {
    "neu": ["background", "inclusion", "patches", "scratches"],
    "dagm": ["background", *(f"Class{k}" for k in range(1, 11))],
}
UAPS_DEFAULTS = {
    "backbone": "unet", "rampup_fraction": 0.34, "aux_decoders": 3, "lambda1": 0.1, "lambda2": 0.1,
    "losses": ["ups", "un"], "mixing": "dynamic", "uncertainty_weighting": "pixel", "eval_mode": "main",
}
TRAIN = {"iterations": 300, "batch_size": 8, "image_size": 64, "precision": "fp32"}
ENVIRONMENT = {
    "python": "3.12.3", "torch": "2.14.1", "segmentation_models_pytorch": "0.6.0",
    "platform": "Linux-test", "device": "x86_64 CPU (2 threads)", "cpu": "Test CPU (family 1, model 2)",
    "git_commit": "0123456789abcdef",
}
HAND_CHECKED = {"method": "supervised", "dataset": "neu", "ratio": 0.1, "miou": 62.0, "paper_miou": 72.0, "std": 2.0, "seeds": 3}
FAILED = {"method": "uaps", "dataset": "dagm", "ratio": 0.3, "seed": 1, "reason": "CUDA out of memory (fake)"}

# (method, seeds, standard mIoU at neu 10% seed 0); paper mIoU = standard + 10 points;
# +2 points per seed, +3 at 30%, -5 on dagm
MAIN_METHODS = [("supervised", 3, 0.60), ("cps", 3, 0.63), ("mean_teacher", 1, 0.63), ("uaps", 2, 0.66)]
NO_RECORDS = {"method": "cps", "dataset": "dagm", "ratio": 0.3}
OFFSETS = (-0.03, -0.02, -0.01, 0.01, 0.02, 0.03)  # per-image IoU around the run's paper mIoU
PIXELS = 1000  # TP + FP + FN of class 1 in each defect image
# (variant name, option overrides, standard mIoU at neu 10%)
VARIANTS = [
    ("uaps_l1_0", {"lambda1": 0.0}, 0.61),
    ("uaps_l1_0.3", {"lambda1": 0.3}, 0.65),
    ("uaps_l2_0.5", {"lambda2": 0.5}, 0.64),
    ("uaps_loss_seg", {"losses": []}, 0.60),
    ("uaps_loss_ps", {"losses": ["ps"]}, 0.63),
    ("uaps_loss_ups", {"losses": ["ups"]}, 0.64),
    ("uaps_loss_ps_un", {"losses": ["ps", "un"]}, 0.62),
    ("uaps_avg", {"mixing": "average"}, 0.65),
    ("uaps_d0", {"aux_decoders": 0}, 0.60),
    ("uaps_d1", {"aux_decoders": 1}, 0.63),
]


def _per_class(names: list[str], value: float, with_background: bool) -> dict[str, float | None]:
    defects = {name: round(value + 0.01 * k, 4) for k, name in enumerate(names[1:])}
    if len(names) > 4:  # a class absent from ground truth and prediction has no IoU
        defects[names[-1]] = None
    return {"background": 0.98, **defects} if with_background else defects


def _metrics(run: dict[str, Any], miou: float, uaps_options: dict[str, Any] | None) -> dict[str, Any]:
    names = CLASSES[run["dataset"]]
    paper = miou + 0.10

    def protocols(standard_miou: float, paper_miou: float) -> dict[str, Any]:
        return {
            "standard": {
                "miou": standard_miou, "mdice": standard_miou + 0.05, "miou_with_bg": standard_miou + 0.08,
                "mdice_with_bg": standard_miou + 0.1, "pixel_accuracy": 0.97,
                "per_class_iou": _per_class(names, standard_miou, True),
                "per_class_dice": _per_class(names, standard_miou + 0.05, True),
            },
            "paper": {"miou": paper_miou, "num_images": 20, "per_class_iou": _per_class(names, paper_miou, False)},
        }

    decoders = (uaps_options["aux_decoders"] + 1) if uaps_options else 1
    metrics: dict[str, Any] = {
        **protocols(miou, paper),
        "eval_ms_per_image": 1.5,
        "macs": 190_000_000,
        "params": 1_820_000 + 630_000 * (decoders - 1),
        "num_test_images": 24,
        "status": "completed",
        "config_hash": f"hash-{run['method']}-{run['dataset']}-{run['ratio']}-{run['seed']}",
        "run": {k: run[k] for k in ("profile", "dataset", "ratio", "method", "seed", "split_seed")},
        "best_step": 300,
        "best_val_mdice": 0.7,
        "train_seconds": 12.5,
        "iterations_per_second": 24.0,
        "environment": ENVIRONMENT,
    }
    if uaps_options:
        metrics["variants"] = {"main": protocols(miou, paper), "ensemble": protocols(miou + 0.01, paper + 0.01)}
        metrics["variant_ms_per_image"] = {"main": 1.5, "ensemble": 1.5 * decoders}
        metrics["variant_macs"] = {"main": 190_000_000, "ensemble": 190_000_000 * decoders}
    return metrics


def _records(dataset: str, miou: float) -> PixelCounts:
    """6 defect images with paper IoU around ``miou + 0.1`` and one defect-free image (see the docstring)."""
    classes = len(CLASSES[dataset])
    tp, fp, fn = (np.zeros((len(OFFSETS) + 1, classes), dtype=np.int64) for _ in range(3))
    tp[:, 0] = 5000
    tp[:-1, 1] = [round(PIXELS * (miou + 0.1 + offset)) for offset in OFFSETS]
    fn[:-1, 1] = (PIXELS - tp[:-1, 1]) // 2
    fp[:-1, 1] = PIXELS - tp[:-1, 1] - fn[:-1, 1]
    fp[-1, 1] = round(tp[:-1, 1].sum() / miou - len(OFFSETS) * PIXELS)  # standard mIoU = sum TP / (sum TP+FP+FN)
    return PixelCounts(tp, fp, fn)


def _write_run(root: Path, profile: str, dataset: str, ratio: float, method: str, seed: int, miou: float,
               base_method: str | None = None, options: dict[str, Any] | None = None, failed: str | None = None,
               records: bool = True) -> Path:
    base = base_method or method
    method_options = {**UAPS_DEFAULTS, **(options or {})} if base == "uaps" else {"backbone": "unet", "rampup_fraction": 0.34}
    run = {"profile": profile, "dataset": dataset, "ratio": ratio, "method": method, "seed": seed, "split_seed": 0}
    directory = root / "runs" / profile / dataset / f"{ratio:g}" / method / f"seed{seed}"
    digest = f"hash-{method}-{dataset}-{ratio}-{seed}"
    write_yaml(directory / "config.yaml", {
        **run, "base_method": base, "train": TRAIN, "method_options": method_options,
        "dataset_options": {}, "config_hash": digest,
    })
    if failed:
        write_json(directory / "failure.json", {"config_hash": digest, "error": "RuntimeError", "reason": failed, "traceback": "..."})
    else:
        if records:
            image_ids = [f"{dataset}/test/{i:03d}" for i in range(len(OFFSETS) + 1)]
            write_per_image(directory / layout.PER_IMAGE, image_ids, CLASSES[dataset], {"default": _records(dataset, miou)})
        # a validation curve rising to its best at step 40 of 50
        curve = [(step, miou * min(step, 40) / 40 - (0.01 if step > 40 else 0)) for step in (10, 20, 30, 40, 50)]
        (directory / "train_log.csv").write_text("step,loss,val_mdice\n" + "".join(f"{s},0.5,{v}\n" for s, v in curve))
        write_json(directory / "metrics.json", _metrics(run, miou, method_options if base == "uaps" else None))
    return directory


def write_fixture_results(root: Path) -> Path:
    """Write the tree under ``root`` (as ``root/runs/...``); returns ``root``."""
    for dataset in ("neu", "dagm"):
        for ratio in (0.1, 0.3):
            offset = (0.0 if dataset == "neu" else -0.05) + (0.03 if ratio == 0.3 else 0.0)
            for method, seeds, miou in MAIN_METHODS:
                if method == "mean_teacher" and (dataset, ratio) == ("dagm", 0.3):
                    continue  # the missing cell
                for seed in range(seeds):
                    failed = FAILED["reason"] if (method, dataset, ratio, seed) == (
                        FAILED["method"], FAILED["dataset"], FAILED["ratio"], FAILED["seed"]) else None
                    records = (method, dataset, ratio) != (NO_RECORDS["method"], NO_RECORDS["dataset"], NO_RECORDS["ratio"])
                    _write_run(root, PROFILE, dataset, ratio, method, seed, miou + offset + 0.02 * seed, failed=failed,
                               records=records)
    for name, options, miou in VARIANTS:
        _write_run(root, PROFILE, "neu", 0.1, name, 0, miou, base_method="uaps", options=options)
    _write_run(root, PROFILE, "neu", 0.3, "uaps_avg", 0, 0.66, base_method="uaps", options={"mixing": "average"})
    _write_run(root, "other", "neu", 0.1, "supervised", 0, 0.5, records=False)
    return root
