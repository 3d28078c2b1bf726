"""CPS: pseudo-labels from the other network, detached; labelled switch; prediction modes."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from defectseg.methods import ConfigError, build_method
from defectseg.methods.cps import cross_pseudo_supervision
from defectseg.methods.losses import cross_entropy
from tests.helpers import tiny_batch

NUM_CLASSES = 3


def make_net2_predict(method, label: int) -> None:
    """Net 2's head outputs the constant class ``label`` everywhere."""
    with torch.no_grad():
        method.net2.decoder.head.weight.zero_()
        method.net2.decoder.head.bias.zero_()
        method.net2.decoder.head.bias[label] = 10.0


def test_each_network_learns_from_the_others_detached_argmax():
    logits1 = torch.randn(2, NUM_CLASSES, 4, 4, requires_grad=True)
    logits2 = torch.randn(2, NUM_CLASSES, 4, 4, requires_grad=True)
    loss1, loss2 = cross_pseudo_supervision(logits1, logits2)
    assert loss1.item() == pytest.approx(cross_entropy(logits1, logits2.argmax(1)).item())
    assert loss2.item() == pytest.approx(cross_entropy(logits2, logits1.argmax(1)).item())
    loss1.backward()
    assert logits2.grad is None and logits1.grad.abs().sum() > 0


def test_net1_cross_loss_uses_net2_labels_and_sends_no_gradient_to_net2():
    method = build_method("cps", {}, 1, NUM_CLASSES).eval()  # eval: deterministic forward passes
    make_net2_predict(method, label=2)
    labeled, unlabeled = tiny_batch(NUM_CLASSES)
    losses = method.training_step(labeled, unlabeled, 5, 10)
    images = torch.cat([labeled.images, unlabeled])
    with torch.no_grad():
        expected = cross_entropy(method.net1(images), torch.full((4, 32, 32), 2))
    assert losses["loss_cps1"].item() == pytest.approx(expected.item(), rel=1e-5)
    losses["loss_cps1"].backward()
    assert all(p.grad is None for p in method.net2.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.net1.parameters())


def test_cross_on_labeled_switch_selects_the_images():
    labeled, unlabeled = tiny_batch(NUM_CLASSES)
    for cross_on_labeled, images in ((True, torch.cat([labeled.images, unlabeled])), (False, unlabeled)):
        method = build_method("cps", {"cross_on_labeled": cross_on_labeled}, 1, NUM_CLASSES).eval()
        make_net2_predict(method, label=1)
        losses = method.training_step(labeled, unlabeled, 5, 10)
        with torch.no_grad():
            expected = cross_entropy(method.net1(images), torch.full((len(images), 32, 32), 1))
        assert losses["loss_cps1"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_total_loss_sums_both_networks_which_start_differently():
    method = build_method("cps", {}, 1, NUM_CLASSES)
    labeled, unlabeled = tiny_batch(NUM_CLASSES)
    losses = method.training_step(labeled, unlabeled, 30, 100)
    weight = 0.1 * method.rampup(30, 100)
    assert losses["unsup_weight"].item() == pytest.approx(weight)
    torch.testing.assert_close(losses["loss_sup"], losses["loss_sup1"] + losses["loss_sup2"])
    torch.testing.assert_close(losses["loss_unsup"], losses["loss_cps1"] + losses["loss_cps2"])
    assert losses["loss"].item() == pytest.approx((losses["loss_sup"] + weight * losses["loss_unsup"]).item())
    optimised = {id(p) for p in method.parameters() if p.requires_grad}
    assert optimised == {id(p) for p in [*method.net1.parameters(), *method.net2.parameters()]}
    assert not torch.equal(method.net1.decoder.head.weight, method.net2.decoder.head.weight)  # different init


def test_prediction_modes():
    images = torch.randn(2, 1, 32, 32)
    method = build_method("cps", {}, 1, NUM_CLASSES).eval()
    with torch.no_grad():
        torch.testing.assert_close(method.predict(images), method.net1(images))
        variants = method.predict_variants(images)
        assert sorted(variants) == ["ensemble", "net2"]
        mean_probs = (method.net1(images).softmax(1) + method.net2(images).softmax(1)) / 2
        torch.testing.assert_close(variants["ensemble"].softmax(1), mean_probs)
    ensemble = build_method("cps", {"eval_mode": "ensemble"}, 1, NUM_CLASSES)
    assert sorted(ensemble.predict_variants(images)) == ["net1", "net2"]


def test_prediction_variants_run_each_network_once():
    """net2 and the ensemble of the variants cost two network passes, not three."""
    images = torch.randn(2, 1, 32, 32)
    method = build_method("cps", {}, 1, NUM_CLASSES).eval()
    flops = {}
    for name, predict in (("one network", method.predict), ("variants", method.predict_variants)):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            predict(images)
        flops[name] = counter.get_total_flops()
    assert flops["variants"] == 2 * flops["one network"]


def test_bad_options_are_named():
    with pytest.raises(ConfigError, match="eval_mode"):
        build_method("cps", {"eval_mode": "both"}, 1, NUM_CLASSES)
    with pytest.raises(ConfigError, match="cross_on_labeled"):
        build_method("cps", {"cross_on_labeled": "yes"}, 1, NUM_CLASSES)
