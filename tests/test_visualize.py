"""Pictures: palette, error map, per-image IoU, uncertainty map, and each picture command on a smoke run."""
import math

import numpy as np
import pytest
import torch

import run_all
from defectseg.benchmarks.engine.layout import run_dir
from defectseg.benchmarks.engine.metrics import SegmentationMeter
from defectseg.benchmarks.engine.pictures import PALETTE, colorize, error_map, per_image_iou, uncertainty_map
from defectseg.methods import ConfigError, build_method
from tests.helpers import smoke_config, train_smoke

torch.set_num_threads(1)
TINY_RUN = ("train.iterations=4", "train.val_every=4", "train.checkpoint_every=4", "train.num_threads=1")


@pytest.fixture(scope="module")
def uaps_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    train_smoke("uaps", results, TINY_RUN)
    return run_dir(results, smoke_config("uaps", TINY_RUN)), results


def _cli(command, directory, results, *extra):
    return run_all.main([command, "--run-dir", str(directory), "--cache-dir", str(results / "cache"), "--device", "cpu", *extra])


@pytest.mark.parametrize(
    "command, extra",
    [("similarity", ["--num-images", "4"]), ("uncertainty", []), ("predictions", ["--num-images", "3"])],
)
def test_picture_commands_write_png_and_pdf(uaps_run, command, extra, capsys):
    directory, results = uaps_run
    assert _cli(command, directory, results, *extra) == 0
    printed = capsys.readouterr().out
    for suffix in ("png", "pdf"):
        path = directory / "figures" / f"{command}.{suffix}"
        assert path.stat().st_size > 1000 and str(path) in printed


def test_chosen_images_custom_output_and_bad_index(uaps_run, tmp_path, capsys):
    directory, results = uaps_run
    assert _cli("uncertainty", directory, results, "--images", "0", "2", "--out", str(tmp_path / "pics" / "unc.png")) == 0
    assert (tmp_path / "pics" / "unc.png").stat().st_size > 0 and (tmp_path / "pics" / "unc.pdf").stat().st_size > 0
    assert _cli("uncertainty", directory, results, "--images", "999") == 2
    assert "--images [999] out of range" in capsys.readouterr().err


def test_palette_is_fixed_by_class_index_with_black_background():
    mask = torch.tensor([[0, 1], [2, 3]])
    colours = colorize(mask)
    assert colours[0, 0].tolist() == [0, 0, 0]
    assert [colours[0, 1].tolist(), colours[1, 0].tolist()] == [PALETTE[1].tolist(), PALETTE[2].tolist()]
    assert len({tuple(c) for c in PALETTE.tolist()}) == len(PALETTE)


def test_error_map_marks_false_negatives_and_false_positives():
    target = torch.tensor([[1, 1, 0, 0]])
    prediction = torch.tensor([[1, 0, 2, 0]])
    rgb = error_map(prediction, target)
    assert rgb[0, 0].tolist() == [0, 0, 0]  # correct defect
    assert rgb[0, 1].tolist() == [0, 0, 255]  # missed defect: false negative, blue
    assert rgb[0, 2].tolist() == [255, 0, 0]  # defect on background: false positive, red
    assert rgb[0, 3].tolist() == [0, 0, 0]


def test_per_image_iou_is_the_paper_protocol_of_the_metrics():
    target = torch.tensor([[[1, 1, 0, 0]], [[0, 0, 0, 0]], [[2, 2, 1, 0]], [[1, 1, 0, 0]]])
    prediction = torch.tensor([[[1, 0, 0, 0]], [[0, 0, 0, 0]], [[0, 0, 0, 1]], [[1, 1, 2, 0]]])
    iou = per_image_iou(prediction, target, 3)
    # no defect in image 1: no IoU; image 3: class 2 is only predicted, so only class 1 counts
    assert math.isnan(iou[1]) and [iou[0], iou[2], iou[3]] == pytest.approx([0.5, 0.0, 1.0])
    meter = SegmentationMeter(3)
    meter.update(prediction, target)
    assert np.nanmean(iou) == pytest.approx(meter.compute()["paper"]["miou"], abs=1e-12)


def test_uncertainty_map_needs_several_members_and_is_zero_when_they_agree():
    logits = torch.randn(2, 3, 4, 4)
    assert uncertainty_map({"a": logits, "b": logits.clone()}).abs().max() < 1e-6
    assert (uncertainty_map({"a": logits, "b": torch.randn(2, 3, 4, 4)}) > 0).any()
    with pytest.raises(ConfigError, match="several decoders"):
        uncertainty_map({"prediction": logits})


def test_default_member_outputs_is_the_prediction():
    method = build_method("supervised", {}, 1, 3).eval()
    images = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        members = method.member_outputs(images)
        assert list(members) == ["prediction"] and torch.allclose(members["prediction"], method.predict(images))
