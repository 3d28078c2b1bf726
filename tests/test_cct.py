"""CCT: auxiliary decoders see perturbed features, the main one clean ones; detached target."""
import pytest
import torch

from defectseg.methods import ConfigError, build_method
from defectseg.methods.losses import segmentation_loss, softmax_mse
from tests.helpers import tiny_batch


def capture_decoder_inputs(method) -> tuple[dict, list]:
    """Hooks recording the encoder's output and what every decoder receives."""
    seen: dict = {}
    net = method.net
    handles = [net.encoder.register_forward_hook(lambda m, args, out: seen.__setitem__("encoder", out))]
    for name, decoder in [("main", net.main_decoder)] + [(f"aux{i}", d) for i, d in enumerate(net.aux_decoders)]:
        handles.append(decoder.register_forward_pre_hook(lambda m, args, name=name: seen.__setitem__(name, args[0])))
    return seen, handles


def same_features(a: list, b: list) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_aux_decoders_see_perturbed_features_and_the_main_decoder_clean_ones():
    method = build_method("cct", {}, 1, 3)
    assert len(method.net.aux_decoders) == 3  # feature_noise, dropout, feature_dropout
    seen, _ = capture_decoder_inputs(method)
    labeled, unlabeled = tiny_batch()
    method.training_step(labeled, unlabeled, 5, 10)
    assert same_features(seen["main"], seen["encoder"])
    for i in range(3):
        assert not same_features(seen[f"aux{i}"], seen["encoder"]), f"auxiliary decoder {i} saw clean features"
    method.eval()
    seen.clear()
    with torch.no_grad():
        method.predict(unlabeled)
    assert set(seen) == {"encoder", "main"}  # prediction: the main decoder only


def test_consistency_target_is_the_detached_main_decoder():
    method = build_method("cct", {}, 1, 3)
    labeled, unlabeled = tiny_batch()
    method.training_step(labeled, unlabeled, 5, 10)["loss_unsup"].backward()
    net = method.net
    assert all(p.grad is None for p in net.main_decoder.parameters())
    assert all(any(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters()) for d in net.aux_decoders)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.encoder.parameters())


@pytest.mark.parametrize("supervise_aux", [False, True])
def test_supervised_loss_on_main_decoder_or_all_decoders(supervise_aux):
    method = build_method("cct", {"supervise_aux": supervise_aux}, 1, 3).eval()  # eval: no perturbation, deterministic
    labeled, unlabeled = tiny_batch()
    losses = method.training_step(labeled, unlabeled, 5, 10)
    outputs = method.net(torch.cat([labeled.images, unlabeled]))
    supervised = outputs if supervise_aux else outputs[:1]
    expected = torch.stack([segmentation_loss(out[:2], labeled.masks) for out in supervised]).mean()
    torch.testing.assert_close(losses["loss_sup"], expected)
    expected_cons = torch.stack([softmax_mse(out[2:], outputs[0][2:]) for out in outputs[1:]]).mean()
    torch.testing.assert_close(losses["loss_unsup"], expected_cons)
    torch.testing.assert_close(losses["loss"], losses["loss_sup"] + 0.1 * losses["loss_unsup"])


def test_perturbations_option_is_checked():
    assert len(build_method("cct", {"perturbations": ["feature_cutout"]}, 1, 3).net.aux_decoders) == 1
    with pytest.raises(ConfigError, match=r"'perturbations' of method 'cct' must be a non-empty list drawn from .*got \['vat'\]"):
        build_method("cct", {"perturbations": ["vat"]}, 1, 3)
    with pytest.raises(ConfigError, match="non-empty list"):
        build_method("cct", {"perturbations": "dropout"}, 1, 3)
