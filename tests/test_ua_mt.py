"""UA-MT: uncertainty of the mean of T teacher passes, threshold ramp (ln 2 or ln C), exact mask, masked MSE."""
import math

import pytest
import torch
from torch import nn

from defectseg.methods import LabeledBatch, build_method
from defectseg.methods.ramps import sigmoid_rampup
from defectseg.methods.ua_mt import masked_softmax_mse, predictive_entropy, uncertainty_threshold

NUM_CLASSES = 3
TOTAL_STEPS = 100
MC_PASSES = 4


class CyclingTeacher(nn.Module):
    """Stand-in teacher: returns its fixed logit maps in turn, whatever the input; counts calls."""

    def __init__(self, logit_maps: list[torch.Tensor]) -> None:
        super().__init__()
        self.logit_maps, self.calls = logit_maps, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logit_maps[self.calls % len(self.logit_maps)]
        self.calls += 1
        return logits.expand(x.shape[0], -1, -1, -1)


def known_uncertainty_teacher() -> tuple[CyclingTeacher, torch.Tensor]:
    """Four passes over a 2 x 8 image; returns the teacher and the exact entropy of the mean (H, W).

    Pixels 0-11 get the same logits in every pass, confidence growing along the row; pixels 12-15
    get a confident class that changes from pass to pass (0, 1, 2, 0), so each pass alone is
    certain while the mean of the passes, about (1/2, 1/4, 1/4), has entropy 1.04 > 0.75 ln 3.
    """
    strengths = torch.linspace(0.3, 6.0, 12, dtype=torch.float64)
    agreeing = torch.zeros(NUM_CLASSES, 12, dtype=torch.float64)
    agreeing[torch.arange(12) % NUM_CLASSES, torch.arange(12)] = strengths
    passes = []
    for k in range(MC_PASSES):
        disagreeing = torch.zeros(NUM_CLASSES, 4, dtype=torch.float64)
        disagreeing[k % NUM_CLASSES] = 10.0
        passes.append(torch.cat([agreeing, disagreeing], dim=1).reshape(1, NUM_CLASSES, 2, 8))
    mean_probs = torch.stack([p.softmax(1) for p in passes]).mean(0)[0]
    exact_entropy = -(mean_probs * mean_probs.log()).sum(0)
    return CyclingTeacher([p.float() for p in passes]), exact_entropy


SCALE_CLASSES = {"ln2": 2, "lnC": NUM_CLASSES}  # threshold_scale -> the class count whose ln scales the threshold


@pytest.mark.parametrize("scale", ["ln2", "lnC"])
def test_threshold_ramps_from_three_quarters_of_its_scale_to_the_scale(scale):
    method = build_method("ua_mt", {"threshold_scale": scale}, 1, NUM_CLASSES)
    log_scale = math.log(SCALE_CLASSES[scale])
    images = torch.zeros(2, 1, 16, 16)
    start = method.certainty_mask(images, 0, TOTAL_STEPS)[1]
    # the sigmoid ramp is exp(-5) at step 0, so the start is 0.75 ln K up to 0.25 exp(-5) ln K
    assert start == pytest.approx((0.75 + 0.25 * math.exp(-5)) * log_scale)
    assert start == pytest.approx(0.75 * log_scale, abs=0.25 * math.exp(-5) * log_scale + 1e-12)
    assert method.certainty_mask(images, TOTAL_STEPS, TOTAL_STEPS)[1] == log_scale
    assert uncertainty_threshold(1.0, SCALE_CLASSES[scale]) == log_scale


def test_the_threshold_is_ln_2_whatever_the_class_count_by_default():
    assert build_method("ua_mt", {}, 1, 7).options["threshold_scale"] == "ln2"
    assert build_method("ua_mt", {}, 1, 7).certainty_mask(torch.zeros(2, 1, 16, 16), 100, 100)[1] == math.log(2)


@pytest.mark.parametrize("scale", ["ln2", "lnC"])
@pytest.mark.parametrize("step", [0, 20, TOTAL_STEPS])
def test_mask_keeps_exactly_the_pixels_below_the_current_threshold(step, scale):
    method = build_method("ua_mt", {"mc_passes": MC_PASSES, "threshold_scale": scale}, 1, NUM_CLASSES)
    method.teacher, exact_entropy = known_uncertainty_teacher()
    ramp = sigmoid_rampup(step, round(method.options["rampup_fraction"] * TOTAL_STEPS))
    expected_threshold = (0.75 + 0.25 * ramp) * math.log(SCALE_CLASSES[scale])
    assert (exact_entropy - expected_threshold).abs().min() > 1e-3  # no pixel on the edge
    mask, threshold = method.certainty_mask(torch.zeros(2, 1, 2, 8), step, TOTAL_STEPS)
    assert method.teacher.calls == MC_PASSES
    assert threshold == pytest.approx(expected_threshold)
    assert mask.shape == (2, 2, 8) and mask.dtype == torch.bool
    expected = (exact_entropy < expected_threshold).expand(2, -1, -1)
    assert torch.equal(mask, expected)
    assert expected.any()
    if step == 0:  # the disagreeing passes are uncertain although every pass is confident
        assert not mask[:, 1, 4:].any() and mask[:, 1, :4].all()


def test_entropy_is_of_the_mean_prediction():
    uniform = torch.full((1, 4, 1, 1), 0.25)
    one_hot = torch.tensor([1.0, 0, 0, 0]).reshape(1, 4, 1, 1)
    assert predictive_entropy(uniform).item() == pytest.approx(math.log(4), abs=1e-5)
    assert predictive_entropy(one_hot).item() == pytest.approx(0.0, abs=1e-5)


def test_masked_mse_is_the_mean_over_certain_pixels_and_classes():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(2, NUM_CLASSES, 4, 4, generator=generator, requires_grad=True)
    teacher = torch.randn(2, NUM_CLASSES, 4, 4, generator=generator, requires_grad=True)
    mask = torch.rand(2, 4, 4, generator=generator) < 0.5
    squared = (student.softmax(1) - teacher.softmax(1)) ** 2
    expected = squared.permute(0, 2, 3, 1)[mask].mean()
    loss = masked_softmax_mse(student, teacher, mask)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    changed = student.detach().clone()
    changed[~mask.unsqueeze(1).expand_as(changed)] += 5.0  # uncertain pixels do not count
    assert masked_softmax_mse(changed, teacher, mask).item() == pytest.approx(loss.item(), rel=1e-6)
    loss.backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0
    assert masked_softmax_mse(student, teacher, torch.zeros_like(mask)).item() == 0.0


def test_masked_mse_equals_ua_mt_code_for_two_classes():
    student, teacher = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4)
    mask = torch.rand(1, 4, 4) < 0.5
    squared = (student.softmax(1) - teacher.softmax(1)) ** 2
    original = (mask.unsqueeze(1) * squared).sum() / (2 * mask.sum() + 1e-16)
    assert masked_softmax_mse(student, teacher, mask).item() == pytest.approx(original.item(), rel=1e-6)


def test_mask_normaliser_two_divides_by_two_whatever_the_class_count():
    student, teacher = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
    mask = torch.rand(1, 4, 4) < 0.5
    squared = (student.softmax(1) - teacher.softmax(1)) ** 2
    ssl4mis = (mask.unsqueeze(1) * squared).sum() / (2 * mask.sum() + 1e-16)  # SSL4MIS's 2D script at C = 4
    assert masked_softmax_mse(student, teacher, mask, divisor=2).item() == pytest.approx(ssl4mis.item(), rel=1e-6)
    assert masked_softmax_mse(student, teacher, mask).item() == pytest.approx(ssl4mis.item() / 2, rel=1e-6)


def test_no_consistency_where_the_teacher_is_uncertain_everywhere():
    method = build_method("ua_mt", {"mc_passes": NUM_CLASSES}, 1, NUM_CLASSES)
    disagreeing = [torch.full((1, NUM_CLASSES, 32, 32), 0.0).index_fill_(1, torch.tensor([k]), 10.0) for k in range(NUM_CLASSES)]
    method.teacher = CyclingTeacher(disagreeing)
    images = torch.randn(2, 1, 32, 32)
    losses = method.training_step(LabeledBatch(images, torch.zeros(2, 32, 32, dtype=torch.long)), images, 0, TOTAL_STEPS)
    assert method.teacher.calls == 1 + NUM_CLASSES  # the consistency target + T Monte Carlo passes
    assert losses["certain_fraction"].item() == 0.0 and losses["loss_unsup"].item() == 0.0
    assert losses["loss"].item() == pytest.approx(losses["loss_sup"].item())
