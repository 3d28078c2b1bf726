"""Per-image records: written by every run, small, and both protocols recomputed from them exactly."""
import json
import math

import numpy as np
import pytest
import torch

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.metrics import SegmentationMeter
from defectseg.benchmarks.engine.per_image import (
    PerImageError,
    PixelCounts,
    iou_from_counts,
    paper_image_iou,
    protocol_metrics,
    read_per_image,
    standard_miou,
    write_per_image,
)
from defectseg.benchmarks.engine.split_store import recorded_split
from tests.helpers import train_smoke


def _close(recomputed, reported, path=""):
    """Every number of ``reported`` equals ``recomputed`` to 1e-9 (None where None)."""
    if isinstance(reported, dict):
        assert set(recomputed) == set(reported), path
        for key in reported:
            _close(recomputed[key], reported[key], f"{path}.{key}")
    elif reported is None:
        assert recomputed is None, path
    else:
        assert math.isclose(recomputed, reported, rel_tol=0, abs_tol=1e-9), (path, recomputed, reported)


def _recompute_independently(tp, fp, fn):
    """Both mIoUs written from the definitions, image by image, without the project's helpers."""
    n, c = tp.shape
    tp_sum, fp_sum, fn_sum = tp.sum(0), fp.sum(0), fn.sum(0)
    ious = [tp_sum[k] / (tp_sum[k] + fp_sum[k] + fn_sum[k]) for k in range(1, c) if tp_sum[k] + fp_sum[k] + fn_sum[k] > 0]
    standard = sum(ious) / len(ious) if ious else None
    images = []
    for i in range(n):
        present = [k for k in range(1, c) if tp[i, k] + fn[i, k] > 0]
        if present:
            images.append(sum(tp[i, k] / (tp[i, k] + fp[i, k] + fn[i, k]) for k in present) / len(present))
    return standard, (sum(images) / len(images) if images else None)


@pytest.fixture(scope="module")
def uaps_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    metrics = train_smoke("uaps", results, overrides=("train.iterations=20", "train.val_every=10"))
    return results / "runs" / "smoke" / "synthetic" / "0.2" / "uaps" / "seed0", metrics


def test_a_real_run_writes_records_that_reproduce_metrics_json(uaps_run):
    directory, _ = uaps_run
    metrics = json.loads((directory / "metrics.json").read_text())
    records = read_per_image(directory / layout.PER_IMAGE)
    assert records.image_ids == recorded_split(directory, directory.parents[5]).test
    assert set(records.predictions) == {"default", *metrics["variants"]}
    for name, counts in records.predictions.items():
        reported = metrics if name == "default" else metrics["variants"][name]
        _close(protocol_metrics(counts, records.class_names), {k: reported[k] for k in ("standard", "paper")})
        standard, paper = _recompute_independently(counts.tp, counts.fp, counts.fn)
        _close(standard, reported["standard"]["miou"])
        _close(paper, reported["paper"]["miou"])
    # every image's pixels are counted once: TP + FN over classes = the image's pixel count
    counts = records.predictions["default"]
    assert (counts.tp + counts.fn).sum(1).tolist() == [32 * 32] * counts.num_images


def test_meter_counts_match_the_confusion_matrix():
    generator = torch.Generator().manual_seed(3)
    target = torch.randint(0, 4, (6, 9, 9), generator=generator)
    prediction = torch.randint(0, 4, (6, 9, 9), generator=generator)
    meter = SegmentationMeter(4)
    meter.update(prediction[:4], target[:4])
    meter.update(prediction[4:], target[4:])
    counts = meter.counts()
    for i in range(6):
        for k in range(4):
            assert counts.tp[i, k] == int(((prediction[i] == k) & (target[i] == k)).sum())
            assert counts.fp[i, k] == int(((prediction[i] == k) & (target[i] != k)).sum())
            assert counts.fn[i, k] == int(((prediction[i] != k) & (target[i] == k)).sum())


def test_hand_computed_example():
    # image 0: class 1 tp 2 fp 1 fn 1 (IoU 0.5); image 1: no defect in ground truth (not scored by paper)
    tp = np.array([[10, 2, 0], [12, 0, 0]])
    fp = np.array([[1, 1, 0], [0, 3, 0]])
    fn = np.array([[1, 1, 0], [3, 0, 0]])
    counts = PixelCounts(tp, fp, fn)
    assert paper_image_iou(counts)[0] == 0.5 and np.isnan(paper_image_iou(counts)[1])
    assert standard_miou(counts) == pytest.approx(2 / 7)  # class 1: 2 / (2 + 4 + 1); class 2 has no pixel
    metrics = protocol_metrics(counts, ["bg", "a", "b"])
    assert metrics["paper"]["miou"] == 0.5 and metrics["paper"]["num_images"] == 1
    assert metrics["standard"]["per_class_iou"]["b"] is None


def test_iou_is_tp_over_union_and_none_where_a_class_is_absent_from_both():
    iou = iou_from_counts(np.array([2, 0, 0, 3]), np.array([1, 4, 0, 0]), np.array([1, 0, 0, 0]))
    assert iou[0] == 0.5 and iou[1] == 0.0 and np.isnan(iou[2]) and iou[3] == 1.0


def test_file_stays_small_for_neu_sized_records(tmp_path):
    rng = np.random.default_rng(0)
    predictions = {}
    for name in ("default", "main", "ensemble"):
        tp = rng.integers(0, 40000, (840, 4))
        predictions[name] = PixelCounts(tp, rng.integers(0, 3000, (840, 4)), rng.integers(0, 3000, (840, 4)))
    path = tmp_path / layout.PER_IMAGE
    write_per_image(path, [f"neu/test/{i:06d}" for i in range(840)], ["bg", "in", "pa", "sc"], predictions)
    assert path.stat().st_size < 200_000
    loaded = read_per_image(path)
    assert np.array_equal(loaded.predictions["main"].fp, predictions["main"].fp)


def test_corrupt_or_missing_file_names_it(tmp_path):
    path = tmp_path / layout.PER_IMAGE
    with pytest.raises(PerImageError, match=str(path)):
        read_per_image(path)
    path.write_bytes(b"not a zip file")
    with pytest.raises(PerImageError, match="not a readable"):
        read_per_image(path)
