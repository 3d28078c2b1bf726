"""simEps: parallel U-Nets with ensemble-based cross pseudo-labels and similarity-map consistency.

Sime, Wang, Zeng, Wang, Peng, "Semi-supervised defect segmentation with pairwise similarity map
consistency and ensemble-based cross pseudo labels", IEEE Transactions on Industrial Informatics,
2022; released code github.com/djene-mengistu/simEps (``simEps_train.py``, ``simEps_model.py``).

N networks of the same architecture, initialised independently (the released code builds three
identical U-Nets with PyTorch's default initialisation, so they differ by their random draws):

* ℓ_sup: Σ over networks of 0.5 (CE + Dice) on the labelled batch;
* ℓ_cps: network i learns, with 0.5 (CE + Dice), from argmax of the element-wise max of the
  other networks' softmax outputs (detached), Σ over networks, on the unlabelled batch, and
  (``cross_on_labeled``) separately on the labelled batch as ℓ_cps_labeled;
* ℓ_sim: for every pair of networks and every compared tensor, MSE between their B x B
  similarity maps (``methods.similarity``), each side pulled towards the other, detached; Σ over
  pairs, on the labelled and on the unlabelled batch;
* total ℓ_sup + w_cps(t) (ℓ_cps + ℓ_cps_labeled) + w_sim(t) ℓ_sim.

Options (defaults and sources: the released ``simEps_train.py`` except ``similarity_rampup``;
the paper's text was not available to us):

* ``networks`` 3 (paper and code); at least 2.
* ``cps_weight`` 0.1 (``--consistency 0.1``) with the sigmoid ramp-up over ``rampup_fraction``
  0.64 of the run (code: 200 "epochs" of 150 iterations = 30,000 of its 799 x 59 = 47,141
  iterations). This overrides the common 0.34, which is the UAPS code's ramp.
* ``similarity_weight`` 50 (``similarity_loss_coeff = 50``) with ``similarity_rampup`` true:
  ramped up like ``cps_weight``. The released code keeps it constant (``similarity_rampup:
  false``); from step 0, 50 x ℓ_sim dominates the start of short runs (smoke profile, 40
  iterations: test mIoU 0.001 constant, 0.029 ramped, 0.058 without ℓ_sim; supervised 0.054).
* ``similarity_stages`` ["output"]: the code compares the networks' output logits only; the
  paper also describes encoder and decoder stages, available here as "encoder" (bottleneck
  features) and "decoder" (every decoder block's output), as in the code's commented-out
  variants; these need the paper U-Net backbone (``unet`` / ``unet-tconv``).
* ``cross_on_labeled`` true (the code adds the cross pseudo-label loss on labelled images too).
* ``eval_mode`` "ensemble" (the released test notebook evaluates the average of the three
  networks): log of the mean softmax, whose argmax is that of the mean probabilities (the
  notebook averages logits instead); "network0" uses the first network alone. Every network and
  the ensemble are also evaluated through ``predict_variants``.

Deviations: the similarity weight ramps up by default (above); one Adam over all networks
(equivalent to the code's one Adam per network); Dice is the shared batch-wise soft Dice over all
classes (``methods.losses``). As in the code, labelled and unlabelled batches go through separate
forward passes of each network (BatchNorm statistics per batch).
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import torch
from torch import Tensor, nn

from .base import ConfigError, LabeledBatch, Method, check_choice, check_flag, check_number, check_subset
from .ensemble import ensemble_logits
from .losses import hard_labels, pseudo_label_loss, segmentation_loss
from .networks import SegmentationNet, UNetDecoder, build_network
from .registry import register_method
from .similarity import similarity_consistency

STAGES = ("encoder", "decoder", "output")
EVAL_MODES = ("ensemble", "network0")


def ensemble_cross_pseudo_labels(probs: Sequence[Tensor]) -> list[Tensor]:
    """For each network i: argmax of the element-wise max over the other networks' (detached) softmax."""
    labels = []
    for i in range(len(probs)):
        others = torch.stack([p.detach() for j, p in enumerate(probs) if j != i])
        labels.append(hard_labels(others.amax(0)))
    return labels


def _validate(options: dict) -> None:
    check_number("simeps", "networks", options["networks"], minimum=2, integer=True)
    for key in ("cps_weight", "similarity_weight"):
        check_number("simeps", key, options[key])
    for key in ("similarity_rampup", "cross_on_labeled"):
        check_flag("simeps", key, options[key])
    check_subset("simeps", "similarity_stages", options["similarity_stages"], STAGES, non_empty=True)
    check_choice("simeps", "eval_mode", options["eval_mode"], EVAL_MODES)


@register_method("simeps")
class SimEps(Method):
    defaults = {
        "networks": 3,
        "cps_weight": 0.1,
        "similarity_weight": 50.0,
        "similarity_rampup": True,
        "similarity_stages": ["output"],
        "cross_on_labeled": True,
        "eval_mode": "ensemble",
        "rampup_fraction": 0.64,
    }

    def __init__(self, options, in_channels: int, num_classes: int) -> None:
        super().__init__(options, in_channels, num_classes)
        _validate(self.options)
        self.stages = frozenset(self.options["similarity_stages"])
        self.nets = nn.ModuleList(
            build_network(self.options["backbone"], in_channels, num_classes) for _ in range(self.options["networks"])
        )
        if self.stages - {"output"} and not isinstance(self.nets[0].decoder, UNetDecoder):
            raise ConfigError(
                f"simeps option 'similarity_stages' {sorted(self.stages)} needs the 'unet' or 'unet-tconv' backbone, "
                f"got backbone {self.options['backbone']!r}"
            )

    def _forward(self, net: SegmentationNet, images: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits and the tensors the similarity loss compares (encoder, decoder, output order)."""
        features = net.encoder(images)
        if self.stages == {"output"}:
            logits = net.decoder(features)
            return logits, [logits]
        decoded = net.decoder.stages(features)
        logits = net.decoder.head(decoded[-1])
        compared = [features[-1]] if "encoder" in self.stages else []
        compared += decoded if "decoder" in self.stages else []
        compared += [logits] if "output" in self.stages else []
        return logits, compared

    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        lab = [self._forward(net, labeled.images) for net in self.nets]
        unl = [self._forward(net, unlabeled) for net in self.nets]
        lab_logits, unl_logits = [logits for logits, _ in lab], [logits for logits, _ in unl]
        loss_sup = torch.stack([segmentation_loss(logits, labeled.masks) for logits in lab_logits]).sum()
        zero = torch.zeros((), device=loss_sup.device)
        loss_cps = _cross_pseudo_loss(unl_logits)
        loss_cps_labeled = _cross_pseudo_loss(lab_logits) if self.options["cross_on_labeled"] else zero
        loss_sim = _similarity_loss([c for _, c in lab]) + _similarity_loss([c for _, c in unl])
        ramp = self.rampup(step, total_steps)
        cps_weight = self.options["cps_weight"] * ramp
        similarity_weight = self.options["similarity_weight"] * (ramp if self.options["similarity_rampup"] else 1.0)
        loss = loss_sup + cps_weight * (loss_cps + loss_cps_labeled) + similarity_weight * loss_sim
        logs = {"loss_sup": loss_sup, "loss_cps": loss_cps, "loss_cps_labeled": loss_cps_labeled, "loss_sim": loss_sim}
        return {
            "loss": loss,
            **{name: value.detach() for name, value in logs.items()},
            "cps_weight": torch.tensor(cps_weight),
            "similarity_weight": torch.tensor(similarity_weight),
        }

    def predict(self, images: Tensor) -> Tensor:
        if self.options["eval_mode"] == "network0":
            return self.nets[0](images)
        return ensemble_logits([net(images) for net in self.nets])

    def predict_variants(self, images: Tensor) -> dict[str, Tensor]:
        members = self.member_outputs(images)
        return {"ensemble": ensemble_logits(list(members.values())), **members}

    def member_outputs(self, images: Tensor) -> dict[str, Tensor]:
        return {f"network{i}": net(images) for i, net in enumerate(self.nets)}


def _cross_pseudo_loss(logits: Sequence[Tensor]) -> Tensor:
    labels = ensemble_cross_pseudo_labels([member.float().softmax(1) for member in logits])
    return torch.stack([pseudo_label_loss(member, label) for member, label in zip(logits, labels)]).sum()


def _similarity_loss(compared: Sequence[Sequence[Tensor]]) -> Tensor:
    """Σ over network pairs and compared tensors of the symmetric similarity-map consistency."""
    pairs = combinations(range(len(compared)), 2)
    return torch.stack([similarity_consistency(a, b) for i, j in pairs for a, b in zip(compared[i], compared[j])]).sum()
