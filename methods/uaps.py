"""UAPS: uncertainty-aware, dynamically-mixed pseudo-labels from one encoder and several decoders.

Sime, Wang, Zeng, Peng, "Uncertainty-aware and dynamically-mixed pseudo-labels for
semi-supervised defect segmentation", Computers in Industry 152, 2023; released code
github.com/djene-mengistu/UAPS (``UAPS_train.py``, ``utilities/UAPS_unet.py``).

A shared encoder feeds a main decoder (clean features) and D auxiliary decoders, each on features
under one perturbation (``methods.perturbations.DEFAULT_ORDER[:D]``: feature noise, channel
dropout, feature dropout, feature cutout). Per step, with p_d the softmax of decoder d on the
unlabelled batch and p̄ their mean:

* ℓ_seg: mean over the D+1 decoders of 0.5 (CE + Dice) on the labelled batch;
* uncertainty u_d = Σ_c p̄ (log p̄ − log p_d) per pixel (KL(p̄ ‖ p_d)); every p_d is the exp of
  one float32 log-softmax that the pseudo-label losses reuse;
* pseudo-label argmax Σ_d w_d p_d (no gradient), w ~ Dirichlet(1, …, 1) drawn every step from
  the global RNG of the images' device (``mixing: dynamic``; ``average``: w_d = 1/(D+1));
* ℓ_ups: mean over decoders of the pseudo-label loss 0.5 (CE + Dice) weighted by exp(−u_d);
  ℓ_ps: the same without weighting; ℓ_un: mean over decoders of mean(u_d);
* total ℓ_seg + λ1(t) (ℓ_ps + ℓ_ups) + λ2(t) ℓ_un, λ(t) = λ_max · sigmoid ramp-up.

Options (defaults and sources):

* ``aux_decoders`` 3 (paper and code: three auxiliary decoders); 0..4, the 4th (feature cutout)
  is our addition (see ``methods.perturbations``).
* ``lambda1`` 0.1, ``lambda2`` 0.1 (paper; code ``--consistency1/2 0.1``), ramped up over
  ``rampup_fraction`` 0.34 of the run (code: 200 "epochs" of 80 iterations out of ~47,000).
* ``losses`` ["ups", "un"] (paper's full method): any combination of "ps", "ups", "un". A loss
  switched off is still returned, as zero. With both "ps" and "ups" on, both are added under λ1.
* ``mixing`` "dynamic" (paper and code).
* ``uncertainty_weighting`` "pixel" (paper): exp(−u_d) weights every pixel inside the
  pseudo-label loss (``pseudo_label_loss_from_log_probs(..., pixel_weight=...)``: CE is the weighted mean over
  pixels, normalised by the weights' sum; Dice uses weighted probabilities and targets), so
  uncertain pixels count less than confident ones and a pixel of weight 0 is ignored. "batch"
  (released code): the unweighted batch-mean loss times mean(exp(−u_d)), one scale per batch and
  decoder: an uncertain batch counts less as a whole, but pixels are not re-weighted.
* ``eval_mode`` "main" (released test notebook evaluates the main decoder); "ensemble" predicts
  log of the mean softmax of all D+1 decoders (argmax = argmax of the mean probabilities). Both
  are always evaluated through ``predict_variants`` with one encoder pass.

Deviations from the released code:

* exp(−u_d) is detached: u is minimised by ℓ_un only. The released code lets the gradient of
  ℓ_ups flow into exp(−u_d), which pushes u up (against ℓ_un).
* Perturbations act in training mode only (the released decoders perturb at test time too, so
  its auxiliary decoders are stochastic at evaluation).
* Dice is the shared batch-wise soft Dice over all classes (``methods.losses``).
* Labelled and unlabelled batches go through separate forward passes, as in the released code
  (so BatchNorm normalises each batch with its own statistics, as there).
* With D = 0 (one decoder) there is no unlabelled loss at all (u = 0 and the pseudo-label is the
  decoder's own argmax): the method is then exactly the supervised baseline.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import Dirichlet

from .base import LabeledBatch, Method, check_choice, check_number, check_subset
from .ensemble import ensemble_logits
from .losses import hard_labels, kl_to_mean, log_probabilities, pseudo_label_loss_from_log_probs, segmentation_loss
from .networks import build_backbone
from .perturbations import DEFAULT_ORDER, MultiDecoderNet, build_perturbations
from .registry import register_method

LOSS_NAMES = ("ps", "ups", "un")
CHOICES = {
    "mixing": ("dynamic", "average"),
    "uncertainty_weighting": ("pixel", "batch"),
    "eval_mode": ("main", "ensemble"),
}


def decoder_uncertainty(probs: Sequence[Tensor]) -> list[Tensor]:
    """u_d = KL(p̄ ‖ p_d) per pixel for each decoder's softmax p_d, p̄ their mean; (B, H, W) each."""
    return kl_to_mean(probs, torch.stack(list(probs)).mean(0))


def mixed_pseudo_label(probs: Sequence[Tensor], weights: Tensor) -> Tensor:
    """argmax over classes of Σ_d w_d p_d, computed from detached probabilities: (B, H, W) int64."""
    mixture = sum(w * p.detach() for w, p in zip(weights, probs))
    return hard_labels(mixture)


def uncertainty_weighted_loss(log_probs: Tensor, pseudo_label: Tensor, uncertainty: Tensor, mode: str) -> Tensor:
    """Pseudo-label loss of ``log_probabilities(logits)`` weighted by exp(−u) (detached): per pixel (``pixel``) or per batch (``batch``)."""
    confidence = torch.exp(-uncertainty.detach())
    if mode == "pixel":
        return pseudo_label_loss_from_log_probs(log_probs, pseudo_label, pixel_weight=confidence)
    return pseudo_label_loss_from_log_probs(log_probs, pseudo_label) * confidence.mean()


def _mean(values: Sequence[Tensor]) -> Tensor:
    return torch.stack(list(values)).mean()


def _validate(options: dict) -> None:
    check_number("uaps", "aux_decoders", options["aux_decoders"], maximum=len(DEFAULT_ORDER), integer=True)
    check_subset("uaps", "losses", options["losses"], LOSS_NAMES)
    for key in ("lambda1", "lambda2"):
        check_number("uaps", key, options[key])
    for key, allowed in CHOICES.items():
        check_choice("uaps", key, options[key], allowed)


@register_method("uaps")
class UAPS(Method):
    defaults = {
        "aux_decoders": 3,
        "lambda1": 0.1,
        "lambda2": 0.1,
        "losses": ["ups", "un"],
        "mixing": "dynamic",
        "uncertainty_weighting": "pixel",
        "eval_mode": "main",
    }

    def __init__(self, options, in_channels: int, num_classes: int) -> None:
        super().__init__(options, in_channels, num_classes)
        _validate(self.options)
        self.perturbation_names = DEFAULT_ORDER[: self.options["aux_decoders"]]
        backbone = build_backbone(self.options["backbone"], in_channels, num_classes)
        self.net = MultiDecoderNet(backbone, build_perturbations(self.perturbation_names))
        self.losses = frozenset(self.options["losses"])

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
        loss_seg = _mean([segmentation_loss(logits, labeled.masks) for logits in self.net(labeled.images)])
        zero = torch.zeros((), device=loss_seg.device)
        parts = {"loss_ps": zero, "loss_ups": zero, "loss_un": zero}
        mean_confidence = torch.ones((), device=loss_seg.device)
        if self.num_decoders > 1 and self.losses:
            parts, mean_confidence = self._unlabeled_losses(unlabeled, zero)
        ramp = self.rampup(step, total_steps)
        lambda1, lambda2 = self.options["lambda1"] * ramp, self.options["lambda2"] * ramp
        loss = loss_seg + lambda1 * (parts["loss_ps"] + parts["loss_ups"]) + lambda2 * parts["loss_un"]
        logs = {"loss_seg": loss_seg, **parts, "mean_exp_neg_u": mean_confidence}
        return {
            "loss": loss,
            **{name: value.detach() for name, value in logs.items()},
            "lambda1": torch.tensor(lambda1),
            "lambda2": torch.tensor(lambda2),
        }

    def _unlabeled_losses(self, images: Tensor, zero: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        log_probs = [log_probabilities(logits) for logits in self.net(images)]  # one float32 softmax per decoder
        probs = [member.exp() for member in log_probs]
        uncertainty = decoder_uncertainty(probs)
        parts = {"loss_ps": zero, "loss_ups": zero, "loss_un": zero}
        if self.losses & {"ps", "ups"}:
            pseudo_label = mixed_pseudo_label(probs, self.mixing_weights(images.device))
            if "ps" in self.losses:
                parts["loss_ps"] = _mean([pseudo_label_loss_from_log_probs(member, pseudo_label) for member in log_probs])
            if "ups" in self.losses:
                mode = self.options["uncertainty_weighting"]
                parts["loss_ups"] = _mean(
                    [uncertainty_weighted_loss(member, pseudo_label, u, mode) for member, u in zip(log_probs, uncertainty)]
                )
        if "un" in self.losses:
            parts["loss_un"] = _mean([u.mean() for u in uncertainty])
        mean_confidence = _mean([torch.exp(-u.detach()).mean() for u in uncertainty])
        return parts, mean_confidence

    def predict(self, images: Tensor) -> Tensor:
        if self.options["eval_mode"] == "main":
            return self.net(images, with_aux=False)[0]
        return ensemble_logits(self.net(images))

    def predict_variants(self, images: Tensor) -> dict[str, Tensor]:
        outputs = self.net(images)  # one encoder pass, every decoder
        return {"main": outputs[0], "ensemble": ensemble_logits(outputs)}

    def predict_variant(self, images: Tensor, name: str) -> Tensor:
        if name == "main":
            return self.net(images, with_aux=False)[0]
        return super().predict_variant(images, name)

    def member_outputs(self, images: Tensor) -> dict[str, Tensor]:
        names = ["main", *(f"aux_{name}" for name in self.perturbation_names)]
        return dict(zip(names, self.net(images)))
