"""Cross teaching: one CNN and one transformer, each taught by the other's detached argmax."""
import socket

import pytest
import torch
from segmentation_models_pytorch.decoders.segformer.decoder import SegformerDecoder
from segmentation_models_pytorch.encoders.mix_transformer import MixVisionTransformerEncoder

from defectseg.methods import ConfigError, build_method
from defectseg.methods.losses import dice_loss
from defectseg.methods.networks import UNetDecoder, UNetEncoder
from tests.helpers import tiny_batch


@pytest.fixture(scope="module")
def method():
    return build_method("cross_teaching", {}, 1, 3)


def test_holds_one_cnn_and_one_transformer(method):
    assert isinstance(method.cnn.encoder, UNetEncoder) and isinstance(method.cnn.decoder, UNetDecoder)
    assert isinstance(method.transformer.encoder, MixVisionTransformerEncoder)
    assert isinstance(method.transformer.decoder.decoder, SegformerDecoder)


def test_transformer_builds_offline_for_any_channels_and_sizes_divisible_by_32(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("cross_teaching tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    for channels in (1, 3):
        method = build_method("cross_teaching", {}, channels, 4).eval()
        for size in (32, 64):
            with torch.no_grad():
                assert method.transformer(torch.randn(1, channels, size, size)).shape == (1, 4, size, size)


def test_image_size_not_divisible_by_32_names_train_image_size(method):
    labeled, unlabeled = tiny_batch(size=48)
    with pytest.raises(ConfigError, match=r"divisible by 32, got 48x48; set train\.image_size"):
        method.training_step(labeled, unlabeled, 0, 10)
    with pytest.raises(ConfigError, match="train.image_size"):
        method.predict(unlabeled)


def test_each_network_is_taught_by_the_others_detached_argmax(method):
    outputs = {}
    hooks = [
        method.cnn.register_forward_hook(lambda m, args, out: outputs.__setitem__("cnn", out)),
        method.transformer.register_forward_hook(lambda m, args, out: outputs.__setitem__("transformer", out)),
    ]
    labeled, unlabeled = tiny_batch()
    losses = method.training_step(labeled, unlabeled, 5, 10)
    for hook in hooks:
        hook.remove()
    cnn_u, transformer_u = outputs["cnn"][2:], outputs["transformer"][2:]
    torch.testing.assert_close(losses["loss_ct_cnn"], dice_loss(cnn_u, transformer_u.argmax(1)))
    torch.testing.assert_close(losses["loss_ct_transformer"], dice_loss(transformer_u, cnn_u.argmax(1)))

    def gradients(loss):
        method.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)
        return (
            any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.cnn.parameters()),
            any(p.grad is not None for p in method.transformer.parameters()),
        )

    assert gradients(losses["loss_ct_cnn"]) == (True, False)  # the transformer's pseudo-label carries no gradient
    cnn_has_grad, transformer_has_grad = gradients(losses["loss_ct_transformer"])
    assert not cnn_has_grad and transformer_has_grad
    total = losses["loss_sup_cnn"] + losses["loss_sup_transformer"] + 0.1 * (losses["loss_ct_cnn"] + losses["loss_ct_transformer"])
    torch.testing.assert_close(losses["loss"], total)


def test_eval_modes(method):
    images = tiny_batch()[1]
    method.eval()
    with torch.no_grad():
        cnn, transformer = method.cnn(images), method.transformer(images)
        torch.testing.assert_close(method.predict(images), cnn)
        variants = method.predict_variants(images)
    assert set(variants) == {"transformer", "ensemble"}
    torch.testing.assert_close(variants["ensemble"], ((cnn.softmax(1) + transformer.softmax(1)) / 2).log())
    with pytest.raises(ConfigError, match="'eval_mode' of method 'cross_teaching' must be one of"):
        build_method("cross_teaching", {"eval_mode": "both"}, 1, 3)
    with pytest.raises(ConfigError, match="transformer must be a segmentation-models-pytorch network"):
        build_method("cross_teaching", {"transformer": "unet"}, 1, 3)
