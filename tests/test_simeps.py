"""simEps: independent networks, cross pseudo-labels that never use their own network, similarity maps."""
import pytest
import torch

from defectseg.methods import ConfigError, LabeledBatch, build_method
from defectseg.methods.ensemble import ensemble_logits
from defectseg.methods.simeps import ensemble_cross_pseudo_labels
from defectseg.methods.similarity import similarity_consistency, similarity_map

torch.set_num_threads(1)


def _simeps(seed: int = 0, **options):
    torch.manual_seed(seed)
    return build_method("simeps", options, 1, 3)


def _batch(seed: int = 1, size: int = 32):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 1, size, size, generator=generator)
    masks = torch.randint(0, 3, (2, size, size), generator=generator)
    return LabeledBatch(images, masks), torch.randn(2, 1, size, size, generator=generator)


def test_networks_start_from_different_weights():
    method = _simeps()
    assert len(method.nets) == 3
    first = [p for p in method.nets[0].parameters() if p.dim() > 1]
    for other in method.nets[1:]:
        assert all(not torch.equal(a, b) for a, b in zip(first, [p for p in other.parameters() if p.dim() > 1]))


def test_cross_pseudo_label_of_a_network_never_uses_that_network():
    probs = [torch.softmax(torch.randn(2, 4, 5, 5), 1) for _ in range(3)]
    labels = ensemble_cross_pseudo_labels(probs)
    assert torch.equal(labels[0], torch.maximum(probs[1], probs[2]).argmax(1))
    extreme = probs.copy()
    extreme[1] = torch.zeros_like(probs[1])
    extreme[1][:, 3] = 1.0  # network 1 is certain of class 3 everywhere
    changed = ensemble_cross_pseudo_labels(extreme)
    assert torch.equal(changed[1], labels[1])
    assert (changed[0] == 3).all() and (changed[2] == 3).all()
    graded = [p.clone().requires_grad_() for p in probs]
    assert all(label.grad_fn is None and label.dtype == torch.int64 for label in ensemble_cross_pseudo_labels(graded))


def test_similarity_map_is_a_row_normalised_gram_matrix_and_identical_outputs_agree():
    outputs = torch.randn(5, 3, 4, 4)
    similarity = similarity_map(outputs)
    assert similarity.shape == (5, 5)
    assert torch.allclose(similarity.norm(dim=1), torch.ones(5), atol=1e-6)
    gram = outputs.flatten(1) @ outputs.flatten(1).t()
    assert torch.allclose(similarity, gram / gram.norm(dim=1, keepdim=True), atol=1e-6)
    assert similarity_consistency(outputs, outputs.clone()).item() == 0.0
    a, b = torch.randn(4, 2, 3, 3, requires_grad=True), torch.randn(4, 2, 3, 3, requires_grad=True)
    similarity_consistency(a, b).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0  # each side is pulled towards the other


def test_loss_is_the_documented_sum_and_switches_turn_parts_off():
    labeled, unlabeled = _batch()
    out = _simeps().training_step(labeled, unlabeled, step=10, total_steps=100)
    expected = out["loss_sup"] + out["unsup_weight"] * (out["loss_cps"] + out["loss_cps_labeled"]) + out["similarity_weight"] * out["loss_sim"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.equal(out["loss_unsup"], out["loss_cps"] + out["loss_cps_labeled"])
    assert 0 < out["unsup_weight"].item() < 0.1  # cps_weight, ramping up
    assert out["similarity_weight"].item() == pytest.approx(500 * out["unsup_weight"].item())  # 50, same ramp
    assert out["loss_cps_labeled"].item() > 0 and out["loss_sim"].item() > 0
    off = _simeps(cross_on_labeled=False, similarity_rampup=False).training_step(labeled, unlabeled, 10, 100)
    assert off["loss_cps_labeled"].item() == 0.0 and off["similarity_weight"].item() == 50.0
    out["loss"].backward()


def test_similarity_at_encoder_and_decoder_stages(monkeypatch):
    labeled, unlabeled = _batch()
    output_only = _simeps().training_step(labeled, unlabeled, 10, 100)["loss_sim"]
    all_stages = _simeps(similarity_stages=["encoder", "decoder", "output"]).training_step(labeled, unlabeled, 10, 100)
    assert all_stages["loss_sim"].item() > output_only.item()
    all_stages["loss"].backward()
    monkeypatch.setattr("defectseg.methods.simeps.UNetDecoder", type("OtherDecoder", (), {}))  # as with an smp backbone
    with pytest.raises(ConfigError, match="similarity_stages"):
        build_method("simeps", {"similarity_stages": ["decoder"]}, 1, 3)
    build_method("simeps", {"similarity_stages": ["output"]}, 1, 3)


def test_predictions_ensemble_and_single_network():
    method = _simeps().eval()
    images = _batch()[1]
    with torch.no_grad():
        members = method.member_outputs(images)
        assert list(members) == ["network0", "network1", "network2"]
        assert torch.allclose(method.predict(images), ensemble_logits(list(members.values())))
        variants = method.predict_variants(images)
        assert set(variants) == {"ensemble", "network0", "network1", "network2"}
        single = build_method("simeps", {"eval_mode": "network0"}, 1, 3).eval()
        assert torch.allclose(single.predict(images), single.nets[0](images))


@pytest.mark.parametrize(
    "key, value",
    [("networks", 1), ("networks", 2.5), ("cps_weight", -1), ("similarity_weight", "high"), ("cross_on_labeled", "yes"),
     ("similarity_stages", ["bottleneck"]), ("similarity_stages", []), ("eval_mode", "network1")],
)
def test_invalid_options_name_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        build_method("simeps", {key: value}, 1, 3)
