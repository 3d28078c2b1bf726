"""Mean Teacher: frozen EMA teacher, exact EMA step, noisy consistency, eval modes.

The step output, gradients and checkpoints of every method: tests/test_contract.py.
"""
import pytest
import torch

from defectseg.methods import ConfigError, build_method
from defectseg.methods.teacher import ema_alpha, input_noise
from tests.helpers import tiny_batch


def runner_optimizer(method: torch.nn.Module) -> torch.optim.Adam:
    """The optimiser exactly as benchmarks.engine.runner builds it."""
    return torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-3)


def test_teacher_gets_no_gradient_and_is_not_optimised():
    method = build_method("mean_teacher", {}, 1, 3)
    optimizer = runner_optimizer(method)
    labeled, unlabeled = tiny_batch()
    method.training_step(labeled, unlabeled, 5, 10)["loss"].backward()
    assert all(not p.requires_grad and p.grad is None for p in method.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.student.parameters())
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in method.student.parameters()}


def test_ema_warmup_alpha():
    assert ema_alpha(0, 0.99) == 0.0
    assert ema_alpha(1, 0.99) == 0.5
    assert ema_alpha(99, 0.99) == pytest.approx(0.99)
    assert ema_alpha(5000, 0.99) == 0.99


@pytest.mark.parametrize("decay", [0.99, 0.9])
def test_ema_step_moves_teacher_toward_student_by_exactly_the_decay(decay):
    method = build_method("mean_teacher", {"ema_decay": decay}, 1, 3)
    optimizer = runner_optimizer(method)
    labeled, unlabeled = tiny_batch()
    method.training_step(labeled, unlabeled, 0, 10)["loss"].backward()
    optimizer.step()  # the student moves away from its copy; BatchNorm running stats changed in training_step
    teacher_before = [p.clone() for p in method.teacher.parameters()]
    student = [p.detach().clone() for p in method.student.parameters()]
    assert any(not torch.equal(t, s) for t, s in zip(teacher_before, student))
    method.on_step_end(10_000)  # past the warm-up: alpha = decay
    for after, before, s in zip(method.teacher.parameters(), teacher_before, student):
        torch.testing.assert_close(after, decay * before + (1 - decay) * s, rtol=0, atol=1e-6)
    for teacher_buffer, student_buffer in zip(method.teacher.buffers(), method.student.buffers()):
        assert torch.equal(teacher_buffer, student_buffer)


def test_first_ema_step_makes_teacher_the_student():
    method = build_method("mean_teacher", {}, 1, 3)
    optimizer = runner_optimizer(method)
    labeled, unlabeled = tiny_batch()
    method.training_step(labeled, unlabeled, 0, 10)["loss"].backward()
    optimizer.step()
    method.on_step_end(0)
    for t, s in zip(method.teacher.state_dict().values(), method.student.state_dict().values()):
        assert torch.equal(t, s)


def test_consistency_compares_independently_noised_student_and_teacher():
    labeled, unlabeled = tiny_batch()
    method = build_method("mean_teacher", {"noise_std": 0.0}, 1, 3).eval()  # eval: no dropout
    assert method.training_step(labeled, unlabeled, 5, 10)["loss_unsup"] < 1e-10  # teacher == student, no noise
    method = build_method("mean_teacher", {}, 1, 3).eval()
    assert method.training_step(labeled, unlabeled, 5, 10)["loss_unsup"] > 0  # independent noise


def test_loss_is_supervised_plus_ramped_consistency():
    method = build_method("mean_teacher", {"consistency": 0.5}, 1, 3)
    labeled, unlabeled = tiny_batch()
    losses = method.training_step(labeled, unlabeled, 30, 100)
    weight = 0.5 * method.rampup(30, 100)
    assert losses["unsup_weight"].item() == pytest.approx(weight)
    assert losses["loss"].item() == pytest.approx((losses["loss_sup"] + weight * losses["loss_unsup"]).item())


def test_eval_mode_picks_the_predicting_network():
    images = torch.randn(1, 1, 32, 32)
    method = build_method("mean_teacher", {"eval_mode": "teacher"}, 1, 3).eval()
    with torch.no_grad():
        for p in method.teacher.parameters():
            p.mul_(0.5)
        torch.testing.assert_close(method.predict(images), method.teacher(images))
        torch.testing.assert_close(method.predict_variants(images)["student"], method.student(images))
    with pytest.raises(ConfigError, match="eval_mode"):
        build_method("mean_teacher", {"eval_mode": "ema"}, 1, 3)
    with pytest.raises(ConfigError, match="ema_decay"):
        build_method("mean_teacher", {"ema_decay": 1.5}, 1, 3)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_input_noise_is_clipped_gaussian_in_the_images_layout(layout):
    torch.manual_seed(0)
    images = torch.zeros(4, 3, 64, 64).contiguous(memory_format=layout)
    noise = input_noise(images, std=1.0, clip=10.0)
    assert noise.is_contiguous(memory_format=layout)
    assert abs(noise.mean().item()) < 0.02 and abs(noise.std().item() - 1.0) < 0.02
    flat = noise.flatten()
    assert abs(torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1].item()) < 0.02  # neighbours independent
    clipped = input_noise(images, std=0.1, clip=0.2)
    clip = torch.tensor(0.2).item()  # 0.2 in float32
    assert clipped.abs().max().item() <= clip
    assert (clipped.abs() == clip).float().mean().item() == pytest.approx(0.0455, abs=0.005)  # P(|N| > 2)
