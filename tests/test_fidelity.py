"""Loss for loss: each method under recipe ``authors`` against the released code's formulas.

The references below are written from the papers and from what the released code computes
(docs/fidelity.md gives file and line for each), as plain closed forms (Dice as a loop over
classes, KL from log-softmax as ``nn.KLDivLoss`` does), independently of ``methods.losses``. Each
test runs ``training_step`` in train mode, records the logits every network or decoder produced
(forward hooks, so dropout and perturbation draws need no fixing), fixes the remaining draws
(UAPS's Dirichlet weights, UA-MT's teacher) and checks every loss term, the weights and the total
to 1e-5 relative in float32. Steps are chosen on the released code's "epoch" boundaries, where its
stepwise ramp-up (``sigmoid_rampup(iter_num // q, 200)``) equals ours, with the released
iteration counts as ``total_steps``.

The UAPS and simEps scripts' loop numbers are written below as data read from the scripts
(``RELEASED``, file and line for each), not taken from the project: the ``authors`` recipe must
resolve every run to them (iterations, learning rate, its floor, plateau patience, ramp length,
devices, float32, nearest-neighbour resizing).

Also: the perturbations have the released code's statistics, every recipe builds for every method
and dataset, and UA-MT's certainty mask no longer keeps every pixel of a trained model.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from defectseg.benchmarks.engine.config import load_profile, resolve_run
from defectseg.benchmarks.engine.recipes import RECIPES
from defectseg.datasets.cache import cache_key, load_arrays, nearest_indices
from defectseg.datasets.synthetic import SyntheticDefects
from defectseg.methods import ConfigError, LabeledBatch, available_methods, build_method, get_method_class
from defectseg.methods.dropout import GapDropout
from defectseg.methods.perturbations import ChannelDropout, FeatureDropout

torch.set_num_threads(1)
NUM_CLASSES = 4
SIZE = 32
DATASETS = ("neu", "mtiles", "dagm", "synthetic")
ALL_METHODS = ("supervised", "mean_teacher", "ua_mt", "cps", "cct", "urpc", "cross_teaching", "uaps", "simeps")
SSL4MIS_TOTAL, SSL4MIS_EPOCH = 30000, 150  # SSL4MIS 2D scripts: max_iterations, iter_num // 150
SSL4MIS_STEP = 7 * SSL4MIS_EPOCH  # after Mean Teacher's 1000 iterations without consistency


# ---------------------------------------------------------------- the released scripts' loops, as data


@dataclass(frozen=True)
class Script:
    """Numbers of one released training script, as written in it."""

    epochs: int  # epochs = ...; for epoch in range(1, epochs)
    iter_per_epoch: int  # iter_per_epoch = ...
    first_iteration: int  # for iteration in range(first_iteration, iter_per_epoch)
    ramp_epoch: int  # sigmoid_rampup(iter_num // ramp_epoch, 200)
    lr: float  # --base_lr default
    min_lr: float  # ReduceLROnPlateau(..., min_lr=...), stepped once per epoch
    patience: int  # ReduceLROnPlateau(..., patience=...), in epochs
    devices: int  # GPUs of its nn.DataParallel

    @property
    def epoch_length(self) -> int:
        return self.iter_per_epoch - self.first_iteration

    @property
    def iterations(self) -> int:
        return (self.epochs - 1) * self.epoch_length


# Lines: epochs, iter_per_epoch, the iteration loop, the ramp, --base_lr, the scheduler; DataParallel.
RELEASED: dict[tuple[str, str], Script] = {
    # UAPS (182a1b8) UAPS_train.py:66,78,159,279,44,113; UAPS_model.py:13 nn.DataParallel(model), UAPS_train.py:4 "0,1"
    ("uaps", "neu"): Script(800, 60, 1, 80, 1e-3, 1e-8, 50, 2),
    # MTiles-Dataset-codes/UAPS_train.py:63,74,149,282,45,104; UAPS_model.py:18, UAPS_train.py:4
    ("uaps", "mtiles"): Script(800, 20, 1, 50, 2e-3, 1e-8, 50, 2),
    # DAGM-Dataset-codes/UAPS_train.py:59,70,145,250,41,100; UAPS_model.py:12, UAPS_train.py:4
    ("uaps", "dagm"): Script(800, 30, 1, 60, 1e-3, 1e-6, 50, 2),
    # simEps (17de20a) simEps_train.py:59,75,191,312,41,123-125; simEps_model.py:22-24 device_ids=[0,1]
    ("simeps", "neu"): Script(800, 60, 1, 150, 1e-3, 1e-7, 50, 2),
    # MTiles-Dataset-codes/simEps_train.py:55,70,189,306,37,116-118; simEps_model.py:18-20
    ("simeps", "mtiles"): Script(600, 30, 1, 50, 2e-3, 1e-7, 50, 2),
    # DAGM-Dataset-codes/simEps_model_train.py:57,72,196 (range(0, iter_per_epoch)),356,39,122-124; simEps_model.py:21-23
    ("simeps", "dagm"): Script(800, 30, 0, 60, 2e-3, 1e-8, 50, 2),
}


# ---------------------------------------------------------------- references (closed forms)


def released_ramp(step: int, epoch: int, length: int = 200) -> float:
    """The released code's weight ramp: sigmoid_rampup(step // epoch, length) = exp(-5 (1 - t)^2)."""
    t = min(step // epoch, length) / length
    return math.exp(-5.0 * (1.0 - t) ** 2)


def ref_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """nn.CrossEntropyLoss(): mean over pixels of -log softmax at the target class."""
    return -logits.float().log_softmax(1).gather(1, target.long().unsqueeze(1)).mean()


def ref_dice_uaps(logits: Tensor, target: Tensor) -> Tensor:
    """UAPS/simEps ``dice_loss(true, logits, eps=1e-7)``: 1 - mean_c 2 sum(p g) / (sum(p + g) + eps)."""
    probs = logits.float().softmax(1)
    scores = []
    for c in range(probs.shape[1]):
        p, g = probs[:, c], (target == c).float()
        scores.append(2 * (p * g).sum() / ((p + g).sum() + 1e-7))
    return 1 - sum(scores) / len(scores)


def ref_dice_ssl4mis(probs: Tensor, target: Tensor) -> Tensor:
    """SSL4MIS ``DiceLoss`` on probabilities: mean_c 1 - (2 sum(p g) + 1e-5) / (sum(p^2) + sum(g^2) + 1e-5)."""
    losses = []
    for c in range(probs.shape[1]):
        p, g = probs[:, c].float(), (target == c).float()
        losses.append(1 - (2 * (p * g).sum() + 1e-5) / ((p * p).sum() + (g * g).sum() + 1e-5))
    return sum(losses) / len(losses)


def ref_seg(logits: Tensor, target: Tensor, dice: str) -> Tensor:
    """0.5 (CE + Dice) with the Dice of the UAPS code ("uaps") or of SSL4MIS ("ssl4mis")."""
    d = ref_dice_uaps(logits, target) if dice == "uaps" else ref_dice_ssl4mis(logits.float().softmax(1), target)
    return 0.5 * (ref_cross_entropy(logits, target) + d)


def ref_kl_to_mean(logits: Sequence[Tensor]) -> tuple[list[Tensor], Tensor]:
    """sum_c KLDivLoss(log_softmax(l_d), mean softmax) per pixel for every member, and the mean softmax."""
    mean = sum(member.float().softmax(1) for member in logits) / len(logits)
    return [(mean * (mean.log() - member.float().log_softmax(1))).sum(1) for member in logits], mean


def ref_similarity(a: Tensor, b: Tensor) -> Tensor:
    """simEps ``feature_sim``: MSE of the row-normalised Gram matrices of the flattened batches."""
    def gram(x: Tensor) -> Tensor:
        flat = x.float().reshape(x.shape[0], -1)
        g = flat @ flat.t()
        return g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return ((gram(a) - gram(b)) ** 2).mean()


# ---------------------------------------------------------------- helpers


def authors_method(name: str, dataset: str = "neu", seed: int = 0, in_channels: int = 1, **extra):
    options = {**RECIPES["authors"].method_options(get_method_class(name), dataset), **extra}
    torch.manual_seed(seed)
    return build_method(name, options, in_channels, NUM_CLASSES)


def batch(size: int = SIZE, seed: int = 1) -> tuple[LabeledBatch, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 1, size, size, generator=generator)
    masks = torch.randint(0, NUM_CLASSES, (2, size, size), generator=generator)
    return LabeledBatch(images, masks), torch.randn(2, 1, size, size, generator=generator)


def record_outputs(module: nn.Module, outputs: list) -> None:
    """Append every output of ``module``'s forward to ``outputs``."""
    module.register_forward_hook(lambda m, args, out: outputs.append(out))


def concatenated(outputs: Sequence[Any]) -> Any:
    """Tensors concatenated along dim 0, tuples and lists element by element (what nn.DataParallel gathers)."""
    if isinstance(outputs[0], Tensor):
        return torch.cat(list(outputs))
    return type(outputs[0])(concatenated(parts) for parts in zip(*outputs))


def passes(outputs: list, devices: int) -> list:
    """The outputs recorded per forward pass: the ``devices`` chunks of each pass (one per replica) concatenated."""
    return [concatenated(outputs[start:start + devices]) for start in range(0, len(outputs), devices)]


def close(actual: Tensor | float, expected: Tensor | float) -> None:
    torch.testing.assert_close(torch.as_tensor(actual).float(), torch.as_tensor(expected).float().detach(), rtol=1e-5, atol=1e-7)


def check_parts(out: dict[str, Tensor], expected: dict[str, Tensor | float]) -> None:
    for key, value in expected.items():
        close(out[key], value)


def gradients(loss: Tensor, params: list[Tensor]) -> list[Tensor]:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def same_gradients(method: nn.Module, loss: Tensor, reference: Tensor) -> None:
    """The method's loss and the reference send the same gradient to every parameter."""
    params = [p for p in method.parameters() if p.requires_grad]
    for ours, theirs in zip(gradients(loss, params), gradients(reference, params)):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------- UAPS

LAMBDA2_RAMPED = {"neu": True, "mtiles": False, "dagm": True}  # MTiles-Dataset-codes/UAPS_train.py:286: + 1 * loss_un
MIXING = torch.tensor([0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize("dataset", sorted(LAMBDA2_RAMPED))
def test_uaps_matches_the_released_losses(dataset, monkeypatch):
    script = RELEASED["uaps", dataset]
    total, epoch, lambda2_ramped = script.iterations, script.ramp_epoch, LAMBDA2_RAMPED[dataset]
    step = 100 * epoch
    method = authors_method("uaps", dataset)
    monkeypatch.setattr(method, "mixing_weights", lambda device="cpu": MIXING.to(device))
    outputs: list = []
    record_outputs(method.net, outputs)
    labeled, unlabeled = batch()
    out = method.training_step(labeled, unlabeled, step, total)
    lab, unl = passes(outputs, script.devices)  # every decoder's logits: labelled pass, unlabelled pass
    loss_seg = sum(ref_seg(member, labeled.masks, "uaps") for member in lab) / 4
    variance, _ = ref_kl_to_mean(unl)
    mixture = sum(w * member.detach().softmax(1) for w, member in zip(MIXING, unl))
    pseudo = mixture.argmax(1)
    # torch.mean(ps * exp(-variance)): the scalar loss times the mean confidence, which keeps its gradient
    loss_ups = sum(ref_seg(member, pseudo, "uaps") * torch.exp(-v).mean() for member, v in zip(unl, variance)) / 4
    loss_un = (sum(variance) / 4).mean()
    ramp = released_ramp(step, epoch)
    lambda1, lambda2 = 0.1 * ramp, (0.1 * ramp if lambda2_ramped else 1.0)
    reference = loss_seg + lambda1 * loss_ups + lambda2 * loss_un
    check_parts(out, {"loss_sup": loss_seg, "loss_ups": loss_ups, "loss_un": loss_un, "loss_ps": 0.0})
    check_parts(out, {"unsup_weight": lambda1, "lambda2": lambda2, "loss": reference})
    same_gradients(method, out["loss"], reference)


# ---------------------------------------------------------------- simEps

SIMEPS_LOSSES = {  # dataset: (similarity weight, ensemble, stages)
    "neu": (50.0, "max", ("output",)),  # simEps_train.py:73, 279-281, 259-261
    "mtiles": (200.0, "mean", ("output",)),  # MTiles-Dataset-codes/simEps_train.py:309, 269-271, 256-260
    "dagm": (200.0, "max", ("encoder", "decoder_last")),  # DAGM-Dataset-codes/simEps_model_train.py:357, 323-325, 284-295
}


def ref_cross_pseudo(logits: Sequence[Tensor], ensemble: str) -> Tensor:
    """sum_i 0.5 (CE + Dice) of network i against argmax of the max (or mean) of the others' softmax."""
    total = 0.0
    for i, member in enumerate(logits):
        others = [other.detach().softmax(1) for j, other in enumerate(logits) if j != i]
        combined = torch.maximum(*others) if ensemble == "max" else (others[0] + others[1]) / 2
        total = total + ref_seg(member, combined.argmax(1), "uaps")
    return total


@pytest.mark.parametrize("dataset", sorted(SIMEPS_LOSSES))
def test_simeps_matches_the_released_losses(dataset):
    script = RELEASED["simeps", dataset]
    (total, epoch), (sim_weight, ensemble, stages) = (script.iterations, script.ramp_epoch), SIMEPS_LOSSES[dataset]
    step = 100 * epoch
    method = authors_method("simeps", dataset)
    heads = [[] for _ in method.nets]  # per network: (last decoder features, logits) of each pass
    encoders = [[] for _ in method.nets]
    for net, head_log, encoder_log in zip(method.nets, heads, encoders):
        head = net.decoder.head
        head.register_forward_hook(lambda m, args, out, log=head_log: log.append((args[0], out)))
        record_outputs(net.encoder, encoder_log)
    labeled, unlabeled = batch()
    out = method.training_step(labeled, unlabeled, step, total)
    heads, encoders = [passes(log, script.devices) for log in heads], [passes(log, script.devices) for log in encoders]
    compared = {"encoder": lambda n, k: encoders[n][k][-1], "decoder_last": lambda n, k: heads[n][k][0], "output": lambda n, k: heads[n][k][1]}
    lab = [heads[n][0][1] for n in range(3)]
    unl = [heads[n][1][1] for n in range(3)]
    loss_sup = sum(ref_seg(member, labeled.masks, "uaps") for member in lab)
    loss_sim = sum(
        ref_similarity(compared[stage](i, k), compared[stage](j, k))
        for k in (0, 1) for stage in stages for i, j in combinations(range(3), 2)
    )
    loss_cps, loss_cps_labeled = ref_cross_pseudo(unl, ensemble), ref_cross_pseudo(lab, ensemble)
    cps_weight = 0.1 * released_ramp(step, epoch)
    reference = loss_sup + cps_weight * (loss_cps + loss_cps_labeled) + sim_weight * loss_sim
    check_parts(out, {"loss_sup": loss_sup, "loss_cps": loss_cps, "loss_cps_labeled": loss_cps_labeled, "loss_sim": loss_sim})
    check_parts(out, {"unsup_weight": cps_weight, "similarity_weight": sim_weight, "loss": reference})


# ---------------------------------------------------------------- supervised, Mean Teacher, UA-MT


def test_supervised_matches_the_uaps_baseline_script():
    method = authors_method("supervised")
    outputs: list = []
    record_outputs(method.net, outputs)
    labeled, unlabeled = batch()
    out = method.training_step(labeled, unlabeled, 0, 100)
    check_parts(out, {"loss": ref_seg(outputs[0], labeled.masks, "uaps"), "loss_sup": ref_seg(outputs[0], labeled.masks, "uaps")})


@pytest.mark.parametrize("step", [999, SSL4MIS_STEP])
def test_mean_teacher_matches_ssl4mis(step):
    method = authors_method("mean_teacher")
    student, teacher = [], []
    record_outputs(method.student, student)
    record_outputs(method.teacher, teacher)
    inputs = []
    method.student.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    labeled, unlabeled = batch()
    out = method.training_step(labeled, unlabeled, step, SSL4MIS_TOTAL)
    assert torch.equal(inputs[0][2:], unlabeled)  # the student sees the clean unlabelled images
    loss_sup = ref_seg(student[0][:2], labeled.masks, "ssl4mis")
    consistency = ((student[0][2:].softmax(1) - teacher[0].softmax(1)) ** 2).mean()
    weight = 0.0 if step < 1000 else 0.1 * released_ramp(step, SSL4MIS_EPOCH)  # train_mean_teacher_2D.py:169-174
    check_parts(out, {"loss_sup": loss_sup, "loss_unsup": consistency, "unsup_weight": weight})
    close(out["loss"], loss_sup + weight * consistency)


class FixedTeacher(nn.Module):
    """Stand-in teacher: fixed logit maps in turn, whatever the input (the Monte Carlo draws, fixed)."""

    def __init__(self, logit_maps: list[Tensor]) -> None:
        super().__init__()
        self.logit_maps, self.calls = logit_maps, 0

    def forward(self, x: Tensor) -> Tensor:
        logits = self.logit_maps[self.calls % len(self.logit_maps)]
        self.calls += 1
        return logits


def test_ua_mt_matches_ssl4mis():
    method = authors_method("ua_mt")
    generator = torch.Generator().manual_seed(3)
    # 1 consistency target + 8 Monte Carlo passes around one map whose confidence grows along the rows,
    # so that some pixels pass ln 2 and some do not
    base = torch.randn(2, NUM_CLASSES, SIZE, SIZE, generator=generator) * torch.linspace(0, 8, SIZE)
    maps = [base + torch.randn(base.shape, generator=generator) for _ in range(9)]
    method.teacher = FixedTeacher(maps)
    student: list = []
    record_outputs(method.student, student)
    labeled, unlabeled = batch()
    out = method.training_step(labeled, unlabeled, SSL4MIS_STEP, SSL4MIS_TOTAL)
    mean = sum(m.softmax(1) for m in maps[1:]) / 8
    uncertainty = -(mean * torch.log(mean + 1e-6)).sum(1, keepdim=True)
    ramp = math.exp(-5 * (1 - SSL4MIS_STEP / SSL4MIS_TOTAL) ** 2)  # sigmoid_rampup(iter_num, max_iterations)
    threshold = (0.75 + 0.25 * ramp) * math.log(2)  # train_uncertainty_aware_mean_teacher_2D.py:187-188
    mask = (uncertainty < threshold).float()
    assert 0 < mask.mean() < 1
    distance = (student[0][2:].softmax(1) - maps[0].softmax(1)) ** 2
    consistency = (mask * distance).sum() / (2 * mask.sum() + 1e-16)
    weight = 0.1 * released_ramp(SSL4MIS_STEP, SSL4MIS_EPOCH)
    loss_sup = ref_seg(student[0][:2], labeled.masks, "ssl4mis")
    check_parts(out, {"loss_sup": loss_sup, "loss_unsup": consistency, "unsup_weight": weight})
    check_parts(out, {"certain_fraction": mask.mean(), "uncertainty_threshold": threshold, "loss": loss_sup + weight * consistency})


# ---------------------------------------------------------------- CPS, CCT, URPC, cross teaching


def test_cps_matches_ssl4mis():
    method = authors_method("cps")
    first, second = [], []
    record_outputs(method.net1, first)
    record_outputs(method.net2, second)
    labeled, unlabeled = batch()
    out = method.training_step(labeled, unlabeled, SSL4MIS_STEP, SSL4MIS_TOTAL)
    a, b = first[0], second[0]
    cps1 = ref_cross_entropy(a[2:], b[2:].detach().argmax(1))  # unlabelled images only
    cps2 = ref_cross_entropy(b[2:], a[2:].detach().argmax(1))
    weight = 0.1 * released_ramp(SSL4MIS_STEP, SSL4MIS_EPOCH)
    sup1, sup2 = ref_seg(a[:2], labeled.masks, "ssl4mis"), ref_seg(b[:2], labeled.masks, "ssl4mis")
    check_parts(out, {"loss_sup1": sup1, "loss_sup2": sup2, "loss_cps1": cps1, "loss_cps2": cps2, "unsup_weight": weight})
    close(out["loss"], sup1 + sup2 + weight * (cps1 + cps2))


def test_cct_matches_ssl4mis():
    method = authors_method("cct")
    outputs: list = []
    record_outputs(method.net, outputs)
    labeled, unlabeled = batch()
    out = method.training_step(labeled, unlabeled, SSL4MIS_STEP, SSL4MIS_TOTAL)
    decoders = outputs[0]
    loss_sup = sum(ref_cross_entropy(d[:2], labeled.masks) + ref_dice_ssl4mis(d[:2].softmax(1), labeled.masks) for d in decoders) / 8
    main = decoders[0][2:].softmax(1)  # not detached (train_cross_consistency_training_2D.py:162-169)
    loss_cons = sum(((main - aux[2:].softmax(1)) ** 2).mean() for aux in decoders[1:]) / 3
    weight = 0.1 * released_ramp(SSL4MIS_STEP, SSL4MIS_EPOCH)
    reference = loss_sup + weight * loss_cons
    check_parts(out, {"loss_sup": loss_sup, "loss_unsup": loss_cons, "unsup_weight": weight, "loss": reference})
    same_gradients(method, out["loss"], reference)


def test_urpc_matches_ssl4mis():
    method = authors_method("urpc")
    outputs, head_inputs = [], []
    record_outputs(method.net, outputs)
    for head in method.net.aux_heads:
        head.register_forward_hook(lambda m, args, out: head_inputs.append(out))
    labeled, unlabeled = batch()
    out = method.training_step(labeled, unlabeled, SSL4MIS_STEP, SSL4MIS_TOTAL)
    scales = outputs[0]
    for coarse, resized in zip(head_inputs, scales[1:]):  # F.interpolate(x, shape): nearest neighbour
        factor = SIZE // coarse.shape[-1]
        close(resized, coarse.repeat_interleave(factor, -1).repeat_interleave(factor, -2))
    loss_sup = sum(ref_cross_entropy(s[:2], labeled.masks) + ref_dice_ssl4mis(s[:2].softmax(1), labeled.masks) for s in scales) / 8
    variance, mean = ref_kl_to_mean([s[2:] for s in scales])
    consistency = 0.0
    for s, v in zip(scales, variance):
        exp_v = torch.exp(-v).unsqueeze(1)
        distance = (mean - s[2:].softmax(1)) ** 2
        consistency = consistency + (distance * exp_v).mean() / (exp_v.mean() + 1e-8) + v.mean()
    loss_cons = consistency / 4
    weight = 0.1 * released_ramp(SSL4MIS_STEP, SSL4MIS_EPOCH)
    check_parts(out, {"loss_sup": loss_sup, "loss_unsup": loss_cons, "unsup_weight": weight, "loss": loss_sup + weight * loss_cons})


def test_cross_teaching_matches_ssl4mis():
    method = authors_method("cross_teaching")
    cnn, transformer = [], []
    record_outputs(method.cnn, cnn)
    record_outputs(method.transformer, transformer)
    labeled, unlabeled = batch()
    out = method.training_step(labeled, unlabeled, SSL4MIS_STEP, SSL4MIS_TOTAL)
    a, b = cnn[0], transformer[0]
    ct_cnn = ref_dice_ssl4mis(a[2:].softmax(1), b[2:].detach().argmax(1))
    ct_transformer = ref_dice_ssl4mis(b[2:].softmax(1), a[2:].detach().argmax(1))
    weight = 0.1 * released_ramp(SSL4MIS_STEP, SSL4MIS_EPOCH)
    sup_cnn, sup_transformer = ref_seg(a[:2], labeled.masks, "ssl4mis"), ref_seg(b[:2], labeled.masks, "ssl4mis")
    check_parts(out, {
        "loss_sup_cnn": sup_cnn, "loss_sup_transformer": sup_transformer,
        "loss_ct_cnn": ct_cnn, "loss_ct_transformer": ct_transformer, "unsup_weight": weight,
    })
    close(out["loss"], sup_cnn + sup_transformer + weight * (ct_cnn + ct_transformer))


# ---------------------------------------------------------------- perturbations


def dropout_statistics(layer: nn.Module, p: float) -> None:
    """Element-wise: keep rate 1 - p within 1 %, kept values scaled by 1 / (1 - p), no whole channel zeroed."""
    x = torch.ones(8, 64, 64, 64)
    y = layer.train()(x)
    kept = y != 0
    assert float(kept.float().mean()) == pytest.approx(1 - p, rel=0.01)
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    assert kept.flatten(2).any(2).all()  # every (sample, channel) keeps some elements


def test_uaps_dropout_decoder_is_element_wise_with_p_half_as_released():
    method = authors_method("uaps")
    layer = method.net.perturbations[1]
    assert isinstance(layer, GapDropout) and layer.p == 0.5
    dropout_statistics(layer, 0.5)
    unified = build_method("uaps", {}, 1, NUM_CLASSES).net.perturbations[1]
    assert isinstance(unified, ChannelDropout)  # unified keeps channel dropout: whole channels zeroed
    y = unified.train()(torch.ones(8, 64, 16, 16))
    per_channel = y.flatten(2).amax(2)
    assert ((per_channel == 0) | (per_channel == 2)).all() and (per_channel == 0).any()


def test_cct_dropout_is_element_wise_with_p_0_3_and_urpc_with_p_half():
    cct = authors_method("cct").net.perturbations
    assert isinstance(cct[1], GapDropout) and cct[1].p == 0.3
    dropout_statistics(cct[1], 0.3)
    urpc = authors_method("urpc").net.aux_perturbations[2]  # before the 1/8-scale head
    assert isinstance(urpc, GapDropout) and urpc.p == 0.5
    dropout_statistics(urpc, 0.5)


@pytest.mark.parametrize("name, modules", [
    ("uaps", lambda m: m.net.perturbations), ("cct", lambda m: m.net.perturbations), ("urpc", lambda m: m.net.aux_perturbations),
])
def test_feature_dropout_draws_one_threshold_per_batch_as_released(name: str, modules: Callable):
    layer = next(module for module in modules(authors_method(name)) if isinstance(module, FeatureDropout))
    ramp = torch.linspace(0, 1, 32 * 32).reshape(1, 1, 32, 32).expand(16, 8, -1, -1).contiguous()
    torch.manual_seed(0)
    masks = (layer.train()(ramp) != 0).float()
    assert torch.equal(masks, masks[:1].expand_as(masks))  # one fraction for the whole batch
    sample = FeatureDropout(draw="sample").train()(ramp) != 0
    assert not torch.equal(sample, sample[:1].expand_as(sample))  # unified: one fraction per sample


# ---------------------------------------------------------------- the loop, resizing and precision of each released script


@pytest.mark.parametrize("method, dataset", sorted(RELEASED))
def test_authors_runs_have_their_released_scripts_loop(method, dataset):
    script = RELEASED[method, dataset]
    run = resolve_run(load_profile("paper"), dataset, 0.1, method, 0)
    train, options = run["train"], run["method_options"]
    assert (train["iterations"], train["lr"], train["min_lr"]) == (script.iterations, script.lr, script.min_lr)
    assert train["lr_patience"] == script.patience * script.epoch_length  # in iterations
    assert round(options["rampup_fraction"] * train["iterations"]) == 200 * script.ramp_epoch  # Method.rampup's length
    assert options["data_parallel"] == script.devices
    assert (train["precision"], train["resize"]) == ("fp32", "nearest")


def test_every_other_method_runs_the_uaps_scripts_loop_and_a_dataset_without_script_the_neu_seg_one():
    profile = load_profile("paper")
    for dataset, script_of in (("neu", "neu"), ("mtiles", "mtiles"), ("dagm", "dagm"), ("synthetic", "neu")):
        for method in ALL_METHODS:
            script = RELEASED["simeps" if method == "simeps" else "uaps", script_of]
            train = resolve_run(profile, dataset, 0.1, method, 0)["train"]
            loop = (train["iterations"], train["lr"], train["min_lr"], train["lr_patience"])
            assert loop == (script.iterations, script.lr, script.min_lr, script.patience * script.epoch_length), (method, dataset)


def test_the_profiles_own_values_win_over_the_released_loop():
    profile = load_profile("paper", ["train.iterations=300", "train_per_dataset.mtiles.lr=5e-4"])
    for method in ("uaps", "simeps", "supervised"):
        script = RELEASED["simeps" if method == "simeps" else "uaps", "mtiles"]
        train = resolve_run(profile, "mtiles", 0.1, method, 0)["train"]
        assert (train["iterations"], train["lr"]) == (300, 5e-4)
        assert (train["min_lr"], train["lr_patience"]) == (script.min_lr, script.patience * script.epoch_length)


# cv2.resize(..., interpolation=cv2.INTER_NEAREST) (opencv-python-headless 5.1.0; the released code pins
# 4.5.2, whose resizeNN is the same): the source row of the first output rows, from NEU-Seg's 200 px and
# DAGM's 512 px to the released 256 px, and from 40 to 32 px; PIL's nearest (pixel centres) from 200 to 256
CV2_NEAREST_ROWS = {
    (200, 256): [0, 0, 1, 2, 3, 3, 4, 5, 6, 7, 7, 8, 9, 10, 10, 11],
    (512, 256): [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30],
    (40, 32): [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 15, 16, 17, 18],
}
PIL_NEAREST_ROWS_200_TO_256 = [0, 1, 1, 2, 3, 4, 5, 5, 6, 7, 8, 8, 9, 10, 11, 12]


def test_nearest_resizing_is_opencvs_and_gets_its_own_cache_key():
    for (source, size), rows in CV2_NEAREST_ROWS.items():
        assert nearest_indices(source, size)[: len(rows)].tolist() == rows
    assert nearest_indices(200, 256)[:16].tolist() != PIL_NEAREST_ROWS_200_TO_256
    data = SyntheticDefects(num_images=6, image_size=40, seed=0)
    records = data.records()
    nearest = load_arrays(data, records, 32, None, resize="nearest")
    rows = nearest_indices(40, 32)
    assert np.array_equal(nearest.images[0, 0], data.read_image(records[0])[rows][:, rows, 0])
    assert np.array_equal(nearest.masks[0], data.read_mask(records[0])[rows][:, rows])
    assert not np.array_equal(nearest.images, load_arrays(data, records, 32, None).images)
    assert cache_key(data, records, 32) == "8dcc5b53cb45f500"  # a bilinear cache's key from before ``resize``
    assert cache_key(data, records, 32, "nearest") != cache_key(data, records, 32)


# ---------------------------------------------------------------- recipes


@pytest.mark.parametrize("name", ALL_METHODS)
def test_every_recipe_builds_for_every_dataset_and_unified_changes_nothing(name):
    cls, unified, authors = get_method_class(name), RECIPES["unified"], RECIPES["authors"]
    assert unified.method_options(cls, "neu") == {}
    for dataset in DATASETS:
        options = authors.method_options(cls, dataset)
        assert set(options) <= set(cls.all_defaults())
        in_channels = 1 if dataset == "dagm" else 3
        build_method(name, options, in_channels, NUM_CLASSES)
    assert authors.method_options(cls, "synthetic") == authors.method_options(cls, "neu")  # no own script


@pytest.mark.parametrize("name, key, value", [
    ("supervised", "dice_form", "sorensen"), ("uaps", "dice_form", "v2"), ("simeps", "dice_form", None),
    ("uaps", "detach_confidence", "no"), ("uaps", "lambda2_rampup", 1), ("uaps", "dropout_mode", "spatial"),
    ("cct", "dropout_p", 1.0), ("urpc", "dropout_p", -0.1), ("urpc", "feature_dropout_draw", "pixel"),
    ("simeps", "pseudo_label_ensemble", "vote"), ("simeps", "similarity_stages", ["decoder_first"]),
    ("mean_teacher", "student_noise", "yes"), ("mean_teacher", "consistency_start", 1.5),
    ("ua_mt", "threshold_scale", "ln4"), ("ua_mt", "mask_normaliser", 2), ("cct", "detach_target", 0),
    ("urpc", "aux_upsampling", "bicubic"),
])
def test_new_options_are_checked(name, key, value):
    with pytest.raises(ConfigError, match=key):
        build_method(name, {key: value}, 1, NUM_CLASSES)


def test_the_nine_methods_are_all_covered():
    assert set(ALL_METHODS) <= set(available_methods()) and tuple(RECIPES) == ("unified", "authors")


# ---------------------------------------------------------------- UA-MT's mask after training


def test_ua_mt_mask_keeps_only_part_of_a_trained_models_unlabelled_batch():
    """With ln C at C = 4 the mask keeps every pixel once ramped up; with ln 2 it does not."""
    data = SyntheticDefects(num_images=24, image_size=SIZE, seed=0)
    records = data.records()
    images = torch.from_numpy(np.stack([data.read_image(r) for r in records])).permute(0, 3, 1, 2).float() / 127.5 - 1
    masks = torch.from_numpy(np.stack([data.read_mask(r) for r in records])).long()
    torch.manual_seed(0)
    method = build_method("ua_mt", {"mc_passes": 4}, 1, len(data.class_names))
    optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    steps = 40
    for step in range(steps):
        index = torch.randperm(16)[:8]
        losses = method.training_step(LabeledBatch(images[index[:4]], masks[index[:4]]), images[index[4:]], step, steps)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        method.on_step_end(step)
    unlabeled = images[16:]
    with torch.no_grad():
        torch.manual_seed(1)
        fixed = method.certainty_mask(unlabeled, steps, steps)[0].float().mean()
        method.options["threshold_scale"] = "lnC"
        torch.manual_seed(1)
        legacy = method.certainty_mask(unlabeled, steps, steps)[0].float().mean()
    assert 0 < fixed < 1
    assert legacy == 1.0
