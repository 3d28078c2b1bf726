"""Paper U-Net shape and size, shared losses and ramps."""
import math

import pytest
import torch

from defectseg.methods.losses import (
    dice_loss,
    hard_labels,
    kl_to_mean,
    log_probabilities,
    pseudo_label_loss,
    segmentation_loss,
    segmentation_loss_from_log_probs,
)
from defectseg.methods.networks import DenseInterpolationGradients, UpBlock, build_backbone, build_network, count_parameters
from defectseg.methods.perturbations import FeatureNoise, scale_in_layout
from defectseg.methods.ramps import sigmoid_rampup


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


def test_kl_to_mean_is_zero_for_agreeing_predictions_and_matches_its_definition():
    p = torch.softmax(torch.randn(2, 3, 4, 4), 1)
    assert kl_to_mean([p], p)[0].abs().max() < 1e-6
    q = torch.softmax(torch.randn(2, 3, 4, 4), 1)
    for member, kl in zip((p, q), kl_to_mean([p, q], q)):
        assert (kl >= -1e-6).all()
        expected = torch.nn.functional.kl_div(member.log(), q, reduction="none").sum(1)  # sum_c q (log q - log p)
        torch.testing.assert_close(kl, expected, atol=1e-5, rtol=1e-5)


def test_segmentation_loss_from_log_probs_is_segmentation_loss():
    logits, target, weight = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8)), torch.rand(2, 8, 8)
    log_probs = log_probabilities(logits.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
    assert log_probs.dtype == torch.float32 and log_probs.is_contiguous()
    for w in (None, weight):
        assert torch.equal(segmentation_loss_from_log_probs(log_probs, target, w), segmentation_loss(logits.to(torch.bfloat16), target, w))


def test_sigmoid_rampup():
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(50, 100) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(100, 100) == 1.0 and sigmoid_rampup(500, 100) == 1.0
    assert sigmoid_rampup(3, 0) == 1.0


def test_hard_labels_is_argmax_with_first_index_on_ties():
    scores = torch.randn(2, 4, 5, 6)
    scores[0, :, 0, 0] = 1.0  # a four-way tie: argmax takes the first class
    for layout in (torch.contiguous_format, torch.channels_last):
        laid_out = scores.contiguous(memory_format=layout)
        assert torch.equal(hard_labels(laid_out), scores.argmax(1))
    assert hard_labels(scores)[0, 0, 0] == 0


def test_losses_match_their_textbook_definitions_in_both_layouts():
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    weight = torch.rand(2, 8, 8)
    probs = logits.softmax(1)
    one_hot = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float()
    wp, wt = probs * weight[:, None], one_hot * weight[:, None]
    dice = 1 - ((2 * (wp * wt).sum((0, 2, 3)) + 1e-5) / ((wp * wp).sum((0, 2, 3)) + wt.sum((0, 2, 3)) + 1e-5)).mean()
    ce = (torch.nn.functional.cross_entropy(logits, target, reduction="none") * weight).sum() / weight.sum()
    for layout in (torch.contiguous_format, torch.channels_last):
        laid_out = logits.contiguous(memory_format=layout)
        assert dice_loss(laid_out, target, weight) == pytest.approx(dice.item(), rel=1e-5)
        assert segmentation_loss(laid_out, target, weight) == pytest.approx(0.5 * (ce + dice).item(), rel=1e-5)


def test_uaps_dice_form_has_linear_cardinality_and_epsilon_in_the_denominator_only():
    logits, target, weight = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8)), torch.rand(2, 8, 8)
    one_hot = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float()
    for w in (None, weight):
        p, g = logits.softmax(1), one_hot
        if w is not None:
            p, g = p * w[:, None], g * w[:, None]
        dice = 1 - (2 * (p * g).sum((0, 2, 3)) / ((p + g).sum((0, 2, 3)) + 1e-7)).mean()
        for layout in (torch.contiguous_format, torch.channels_last):
            laid_out = logits.contiguous(memory_format=layout)
            assert dice_loss(laid_out, target, w, dice_form="uaps") == pytest.approx(dice.item(), rel=1e-5)
    assert dice_loss(logits, target, dice_form="uaps") != pytest.approx(dice_loss(logits, target).item(), rel=1e-3)
    with pytest.raises(ValueError, match="dice_form"):
        dice_loss(logits, target, dice_form="sorensen")


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_up_block_gradients_equal_plain_upsampling_and_concatenation(layout):
    torch.manual_seed(0)
    block = UpBlock(8, 4, 4, transposed=False).to(memory_format=layout)
    x = torch.randn(2, 8, 4, 4).contiguous(memory_format=layout).requires_grad_()
    skip = torch.randn(2, 4, 8, 8).contiguous(memory_format=layout).requires_grad_()
    block(x, skip).square().sum().backward()
    ours = (x.grad.clone(), skip.grad.clone())
    x.grad = skip.grad = None
    block.conv(torch.cat([skip, block.up(x)], dim=1)).square().sum().backward()  # without the dense-gradient step
    torch.testing.assert_close(ours, (x.grad, skip.grad))


def test_smp_decoder_gives_interpolations_a_dense_gradient_with_equal_values():
    x = torch.randn(1, 2, 4, 4, requires_grad=True)
    with DenseInterpolationGradients():
        resized = torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear")
        summed = x.sum()
    assert type(resized.grad_fn).__name__ == "_DenseGradientBackward"
    assert type(summed.grad_fn).__name__ == "SumBackward0"  # other operators untouched
    torch.manual_seed(0)
    net = build_network("smp:Segformer:mit_b0", 3, 4).to(memory_format=torch.channels_last)
    images = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    gradients = []
    for decode in (net.decoder, lambda features: net.decoder.head(net.decoder.decoder(features))):
        net.zero_grad()
        torch.manual_seed(1)  # the same stochastic-depth draws
        decode(net.encoder(images)).square().sum().backward()
        gradients.append([p.grad.clone() for p in net.parameters()])
    torch.testing.assert_close(gradients[0], gradients[1], rtol=0, atol=0)


def test_feature_noise_scales_each_position_by_one_plus_uniform_noise():
    noise = FeatureNoise(0.3).train()
    x = torch.rand(4, 3, 5, 5) + 0.5
    factor = noise(x) / x
    assert torch.allclose(factor, factor[:1].expand_as(factor))  # one draw shared by the batch
    assert factor.min() >= 0.7 - 1e-6 and factor.max() <= 1.3 + 1e-6
    assert torch.equal(noise.eval()(x), x)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("factor_shape", [(1, 6, 8, 8), (3, 1, 8, 8), (3, 6, 8, 8)])
def test_scale_in_layout_is_a_plain_product_kept_in_the_input_layout(layout, factor_shape):
    torch.manual_seed(0)
    x = torch.randn(3, 6, 8, 8).to(torch.bfloat16).contiguous(memory_format=layout).requires_grad_()
    factor = torch.rand(factor_shape).to(torch.bfloat16)
    out = scale_in_layout(x, factor)
    assert torch.equal(out, x * factor)
    assert out.is_contiguous(memory_format=layout)
    out.float().sum().backward()
    assert torch.equal(x.grad, factor.expand_as(x).contiguous())
