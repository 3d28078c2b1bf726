"""UAPS: perturbed decoders, Dirichlet mixing, uncertainty weighting, switches, D = 0, cost."""
import pytest
import torch

from defectseg.methods import ConfigError, LabeledBatch, build_method
from defectseg.methods.ensemble import ensemble_logits, mean_probabilities
from defectseg.methods.losses import log_probabilities, pseudo_label_loss
from defectseg.methods.networks import count_parameters
from defectseg.methods.uaps import decoder_uncertainty, mixed_pseudo_label, uncertainty_weighted_loss

torch.set_num_threads(1)
PAPER_PARAMS_M = (1.82, 2.45, 3.08, 3.72, 4.35)  # UAPS paper, NEU-Seg (3 channels, 4 classes), D = 0..4


def _uaps(seed: int = 0, in_channels: int = 1, num_classes: int = 3, **options):
    torch.manual_seed(seed)
    return build_method("uaps", options, in_channels, num_classes)


def _batch(seed: int = 1, size: int = 32):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 1, size, size, generator=generator)
    masks = torch.randint(0, 3, (2, size, size), generator=generator)
    unlabeled = torch.randn(2, 1, size, size, generator=generator)
    return LabeledBatch(images, masks), unlabeled


def test_aux_decoders_see_differently_perturbed_features():
    method = _uaps(aux_decoders=4)
    net = method.net
    for decoder in net.aux_decoders:  # same weights everywhere: only the inputs can differ
        decoder.load_state_dict(net.main_decoder.state_dict())
    inputs = {}
    for name, decoder in [("main", net.main_decoder), *[(str(i), d) for i, d in enumerate(net.aux_decoders)]]:
        decoder.register_forward_hook(lambda module, args, output, name=name: inputs.__setitem__(name, args[0][-1]))
    x = _batch()[1]
    outputs = net(x)
    assert len(outputs) == 5
    for aux_name, aux_output in zip("0123", outputs[1:]):
        assert not torch.allclose(aux_output, outputs[0])
        assert not torch.allclose(inputs[aux_name], inputs["main"])
    for a in "0123":
        for b in "0123":
            if a < b:
                assert not torch.allclose(inputs[a], inputs[b])
    for decoder in net.aux_decoders:  # BatchNorm running statistics moved apart in training mode
        decoder.load_state_dict(net.main_decoder.state_dict())
    method.eval()
    with torch.no_grad():
        clean = net(x)
    assert all(torch.allclose(output, clean[0], atol=1e-6) for output in clean[1:])


def test_mixing_weights_are_a_fresh_dirichlet_sample_each_step():
    method = _uaps()
    first, second = method.mixing_weights(), method.mixing_weights()
    for weights in (first, second):
        assert weights.shape == (4,) and (weights >= 0).all()
        assert weights.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert not torch.allclose(first, second)
    torch.manual_seed(7)
    replay = method.mixing_weights()
    torch.manual_seed(7)
    assert torch.equal(method.mixing_weights(), replay)  # drawn from the global RNG: resumable
    assert torch.equal(_uaps(mixing="average").mixing_weights(), torch.full((4,), 0.25))


def test_pseudo_label_is_the_argmax_of_the_mixture_and_carries_no_gradient():
    logits = [torch.randn(2, 3, 4, 4, requires_grad=True) for _ in range(3)]
    probs = [member.softmax(1) for member in logits]
    weights = torch.tensor([0.2, 0.5, 0.3])
    label = mixed_pseudo_label(probs, weights)
    assert label.dtype == torch.int64 and not label.requires_grad and label.grad_fn is None
    expected = (0.2 * probs[0] + 0.5 * probs[1] + 0.3 * probs[2]).argmax(1)
    assert torch.equal(label, expected)
    assert torch.equal(mixed_pseudo_label(probs, torch.tensor([0.0, 0.0, 1.0])), probs[2].argmax(1))


def test_uncertainty_is_zero_when_decoders_agree_and_confidence_lies_in_zero_one():
    same = torch.softmax(torch.randn(2, 3, 4, 4), 1)
    assert all(u.abs().max() < 1e-6 for u in decoder_uncertainty([same, same.clone(), same.clone()]))
    different = [torch.softmax(3 * torch.randn(2, 3, 4, 4), 1) for _ in range(3)]
    for u in decoder_uncertainty(different):
        confidence = torch.exp(-u)
        assert (confidence > 0).all() and (confidence <= 1).all() and (u > 0).any()


@pytest.mark.parametrize("mode", ["pixel", "batch"])
def test_uncertainty_weights_carry_gradient_only_when_not_detached(mode):
    for detach in (True, False):
        logits = torch.randn(2, 3, 4, 4, requires_grad=True)
        uncertainty = torch.rand(2, 4, 4, requires_grad=True)
        label = torch.randint(0, 3, (2, 4, 4))
        uncertainty_weighted_loss(log_probabilities(logits), label, uncertainty, mode, detach).backward()
        assert logits.grad is not None and (uncertainty.grad is None) == detach


def test_pixel_and_batch_weighting_differ_as_documented():
    logits, label = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    plain = pseudo_label_loss(logits, label)
    # image 0 certain (weight 1), image 1 infinitely uncertain (weight 0)
    uncertainty = torch.zeros(2, 8, 8)
    uncertainty[1] = torch.inf
    log_probs = log_probabilities(logits)
    pixel = uncertainty_weighted_loss(log_probs, label, uncertainty, "pixel")
    batch = uncertainty_weighted_loss(log_probs, label, uncertainty, "batch")
    assert pixel.item() == pytest.approx(pseudo_label_loss(logits[:1], label[:1]).item(), rel=1e-5)  # pixels re-weighted
    assert batch.item() == pytest.approx(0.5 * plain.item(), rel=1e-6)  # whole batch scaled by mean exp(-u)
    varying = torch.rand(2, 8, 8) * 3
    confidence = torch.exp(-varying)
    assert uncertainty_weighted_loss(log_probs, label, varying, "pixel").item() == pytest.approx(
        pseudo_label_loss(logits, label, pixel_weight=confidence).item(), rel=1e-6
    )
    assert uncertainty_weighted_loss(log_probs, label, varying, "batch").item() == pytest.approx(
        (plain * confidence.mean()).item(), rel=1e-6
    )


@pytest.mark.parametrize("losses", [[], ["ps"], ["ups"], ["un"], ["ps", "ups", "un"]])
def test_each_switch_turns_its_loss_off(losses):
    method = _uaps(losses=losses)
    labeled, unlabeled = _batch()
    out = method.training_step(labeled, unlabeled, step=100, total_steps=100)  # ramp-up done: weights 0.1
    for key in ("loss", "loss_sup", "loss_unsup", "unsup_weight", "loss_ps", "loss_ups", "loss_un", "lambda2", "mean_exp_neg_u"):
        assert torch.is_tensor(out[key])
    for name in ("ps", "ups", "un"):
        assert (out[f"loss_{name}"].item() > 0) == (name in losses)
    expected = out["loss_sup"] + 0.1 * (out["loss_ps"] + out["loss_ups"]) + 0.1 * out["loss_un"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out["unsup_weight"].item() == pytest.approx(0.1) and torch.equal(out["loss_unsup"], out["loss_ps"] + out["loss_ups"])
    out["loss"].backward()


def test_without_aux_decoders_uaps_is_exactly_the_supervised_baseline():
    uaps = _uaps(aux_decoders=0, losses=["ps", "ups", "un"])
    torch.manual_seed(3)
    supervised = build_method("supervised", {}, 1, 3)
    uaps.net.encoder.load_state_dict(supervised.net.encoder.state_dict())
    uaps.net.main_decoder.load_state_dict(supervised.net.decoder.state_dict())
    labeled, unlabeled = _batch()
    torch.manual_seed(11)  # same dropout draws in both
    expected = supervised.training_step(labeled, unlabeled, 50, 100)["loss"]
    torch.manual_seed(11)
    out = uaps.training_step(labeled, unlabeled, 50, 100)
    assert torch.equal(out["loss"], expected)
    assert out["loss_ps"].item() == out["loss_ups"].item() == out["loss_un"].item() == 0.0
    assert list(uaps.member_outputs(labeled.images)) == ["main"]


def test_ensemble_prediction_runs_the_encoder_once():
    method = _uaps(eval_mode="ensemble").eval()
    calls = []
    method.net.encoder.register_forward_hook(lambda *args: calls.append(1))
    images = _batch()[1]
    with torch.no_grad():
        variants = method.predict_variants(images)
        assert len(calls) == 1 and set(variants) == {"main", "ensemble"}
        members = method.member_outputs(images)
        assert list(members) == ["main", "aux_feature_noise", "aux_dropout", "aux_feature_dropout"]
        assert torch.allclose(variants["main"], members["main"])
        assert torch.allclose(variants["ensemble"].softmax(1), mean_probabilities(list(members.values())), atol=1e-6)
        calls.clear()
        assert torch.allclose(method.predict(images), ensemble_logits(list(members.values())))
        assert len(calls) == 1


@pytest.mark.parametrize(
    "key, value",
    [("aux_decoders", 5), ("aux_decoders", -1), ("aux_decoders", True), ("losses", ["ups", "kl"]), ("losses", "ups"),
     ("mixing", "max"), ("uncertainty_weighting", "image"), ("eval_mode", "aux"), ("lambda1", -0.1)],
)
def test_invalid_options_name_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        build_method("uaps", {key: value}, 1, 3)


def test_parameter_counts_match_the_paper():
    for decoders, paper in enumerate(PAPER_PARAMS_M):
        method = build_method("uaps", {"aux_decoders": decoders}, 3, 4)
        assert count_parameters(method) == pytest.approx(paper * 1e6, rel=0.01)
