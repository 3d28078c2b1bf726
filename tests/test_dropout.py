"""GapDropout: nn.Dropout's distribution (independent drops with probability p, kept values scaled)."""
import pytest
import torch
import torch.nn.functional as F

from defectseg.methods import dropout
from defectseg.methods.dropout import GapDropout, dropout_mask, dropped_positions
from defectseg.methods.networks import UNetEncoder


def test_positions_are_sorted_unique_and_in_range():
    torch.manual_seed(0)
    for count, p in ((1, 0.5), (7, 0.3), (1000, 0.05), (5000, 0.9)):
        positions = dropped_positions(count, p)
        assert positions.dtype == torch.int64
        assert bool((positions[1:] > positions[:-1]).all()) and (len(positions) == 0 or 0 <= int(positions[0]) and int(positions[-1]) < count)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5])
def test_drops_are_independent_with_probability_p(p):
    torch.manual_seed(1)
    count = 400_000
    dropped = torch.zeros(count, dtype=torch.bool)
    dropped[dropped_positions(count, p)] = True
    sd = (p * (1 - p) / count) ** 0.5
    assert float(dropped.float().mean()) == pytest.approx(p, abs=5 * sd)
    both = (dropped[1:] & dropped[:-1]).float().mean()  # neighbours: independent, so p squared
    assert float(both) == pytest.approx(p * p, abs=5 * (p * p / count) ** 0.5)
    tail = dropped.view(-1, 1000)[:, -1].float().mean()  # the end of each block is as likely as any position
    assert float(tail) == pytest.approx(p, abs=5 * (p * (1 - p) / 400) ** 0.5)


def test_rounds_that_fall_short_are_continued(monkeypatch):
    monkeypatch.setattr(dropout, "MARGIN_SIGMAS", -50.0)  # 16 gaps per round: many rounds
    torch.manual_seed(2)
    count, p = 200_000, 0.05
    positions = dropped_positions(count, p)
    assert len(positions) == pytest.approx(count * p, rel=0.05)
    assert int(positions[-1]) > count - 200  # drops reach the end of the range


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mask_has_the_input_layout_dtype_and_dropout_scaling(layout, dtype):
    torch.manual_seed(3)
    like = torch.randn(4, 16, 32, 32).to(dtype).contiguous(memory_format=layout)
    mask = dropout_mask(like, 0.2)
    assert mask.shape == like.shape and mask.dtype == dtype and mask.stride() == like.stride()
    scale = torch.tensor(1 / 0.8, dtype=dtype)
    assert set(mask.unique().tolist()) == {0.0, float(scale)}  # nn.Dropout's kept value 1/(1-p) in the input dtype


def test_module_in_train_mode_drops_and_scales_and_passes_the_mask_to_the_gradient():
    torch.manual_seed(4)
    layer = GapDropout(0.3).train()
    x = torch.rand(2, 8, 64, 64).add_(0.5).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = layer(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.7)
    assert float(kept.float().mean()) == pytest.approx(0.7, abs=0.01)
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() / 0.7)


def test_module_is_the_identity_in_eval_mode_and_at_p_zero_and_seeded():
    x = torch.randn(2, 4, 16, 16)
    assert torch.equal(GapDropout(0.5).eval()(x), x)
    assert torch.equal(GapDropout(0.0).train()(x), x)
    layer = GapDropout(0.5).train()
    torch.manual_seed(5)
    first = layer(x)
    torch.manual_seed(5)
    assert torch.equal(layer(x), first)


def test_non_dense_input_uses_torch_dropout():
    x = torch.randn(2, 8, 16, 16)[:, ::2]
    torch.manual_seed(6)
    expected = F.dropout(x, 0.4, True)
    torch.manual_seed(6)
    assert torch.equal(GapDropout(0.4).train()(x), expected)


def test_paper_unet_encoder_uses_it_with_its_level_rates():
    rates = [m.p for m in UNetEncoder(3).modules() if isinstance(m, GapDropout)]
    assert rates == [0.05, 0.1, 0.2, 0.3, 0.5]
