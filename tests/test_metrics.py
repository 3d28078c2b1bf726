"""Both metric protocols against hand-computed cases, including absent classes."""
import math

import pytest
import torch

from defectseg.benchmarks.engine.metrics import SegmentationMeter


def t(rows):
    return torch.tensor(rows)


def test_standard_protocol_hand_computed():
    # 3 classes; one 2x3 image
    target = t([[[0, 1, 1], [0, 2, 2]]])
    pred = t([[[0, 1, 0], [1, 2, 2]]])
    meter = SegmentationMeter(3, ["bg", "a", "b"])
    meter.update(pred, target)
    m = meter.compute()["standard"]
    # class 0: gt {0,3}, pred {0,2}: I=1, U=3 ; class 1: gt {1,2}, pred {1,3}: I=1, U=3 ; class 2: I=2,U=2
    assert m["per_class_iou"] == pytest.approx({"bg": 1 / 3, "a": 1 / 3, "b": 1.0})
    assert m["per_class_dice"] == pytest.approx({"bg": 0.5, "a": 0.5, "b": 1.0})
    assert m["miou"] == pytest.approx((1 / 3 + 1) / 2)
    assert m["miou_with_bg"] == pytest.approx((1 / 3 + 1 / 3 + 1) / 3)
    assert m["mdice"] == pytest.approx(0.75)
    assert m["pixel_accuracy"] == pytest.approx(4 / 6)


def test_standard_protocol_accumulates_over_images_not_per_image():
    meter = SegmentationMeter(2)
    meter.update(t([[[1, 1]]]), t([[[1, 0]]]))  # I=1, U=2
    meter.update(t([[[0, 0]]]), t([[[1, 1]]]))  # I=0, U=2
    assert meter.compute()["standard"]["miou"] == pytest.approx(1 / 4)


def test_absent_class_is_none_and_left_out_of_mean():
    meter = SegmentationMeter(3, ["bg", "a", "b"])
    meter.update(t([[[0, 1]]]), t([[[0, 1]]]))
    m = meter.compute()
    assert m["standard"]["per_class_iou"]["b"] is None
    assert m["standard"]["miou"] == pytest.approx(1.0)
    assert m["paper"]["per_class_iou"]["b"] is None


def test_predicted_but_absent_class_counts_as_zero_iou():
    meter = SegmentationMeter(3)
    meter.update(t([[[0, 2]]]), t([[[0, 0]]]))
    m = meter.compute()["standard"]
    assert m["per_class_iou"]["2"] == 0.0
    assert m["per_class_iou"]["1"] is None
    assert m["miou"] == 0.0


def test_paper_protocol_per_image_mean_over_present_defect_classes():
    target = t([
        [[1, 1, 0, 0]],  # class 1 present: pred has 1 at [0,2] -> I=1, U=3
        [[0, 0, 0, 0]],  # no defect pixels: skipped
        [[2, 2, 1, 0]],  # class 1: I=1,U=1 ; class 2: I=1, U=2 -> mean 0.75
    ])
    pred = t([
        [[1, 0, 1, 0]],
        [[2, 2, 2, 2]],
        [[2, 0, 1, 0]],
    ])
    meter = SegmentationMeter(3)
    meter.update(pred, target)
    paper = meter.compute()["paper"]
    assert paper["num_images"] == 2
    assert paper["miou"] == pytest.approx((1 / 3 + 0.75) / 2)
    assert paper["per_class_iou"]["1"] == pytest.approx((1 / 3 + 1) / 2)
    assert paper["per_class_iou"]["2"] == pytest.approx(0.5)


def test_paper_protocol_no_defect_images_gives_none():
    meter = SegmentationMeter(2)
    meter.update(t([[[1, 1]]]), t([[[0, 0]]]))
    assert meter.compute()["paper"]["miou"] is None


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        SegmentationMeter(2).update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 3))


def test_batched_update_equals_one_by_one():
    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 4, (5, 8, 8), generator=g)
    target = torch.randint(0, 4, (5, 8, 8), generator=g)
    a, b = SegmentationMeter(4), SegmentationMeter(4)
    a.update(pred, target)
    for p, q in zip(pred, target):
        b.update(p[None], q[None])
    ma, mb = a.compute(), b.compute()
    assert ma["standard"]["miou"] == pytest.approx(mb["standard"]["miou"])
    assert ma["paper"]["miou"] == pytest.approx(mb["paper"]["miou"])
    assert not math.isnan(ma["paper"]["miou"])
