"""URPC: one output per decoder scale at input size, the rectified pyramid consistency."""
import pytest
import torch
import torch.nn.functional as F

from defectseg.methods import ConfigError, build_method
from defectseg.methods.losses import segmentation_loss
from defectseg.methods.urpc import rectified_pyramid_consistency
from tests.helpers import tiny_batch


@pytest.mark.parametrize("backbone", ["unet", "unet-tconv"])
def test_one_output_per_scale_all_at_input_size(backbone):
    method = build_method("urpc", {"backbone": backbone}, 1, 3)
    images = torch.randn(2, 1, 32, 32)
    outputs = method.net(images)
    assert len(outputs) == 4  # scales 1, 1/2, 1/4, 1/8 of the input
    assert all(out.shape == (2, 3, 32, 32) for out in outputs)
    method.eval()
    with torch.no_grad():
        torch.testing.assert_close(method.predict(images), method.net(images)[0])  # the finest output


@pytest.mark.parametrize("perturb_aux", [True, False])
def test_auxiliary_scales_are_perturbed_in_training_only_when_asked(perturb_aux):
    method = build_method("urpc", {"perturb_aux": perturb_aux}, 1, 3)
    net = method.net
    stages, head_inputs = [], []
    for up in net.decoder.ups:
        up.register_forward_hook(lambda m, args, out: stages.append(out))
    for head in net.aux_heads:
        head.register_forward_pre_hook(lambda m, args: head_inputs.append(args[0]))
    net(torch.randn(2, 1, 32, 32))
    finest_first = stages[::-1]
    assert [x.shape[1] for x in head_inputs] == [32, 64, 128]
    changed = [not torch.equal(x, stage) for x, stage in zip(head_inputs, finest_first[1:])]
    assert changed == [perturb_aux] * 3


def test_rectified_consistency_matches_the_ssl4mis_formula():
    probs = [torch.randn(2, 3, 8, 8).softmax(1) for _ in range(4)]
    mean = torch.stack(probs).mean(0)
    expected = []
    for p in probs:
        variance = F.kl_div(torch.log(p), mean, reduction="none").sum(dim=1, keepdim=True)  # KL(mean || p)
        exp_variance = torch.exp(-variance)
        distance = (mean - p) ** 2
        expected.append(torch.mean(distance * exp_variance) / (torch.mean(exp_variance) + 1e-8) + torch.mean(variance))
    torch.testing.assert_close(rectified_pyramid_consistency(probs), torch.stack(expected).mean(), rtol=1e-5, atol=1e-6)
    same = [probs[0]] * 4
    assert rectified_pyramid_consistency(same).abs() < 1e-6


def test_losses_supervise_every_scale_and_ramp_the_consistency():
    method = build_method("urpc", {}, 1, 3).eval()  # eval: deterministic
    labeled, unlabeled = tiny_batch()
    losses = method.training_step(labeled, unlabeled, 0, 100)
    outputs = method.net(torch.cat([labeled.images, unlabeled]))
    expected_sup = torch.stack([segmentation_loss(out[:2], labeled.masks) for out in outputs]).mean()
    torch.testing.assert_close(losses["loss_sup"], expected_sup)
    expected_cons = rectified_pyramid_consistency([out[2:].softmax(1) for out in outputs])
    torch.testing.assert_close(losses["loss_unsup"], expected_cons)
    weight = 0.1 * method.rampup(0, 100)
    assert 0 < weight < 0.01
    torch.testing.assert_close(losses["loss"], losses["loss_sup"] + weight * losses["loss_unsup"])


def test_only_the_paper_unet_is_accepted():
    with pytest.raises(ConfigError, match="option 'backbone' of method 'urpc'.*'smp:Unet:resnet18'"):
        build_method("urpc", {"backbone": "smp:Unet:resnet18"}, 1, 3)
