"""Paper U-Net shape and size, shared losses and ramps."""
import math

import pytest
import torch

from methods.losses import dice_loss, kl_to_mean, pseudo_label_loss, segmentation_loss
from methods.networks import build_backbone, build_network, count_parameters
from methods.ramps import sigmoid_rampup


def test_paper_unet_matches_published_parameter_count():
    net = build_network("unet", 3, 4)
    assert count_parameters(net) == pytest.approx(1.82e6, rel=0.01)  # UAPS paper, D = 0
    extra_decoder = build_backbone("unet", 3, 4).make_decoder()
    assert count_parameters(extra_decoder) == pytest.approx(0.63e6, rel=0.01)  # 2.45 - 1.82 M
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 4, 32, 32)


def test_transposed_conv_variant_and_smp_backbone():
    assert build_network("unet-tconv", 1, 3)(torch.randn(1, 1, 32, 32)).shape == (1, 3, 32, 32)
    smp_net = build_network("smp:Unet:resnet18", 1, 3)
    assert smp_net(torch.randn(1, 1, 64, 64)).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="unknown backbone"):
        build_network("vgg", 1, 3)


def test_encoder_returns_five_levels():
    features = build_backbone("unet", 1, 2).encoder(torch.randn(1, 1, 32, 32))
    assert [f.shape[1] for f in features] == [16, 32, 64, 128, 256]
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4, 2]


def test_dice_loss_perfect_prediction_is_near_zero_and_wrong_is_high():
    target = torch.randint(0, 3, (2, 8, 8))
    perfect = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    assert dice_loss(perfect, target) < 1e-3
    wrong = torch.nn.functional.one_hot((target + 1) % 3, 3).permute(0, 3, 1, 2).float() * 50
    assert dice_loss(wrong, target) > 0.99


def test_segmentation_loss_is_half_ce_plus_dice():
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    expected = 0.5 * (torch.nn.functional.cross_entropy(logits, target) + dice_loss(logits, target))
    assert segmentation_loss(logits, target) == pytest.approx(expected.item())


def test_pixel_weight_of_ones_changes_nothing_and_zero_weight_ignores_pixels():
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    assert segmentation_loss(logits, target, torch.ones(2, 8, 8)) == pytest.approx(segmentation_loss(logits, target).item(), rel=1e-5)
    weight = torch.zeros(2, 8, 8)
    weight[0] = 1
    assert segmentation_loss(logits, target, weight) == pytest.approx(segmentation_loss(logits[:1], target[:1]).item(), rel=1e-5)


def test_pseudo_label_loss_gives_no_gradient_to_the_weight():
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    weight = torch.rand(1, 4, 4, requires_grad=True)
    pseudo_label_loss(logits, torch.zeros(1, 4, 4, dtype=torch.long), weight).backward()
    assert logits.grad is not None and weight.grad is None


def test_kl_to_mean_is_zero_for_agreeing_predictions():
    p = torch.softmax(torch.randn(2, 3, 4, 4), 1)
    assert kl_to_mean(p, p).abs().max() < 1e-6
    q = torch.softmax(torch.randn(2, 3, 4, 4), 1)
    assert (kl_to_mean(q, p) >= -1e-6).all()


def test_sigmoid_rampup():
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(50, 100) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(100, 100) == 1.0 and sigmoid_rampup(500, 100) == 1.0
    assert sigmoid_rampup(3, 0) == 1.0
