"""Pictures of a trained run, each written as PNG and PDF.

* ``similarity``: the B x B pairwise similarity maps (``methods.similarity.similarity_map``) of
  every member network or decoder (``Method.member_outputs``, output logits) on a batch of test
  images, side by side on one colour scale, like the simEps paper's figure.
* ``uncertainty``: per test image: image, ground truth, prediction, error map and uncertainty
  map. Error map: false negatives (a defect pixel of the ground truth not predicted as its class)
  in blue, false positives (a defect predicted on background) in red. Uncertainty: mean over the
  members of KL(p̄ ‖ p_d) with every decoder in eval mode (clean features), as UAPS defines u_d.
  Images are chosen by index or as the ``worst`` by per-image IoU (``per_image_iou``).
  Per-image IoU is the *paper* protocol's (``benchmarks.engine.per_image.paper_image_iou``, from
  the same per-image pixel counts as the run's metrics): the mean IoU of the defect classes in the
  image's ground truth. An image without defect pixels has none (shown as "IoU n/a", never among
  the ``worst``).
* ``predictions``: image / ground truth / prediction for a few test images.

Class colours come from one palette indexed by class id (background black), the same for every
dataset. Figures are drawn on matplotlib's non-interactive Agg canvas (no pyplot state). Images
shown first are test images with defects, in test-split order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import seaborn as sns
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor

from defectseg.methods import ConfigError
from defectseg.methods.ensemble import mean_probabilities
from defectseg.methods.losses import hard_labels, kl_to_mean
from defectseg.methods.similarity import similarity_map

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.evaluate import prepare_images
from defectseg.benchmarks.engine.metrics import SegmentationMeter
from defectseg.benchmarks.engine.per_image import paper_image_iou
from defectseg.benchmarks.engine.run import Workspace
from defectseg.benchmarks.engine.runner import TrainedRun, load_trained_run

# class id -> RGB; 0 (background) is black. Distinct colours after Trubetskoy's 20-colour list.
PALETTE = np.array(
    [
        (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
        (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
        (0, 128, 128), (220, 190, 255), (170, 110, 40), (128, 0, 0), (128, 128, 0),
    ],
    dtype=np.uint8,
)
FALSE_POSITIVE, FALSE_NEGATIVE = (255, 0, 0), (0, 0, 255)
FIGURE_KINDS = ("similarity", "uncertainty", "predictions")


def colorize(mask: Tensor) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colours of ``PALETTE``."""
    if int(mask.max()) >= len(PALETTE):
        raise ValueError(f"class id {int(mask.max())} has no colour: the palette covers {len(PALETTE)} classes")
    return PALETTE[mask.cpu().numpy()]


def error_map(prediction: Tensor, target: Tensor) -> np.ndarray:
    """(H, W, 3) uint8: false negatives blue, false positives red, everything else black."""
    rgb = np.zeros((*target.shape, 3), dtype=np.uint8)
    false_negative = ((target != 0) & (prediction != target)).cpu().numpy()
    false_positive = ((prediction != 0) & (target == 0)).cpu().numpy()
    rgb[false_negative] = FALSE_NEGATIVE
    rgb[false_positive] = FALSE_POSITIVE
    return rgb


def per_image_iou(prediction: Tensor, target: Tensor, num_classes: int) -> np.ndarray:
    """(B,) paper-protocol IoU of each image, as the run's metrics count it; NaN for an image without defects."""
    meter = SegmentationMeter(num_classes)
    meter.update(prediction, target)
    return paper_image_iou(meter.counts())


def uncertainty_map(member_logits: dict[str, Tensor]) -> Tensor:
    """Mean over members of KL(p̄ ‖ p_d) per pixel, (B, H, W); needs at least two members."""
    if len(member_logits) < 2:
        raise ConfigError(
            f"an uncertainty map needs a method with several decoders or networks; this one has only {list(member_logits)}"
        )
    logits = list(member_logits.values())
    mean = mean_probabilities(logits)
    return torch.stack(kl_to_mean([member.float().softmax(1) for member in logits], mean)).mean(0)


@torch.inference_mode()
def predict_all(run: TrainedRun, indices: list[int] | None = None) -> Tensor:
    """Predicted class ids (N, H, W) of the test images (all, or those at ``indices``), on the CPU."""
    images = run.data.test_images if indices is None else run.data.test_images[indices]
    batch = run.config.train.eval_batch_size
    return torch.cat(
        [hard_labels(run.method.predict(_images(run, images[start : start + batch]))).cpu() for start in range(0, len(images), batch)]
    )


def similarity_figure(run: TrainedRun, num_images: int = 8) -> Figure:
    indices = _first_images(run, num_images)
    with torch.inference_mode():
        members = run.method.member_outputs(_images(run, run.data.test_images[indices]))
        maps = {name: similarity_map(logits).cpu().numpy() for name, logits in members.items()}
    low, high = min(m.min() for m in maps.values()), max(m.max() for m in maps.values())
    fig = _figure((3.4 * len(maps) + 0.8, 3.6))
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    for i, (ax, (name, values)) in enumerate(zip(axes, maps.items())):
        sns.heatmap(values, ax=ax, vmin=low, vmax=high, cmap="viridis", square=True, cbar=i == len(maps) - 1,
                    xticklabels=False, yticklabels=False)
        ax.set_title(name)
    fig.suptitle(f"Pairwise similarity maps of {len(indices)} test images: {_describe(run)}")
    return fig


def uncertainty_figure(run: TrainedRun, images: Literal["worst"] | list[int] = "worst", num_worst: int = 4) -> Figure:
    masks = run.data.test_masks.long()
    if images == "worst":
        iou = per_image_iou(predict_all(run), masks, len(run.data.class_names))
        scored = np.flatnonzero(~np.isnan(iou))
        if not scored.size:
            raise ConfigError("no test image has defect pixels, so none has an IoU to rank by; choose images with --images")
        indices = scored[np.argsort(iou[scored], kind="stable")][:num_worst].tolist()
    else:
        indices = _check_indices(images, len(masks))
    with torch.inference_mode():
        batch = _images(run, run.data.test_images[indices])
        prediction = hard_labels(run.method.predict(batch)).cpu()
        uncertainty = uncertainty_map(run.method.member_outputs(batch)).cpu().numpy()
    iou = per_image_iou(prediction, masks[indices], len(run.data.class_names))
    titles = ("image", "ground truth", "prediction", "error (FN blue, FP red)", "uncertainty")
    fig = _figure((3.0 * len(titles), 2.9 * len(indices) + 0.9))
    axes = fig.subplots(len(indices), len(titles), squeeze=False)
    for row, index in enumerate(indices):
        panels = (
            run.data.test_images[index],
            colorize(masks[index]),
            colorize(prediction[row]),
            error_map(prediction[row], masks[index]),
        )
        for col, panel in enumerate(panels):
            _show(axes[row, col], panel)
        shown = axes[row, -1].imshow(uncertainty[row], cmap="magma")
        fig.colorbar(shown, ax=axes[row, -1], fraction=0.046)
        score = "n/a" if np.isnan(iou[row]) else f"{iou[row]:.2f}"
        axes[row, 0].set_ylabel(f"test #{index}\nIoU {score}")
        for col, title in enumerate(titles):
            axes[row, col].set(xticks=[], yticks=[], title=title if row == 0 else "")
    _class_legend(fig, run)
    fig.suptitle(f"Uncertainty: {_describe(run)}")
    return fig


def predictions_figure(run: TrainedRun, num_images: int = 8) -> Figure:
    indices = _first_images(run, num_images)
    prediction = predict_all(run, indices)
    fig = _figure((2.0 * len(indices) + 1.2, 6.8))
    axes = fig.subplots(3, len(indices), squeeze=False)
    for col, index in enumerate(indices):
        panels = (run.data.test_images[index], colorize(run.data.test_masks[index].long()), colorize(prediction[col]))
        for row, panel in enumerate(panels):
            _show(axes[row, col], panel)
            axes[row, col].set(xticks=[], yticks=[])
        axes[0, col].set_title(f"test #{index}")
    for row, label in enumerate(("image", "ground truth", "prediction")):
        axes[row, 0].set_ylabel(label)
    _class_legend(fig, run)
    fig.suptitle(f"Predictions: {_describe(run)}")
    return fig


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """Write ``stem``.png and ``stem``.pdf; returns both paths."""
    stem = Path(stem)
    stem = stem.with_suffix("") if stem.suffix in (".png", ".pdf") else stem
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.parent / f"{stem.name}.{ext}" for ext in ("png", "pdf")]
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return paths


def draw_figure(
    kind: str,
    run_dir: Path,
    workspace: Workspace,
    out: Path | None = None,
    num_images: int | None = None,
    images: list[str] | None = None,
) -> list[Path]:
    """Draw one figure kind for a run (its data from ``workspace``); writes ``out`` (default
    ``<run-dir>/figures/<kind>``) .png + .pdf."""
    if kind not in FIGURE_KINDS:
        raise ConfigError(f"unknown figure {kind!r}; valid: {list(FIGURE_KINDS)}")
    if num_images is not None and num_images < 1:
        raise ConfigError(f"--num-images must be at least 1, got {num_images}")
    run = load_trained_run(run_dir, workspace)
    if kind == "similarity":
        fig = similarity_figure(run, num_images or 8)
    elif kind == "predictions":
        fig = predictions_figure(run, num_images or 8)
    else:
        fig = uncertainty_figure(run, parse_image_selection(images or ["worst"]), num_images or 4)
    return save_figure(fig, out or layout.figures_dir(run_dir) / kind)


def parse_image_selection(values: list[str]) -> Literal["worst"] | list[int]:
    """``["worst"]`` or test-image indices given as strings."""
    if values == ["worst"]:
        return "worst"
    try:
        return [int(value) for value in values]
    except ValueError:
        raise ConfigError(f"--images must be 'worst' or test-image indices, got {values}") from None


def _check_indices(indices: list[int], count: int) -> list[int]:
    bad = [i for i in indices if not 0 <= i < count]
    if bad:
        raise ConfigError(f"--images {bad} out of range: the test split has {count} images (0..{count - 1})")
    return indices


def _first_images(run: TrainedRun, count: int) -> list[int]:
    """``count`` test indices, images with defects first, each group in split order."""
    has_defect = (run.data.test_masks.flatten(1) > 0).any(1)
    order = torch.cat([torch.nonzero(has_defect).flatten(), torch.nonzero(~has_defect).flatten()])
    return order[:count].tolist()


def _images(run: TrainedRun, images_u8: Tensor) -> Tensor:
    return prepare_images(images_u8, run.device, channels_last=False, normalization=run.config.train.normalization)


def _figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _show(ax, panel: Tensor | np.ndarray) -> None:
    """A uint8 image (C, H, W) tensor in grey or RGB, or an (H, W, 3) colour array."""
    if isinstance(panel, Tensor):
        array = panel.cpu().numpy()
        if array.shape[0] == 1:
            ax.imshow(array[0], cmap="gray", vmin=0, vmax=255)
            return
        panel = array.transpose(1, 2, 0)
    ax.imshow(panel, interpolation="nearest")


def _class_legend(fig: Figure, run: TrainedRun) -> None:
    handles = [Patch(color=PALETTE[i] / 255, label=name) for i, name in enumerate(run.data.class_names)]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), frameon=False)


def _describe(run: TrainedRun) -> str:
    c = run.config
    return f"{c.method} on {c.dataset}, ratio {c.ratio:g}, seed {c.seed}"
