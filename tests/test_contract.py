"""The Method contract, checked for every built-in method and for the example plugin.

Step output (``"loss"`` and the standard log keys, finite scalars), gradients (every trainable
parameter learns, frozen ones such as EMA teachers get none), predictions (shape, variants),
options (checked by the base class), ``state_dict`` round trip and determinism for a seed.
Tiny inputs: 2 labelled + 2 unlabelled one-channel 32x32 images, 3 classes.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from defectseg.methods import ConfigError, LabeledBatch, Method, available_methods, get_method_class, load_plugin
from defectseg.methods.base import STANDARD_LOG_KEYS
from defectseg.methods.registry import check_step_output
from tests.helpers import restored_registry

from defectseg.benchmarks.engine.evaluate import autocast

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "my_method.py"
PLUGIN = "my_method (docs/examples)"
BUILTIN = [name for name in available_methods() if get_method_class(name).__module__.startswith("defectseg.methods.")]
FAST_OPTIONS = {"ua_mt": {"mc_passes": 2}}  # fewer teacher passes; every other method at its defaults
WITH_TEACHER = {"mean_teacher", "ua_mt"}  # methods whose ``teacher`` must never get a gradient
NUM_CLASSES, SIZE, STEP, TOTAL_STEPS = 3, 32, 5, 10  # mid-run: every ramped weight is > 0


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors run fastest on one thread (and do not compete with a busy machine's other work)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def example_class():
    """The example plugin's class, loaded as ``run_all.py --plugin`` does; the registry is restored afterwards."""
    with restored_registry():
        (name,) = load_plugin(EXAMPLE)
        yield get_method_class(name)


@pytest.fixture(params=[*BUILTIN, PLUGIN])
def method_class(request) -> type[Method]:
    if request.param == PLUGIN:
        return request.getfixturevalue("example_class")
    return get_method_class(request.param)


def build(cls: type[Method], seed: int = 0) -> Method:
    torch.manual_seed(seed)
    return cls(FAST_OPTIONS.get(cls.name, {}), 1, NUM_CLASSES)


def batch(seed: int = 0) -> tuple[LabeledBatch, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 1, SIZE, SIZE, generator=generator)
    masks = torch.randint(0, NUM_CLASSES, (2, SIZE, SIZE), generator=generator)
    return LabeledBatch(images, masks), torch.randn(2, 1, SIZE, SIZE, generator=generator)


def train_steps(method: Method, steps: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``steps`` optimiser steps as the runner takes them (SGD here), from a seeded RNG; the step outputs."""
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.01)
    torch.manual_seed(seed)
    outputs = []
    for step in range(steps):
        out = method.training_step(*batch(step), STEP + step, TOTAL_STEPS)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        method.on_step_end(STEP + step)
        outputs.append({key: value.detach() for key, value in out.items()})
    return outputs


def test_step_output_has_the_standard_keys_as_finite_scalars(method_class):
    out = check_step_output(method_class.name, build(method_class).training_step(*batch(), STEP, TOTAL_STEPS))
    assert set(STANDARD_LOG_KEYS) <= set(out)
    for key, value in out.items():
        assert value.numel() == 1 and math.isfinite(value.item()), key


def test_loss_reaches_every_trainable_parameter_and_no_frozen_one(method_class):
    method = build(method_class)
    method.training_step(*batch(), STEP, TOTAL_STEPS)["loss"].backward()
    assert [name for name, p in method.named_parameters() if p.requires_grad and p.grad is None] == []
    for name, module in method.named_children():  # every network learns (a single tensor may get exactly 0)
        grads = [p.grad.abs().sum() for p in module.parameters() if p.requires_grad]
        assert not grads or sum(grads) > 0, name
    assert all(p.grad is None for p in method.parameters() if not p.requires_grad)
    teacher = getattr(method, "teacher", None)
    assert (teacher is not None) == (method_class.name in WITH_TEACHER)
    if teacher is not None:
        assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())


def test_predictions_have_the_logits_shape(method_class):
    method = build(method_class).eval()
    images = batch()[1]
    assert method.default_prediction in method.prediction_names()
    with torch.no_grad():
        prediction = method.predict(images)
        variants = method.predict_variants(images)
        members = method.member_outputs(images)
        assert prediction.shape == (2, NUM_CLASSES, SIZE, SIZE) and prediction.is_floating_point()
        assert tuple(variants) == method.variant_names()
        for name, logits in {**variants, **members}.items():
            assert logits.shape == prediction.shape, name
        for name, logits in variants.items():
            torch.testing.assert_close(method.predict_variant(images, name), logits)
        named = method.named_predictions(images, method.prediction_names())
        torch.testing.assert_close(named[method.default_prediction], prediction)


def test_each_option_is_checked_by_the_base_class(method_class):
    for key, spec in method_class.all_option_specs().items():
        bad = 7 if spec.kind == "text" else "no such value"
        with pytest.raises(ConfigError) as error:
            method_class({key: bad}, 1, NUM_CLASSES)
        message = str(error.value)
        assert repr(key) in message and repr(method_class.name) in message and repr(bad) in message
        assert spec.expected() in message


def test_state_dict_round_trip_predicts_identically(method_class):
    trained = build(method_class)
    train_steps(trained, 1)
    fresh = build(method_class, seed=1)
    fresh.load_state_dict(trained.state_dict())
    trained.eval(), fresh.eval()
    images = batch(seed=7)[1]
    with torch.no_grad():
        assert torch.equal(fresh.predict(images), trained.predict(images))
        for name, logits in trained.predict_variants(images).items():
            assert torch.equal(fresh.predict_variants(images)[name], logits), name


def test_same_seed_gives_identical_losses(method_class):
    first, second = (train_steps(build(method_class), 2, seed=3) for _ in range(2))
    for out_first, out_second in zip(first, second):
        assert out_first.keys() == out_second.keys()
        for key in out_first:
            assert torch.equal(out_first[key], out_second[key]), key


def test_a_step_as_the_runner_takes_it_under_bf16_autocast_and_channels_last(method_class):
    """The runner's fast path: weights and images channels-last, the step under bf16 autocast. The losses stay
    finite float32 scalars near the float32 step's, and every trainable parameter still gets a finite gradient."""
    reference = build(method_class).training_step(*batch(), STEP, TOTAL_STEPS)["loss"].item()
    method = build(method_class).to(memory_format=torch.channels_last)
    labeled, unlabeled = batch()
    labeled = LabeledBatch(labeled.images.contiguous(memory_format=torch.channels_last), labeled.masks)
    with autocast(torch.device("cpu"), "bf16"):
        out = method.training_step(labeled, unlabeled.contiguous(memory_format=torch.channels_last), STEP, TOTAL_STEPS)
    for key, value in check_step_output(method_class.name, out).items():
        assert value.numel() == 1 and math.isfinite(value.item()), key
    assert out["loss"].item() == pytest.approx(reference, rel=0.1, abs=0.05)  # bf16 rounding, not another loss
    out["loss"].backward()
    missing = [name for name, p in method.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.isfinite().all())]
    assert missing == []
