"""UAPS: uncertainty-aware, dynamically-mixed pseudo-labels from one encoder and several decoders.

Sime, Wang, Zeng, Peng, "Uncertainty-aware and dynamically-mixed pseudo-labels for
semi-supervised defect segmentation", Computers in Industry 152, 2023; released code
github.com/djene-mengistu/UAPS (``UAPS_train.py``, ``utilities/UAPS_unet.py``; per-dataset scripts
in ``MTiles-Dataset-codes/`` and ``DAGM-Dataset-codes/``). Line-by-line comparison with that code,
per recipe: docs/fidelity.md.

A shared encoder feeds a main decoder (clean features) and D auxiliary decoders, each on features
under one perturbation (``methods.perturbations.PERTURBATIONS[:D]``: feature noise, dropout,
feature dropout, feature cutout). Per step, with p_d the softmax of decoder d on the unlabelled
batch and p̄ their mean:

* ℓ_seg: mean over the D+1 decoders of 0.5 (CE + Dice) on the labelled batch;
* uncertainty u_d = Σ_c p̄ (log p̄ − log p_d) per pixel (KL(p̄ ‖ p_d)); every p_d is the exp of
  one float32 log-softmax that the pseudo-label losses reuse;
* pseudo-label argmax Σ_d w_d p_d (no gradient), w ~ Dirichlet(1, …, 1) drawn every step from
  the global RNG of the images' device (``mixing: dynamic``; ``average``: w_d = 1/(D+1));
* ℓ_ups: mean over decoders of the pseudo-label loss 0.5 (CE + Dice) weighted by exp(−u_d);
  ℓ_ps: the same without weighting; ℓ_un: mean over decoders of mean(u_d);
* total ℓ_seg + λ1(t) (ℓ_ps + ℓ_ups) + λ2(t) ℓ_un, λ(t) = λ_max · sigmoid ramp-up.

Logged: ℓ_seg as ``loss_sup``, ℓ_ps + ℓ_ups as ``loss_unsup`` and λ1(t) as ``unsup_weight`` (the
standard keys of ``methods.base``), and ``loss_ps``, ``loss_ups``, ``loss_un``, ``lambda2``,
``mean_exp_neg_u`` (mean exp(−u)).

Options (defaults = recipe ``unified``; ``authors_options`` gives the released code's values):

* ``aux_decoders`` 3 (paper and code: three auxiliary decoders); 0..4, the 4th (feature cutout)
  is our addition (see ``methods.perturbations``).
* ``lambda1`` 0.1, ``lambda2`` 0.1 (paper; code ``--consistency1/2 0.1``), ramped up over
  ``rampup_fraction`` 0.34 of the run (code: 200 "epochs" of 80 iterations out of 47,141).
  ``lambda2_rampup`` true; false keeps λ2 constant (the MTiles script adds ℓ_un with weight 1,
  unramped).
* ``losses`` ["ups", "un"] (paper's full method): any combination of "ps", "ups", "un". A loss
  switched off is still returned, as zero. With both "ps" and "ups" on, both are added under λ1.
* ``mixing`` "dynamic" (paper and code).
* ``uncertainty_weighting`` "pixel" (paper): exp(−u_d) weights every pixel inside the
  pseudo-label loss (CE is the weighted mean over pixels, normalised by the weights' sum; Dice
  uses weighted probabilities and targets), so uncertain pixels count less than confident ones
  and a pixel of weight 0 is ignored. "batch" (released code): the unweighted batch-mean loss
  times mean(exp(−u_d)), one scale per batch and decoder.
* ``detach_confidence`` true: exp(−u_d) carries no gradient, so u is minimised by ℓ_un only.
  False (released code) lets the gradient of ℓ_ups flow into exp(−u_d), which pushes u up.
* ``dice_form`` "ssl4mis" (1 − (2Σpg + ε)/(Σp² + Σg + ε)); "uaps" is the released code's
  ``dice_loss`` (linear cardinality, ε = 1e-7 in the denominator only): ``methods.losses``.
* ``dropout_mode`` "channel", ``dropout_p`` 0.5, ``feature_dropout_draw`` "sample": how the
  dropout and feature-dropout decoders perturb (``methods.perturbations``); the released code
  uses element-wise ``F.dropout(x, 0.5)`` and one feature-dropout threshold per batch.
* ``data_parallel`` 1: the training passes run whole; 2 (released code: ``nn.DataParallel`` over
  two GPUs) splits each pass into halves, each normalised by BatchNorm and perturbed on its own,
  with running statistics from the first half (``methods.data_parallel``).
* ``eval_mode`` "main" (released test notebook evaluates the main decoder); "ensemble" predicts
  log of the mean softmax of all D+1 decoders (argmax = argmax of the mean probabilities). Both
  are always evaluated through ``predict_variants`` with one encoder pass.

Remaining differences from the released code (all listed in docs/fidelity.md):

* Perturbations act in training mode only (the released decoders perturb at test time too, so
  its auxiliary decoders are stochastic at evaluation; its main decoder, which it evaluates, is not).
* u uses log(p + 1e-8) where the code uses log-softmax (equal unless a probability is < ~1e-6).
* The ramp-up is continuous; the code's steps every 80 (NEU-Seg), 50 (MTiles) or 60 (DAGM)
  iterations (``iter_num // 80``).
* Labelled and unlabelled batches go through separate forward passes, as in the released code
  (so BatchNorm normalises each batch, or each half with ``data_parallel`` 2, with its own statistics, as there).
* With D = 0 (one decoder) there is no unlabelled loss at all (u = 0 and the pseudo-label is the
  decoder's own argmax): the method is then exactly the supervised baseline (same ``dice_form``,
  and ``data_parallel`` 1: the released baseline script runs on one GPU).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Dirichlet

from defectseg.options import choice, flag, integer, number, subset

from .base import LabeledBatch, Method, step_losses
from .data_parallel import DATA_PARALLEL, parallel_forward
from .ensemble import ENSEMBLE, ensemble_logits
from .losses import (
    DICE_FORMS,
    hard_labels,
    kl_to_mean,
    log_probabilities,
    pseudo_label_loss_from_log_probs,
    segmentation_loss,
    segmentation_loss_from_log_probs,
)
from .networks import build_backbone
from .perturbations import PERTURBATION_OPTIONS, PERTURBATIONS, MultiDecoderNet, build_perturbations, perturbation_settings
from .registry import register_method
from .released_loops import UAPS_LOOPS, per_dataset

LOSS_NAMES = ("ps", "ups", "un")
# The released code (docs/fidelity.md): UAPS_train.py (NEU-Seg, also used for datasets without a
# script), MTiles-Dataset-codes/UAPS_train.py, DAGM-Dataset-codes/UAPS_train.py.
AUTHORS_OPTIONS: dict[str, Any] = {
    "dice_form": "uaps",  # utilities/pytorch_losses.py:80-115, UAPS_train.py:23
    "uncertainty_weighting": "batch",  # UAPS_train.py:259-268: torch.mean(scalar loss * exp(-u))
    "detach_confidence": False,  # UAPS_train.py:227: exp_variance_main = torch.exp(-variance_main)
    "dropout_mode": "element",  # utilities/UAPS_unet.py:156-158: F.dropout(x, p=0.5)
    "feature_dropout_draw": "batch",  # utilities/UAPS_unet.py:165: np.random.uniform(0.7, 0.9)
    # nn.DataParallel(model) (UAPS_model.py:13; MTiles :18, DAGM :12) over CUDA_VISIBLE_DEVICES="0,1"
    # (UAPS_train.py:4 in all three folders)
    "data_parallel": 2,
}
# ramp-up: sigmoid_rampup(iter_num // q, 200) over the script's run (methods.released_loops)
AUTHORS_PER_DATASET: dict[str, dict[str, Any]] = {
    "neu": {"rampup_fraction": UAPS_LOOPS["neu"].rampup_fraction},
    "mtiles": {  # MTiles-Dataset-codes/UAPS_train.py:286
        "rampup_fraction": UAPS_LOOPS["mtiles"].rampup_fraction,
        "lambda2": 1.0,
        "lambda2_rampup": False,
    },
    "dagm": {"rampup_fraction": UAPS_LOOPS["dagm"].rampup_fraction},
}


def decoder_uncertainty(probs: Sequence[Tensor]) -> list[Tensor]:
    """u_d = KL(p̄ ‖ p_d) per pixel for each decoder's softmax p_d, p̄ their mean; (B, H, W) each."""
    return kl_to_mean(probs, torch.stack(list(probs)).mean(0))


def mixed_pseudo_label(probs: Sequence[Tensor], weights: Tensor) -> Tensor:
    """argmax over classes of Σ_d w_d p_d, computed from detached probabilities: (B, H, W) int64."""
    mixture = sum(w * p.detach() for w, p in zip(weights, probs))
    return hard_labels(mixture)


def uncertainty_weighted_loss(
    log_probs: Tensor,
    pseudo_label: Tensor,
    uncertainty: Tensor,
    mode: str,
    detach: bool = True,
    dice_form: str = "ssl4mis",
) -> Tensor:
    """Pseudo-label loss of ``log_probabilities(logits)`` weighted by exp(−u): per pixel (``pixel``) or per batch (``batch``).

    exp(−u) is detached unless ``detach`` is False (released code).
    """
    confidence = torch.exp(-(uncertainty.detach() if detach else uncertainty))
    if mode == "pixel":
        return segmentation_loss_from_log_probs(log_probs, pseudo_label.detach(), confidence, dice_form)
    return pseudo_label_loss_from_log_probs(log_probs, pseudo_label, dice_form=dice_form) * confidence.mean()


def _mean(values: Sequence[Tensor]) -> Tensor:
    return torch.stack(list(values)).mean()


@register_method("uaps")
class UAPS(Method):
    option_specs = {
        "aux_decoders": integer(3, maximum=len(PERTURBATIONS)),
        "lambda1": number(0.1),
        "lambda2": number(0.1),
        "lambda2_rampup": flag(True),
        "losses": subset(["ups", "un"], LOSS_NAMES),
        "mixing": choice("dynamic", ("dynamic", "average")),
        "uncertainty_weighting": choice("pixel", ("pixel", "batch")),
        "detach_confidence": flag(True),
        "dice_form": choice("ssl4mis", DICE_FORMS),
        **PERTURBATION_OPTIONS,
        "data_parallel": DATA_PARALLEL,
        "eval_mode": choice("main", ("main", ENSEMBLE)),
    }
    variants_include_default = True  # the main decoder and the ensemble, whatever ``eval_mode``

    def __init__(self, options, in_channels: int, num_classes: int) -> None:
        super().__init__(options, in_channels, num_classes)
        self.perturbation_names = PERTURBATIONS[: self.options["aux_decoders"]]
        backbone = build_backbone(self.options["backbone"], in_channels, num_classes)
        perturbations = build_perturbations(self.perturbation_names, perturbation_settings(self.options))
        self.net = MultiDecoderNet(backbone, perturbations)
        self.losses = frozenset(self.options["losses"])
        self.dice_form = self.options["dice_form"]

    @classmethod
    def authors_options(cls, dataset: str) -> dict[str, Any]:
        return {**AUTHORS_OPTIONS, **per_dataset(AUTHORS_PER_DATASET, dataset)}

    @property
    def num_decoders(self) -> int:
        return len(self.perturbation_names) + 1

    def mixing_weights(self, device: torch.device | str = "cpu") -> Tensor:
        """This step's decoder weights (D+1,) on ``device``, summing to 1; a fresh Dirichlet draw when dynamic.

        Drawn on ``device`` from its global generator, so a GPU step needs no host copy (which
        would wait for the GPU); without argument validation, whose checks read values back.
        """
        if self.options["mixing"] == "average":
            return torch.full((self.num_decoders,), 1.0 / self.num_decoders, device=device)
        return Dirichlet(torch.ones(self.num_decoders, device=device), validate_args=False).sample()

    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        loss_seg = _mean([segmentation_loss(logits, labeled.masks, dice_form=self.dice_form) for logits in self._decoders(labeled.images)])
        zero = torch.zeros((), device=loss_seg.device)
        parts = {"loss_ps": zero, "loss_ups": zero, "loss_un": zero}
        mean_confidence = torch.ones((), device=loss_seg.device)
        if self.num_decoders > 1 and self.losses:
            parts, mean_confidence = self._unlabeled_losses(unlabeled, zero)
        ramp = self.rampup(step, total_steps)
        lambda1 = self.options["lambda1"] * ramp
        lambda2 = self.options["lambda2"] * (ramp if self.options["lambda2_rampup"] else 1.0)
        return step_losses(
            loss_seg, parts["loss_ps"] + parts["loss_ups"], lambda1, lambda2 * parts["loss_un"],
            **parts, mean_exp_neg_u=mean_confidence, lambda2=loss_seg.new_tensor(lambda2),
        )

    def _unlabeled_losses(self, images: Tensor, zero: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        log_probs = [log_probabilities(logits) for logits in self._decoders(images)]  # one float32 softmax per decoder
        probs = [member.exp() for member in log_probs]
        uncertainty = decoder_uncertainty(probs)
        parts = {"loss_ps": zero, "loss_ups": zero, "loss_un": zero}
        if self.losses & {"ps", "ups"}:
            pseudo_label = mixed_pseudo_label(probs, self.mixing_weights(images.device))
            if "ps" in self.losses:
                parts["loss_ps"] = _mean(
                    [pseudo_label_loss_from_log_probs(member, pseudo_label, dice_form=self.dice_form) for member in log_probs]
                )
            if "ups" in self.losses:
                parts["loss_ups"] = _mean([self._weighted_loss(member, pseudo_label, u) for member, u in zip(log_probs, uncertainty)])
        if "un" in self.losses:
            parts["loss_un"] = _mean([u.mean() for u in uncertainty])
        mean_confidence = _mean([torch.exp(-u.detach()).mean() for u in uncertainty])
        return parts, mean_confidence

    def _decoders(self, images: Tensor) -> list[Tensor]:
        """Every decoder's logits in training, the pass split as nn.DataParallel over ``data_parallel`` devices splits it."""
        return parallel_forward(self.net, self.net, images, self.options["data_parallel"])

    def _weighted_loss(self, log_probs: Tensor, pseudo_label: Tensor, uncertainty: Tensor) -> Tensor:
        mode, detach = self.options["uncertainty_weighting"], self.options["detach_confidence"]
        return uncertainty_weighted_loss(log_probs, pseudo_label, uncertainty, mode, detach, self.dice_form)

    def prediction_names(self) -> tuple[str, ...]:
        return ("main", ENSEMBLE)

    def named_predictions(self, images: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        """The main decoder's logits (alone: one encoder and one decoder pass) and the ensemble's
        (every decoder on one encoder pass)."""
        if ENSEMBLE not in names:
            return {name: self.net(images, with_aux=False)[0] for name in names}
        outputs = self.net(images)
        predictions = {"main": outputs[0], ENSEMBLE: ensemble_logits(outputs)}
        return {name: predictions[name] for name in names}

    def predict_variant(self, images: Tensor, name: str) -> Tensor:
        return self.named_predictions(images, (name,))[name]

    def member_outputs(self, images: Tensor) -> dict[str, Tensor]:
        names = ["main", *(f"aux_{name}" for name in self.perturbation_names)]
        return dict(zip(names, self.net(images)))
