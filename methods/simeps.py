"""simEps: parallel U-Nets with ensemble-based cross pseudo-labels and similarity-map consistency.

Sime, Wang, Zeng, Wang, Peng, "Semi-supervised defect segmentation with pairwise similarity map
consistency and ensemble-based cross pseudo labels", IEEE Transactions on Industrial Informatics,
2022; released code github.com/djene-mengistu/simEps (``simEps_train.py``, ``simEps_model.py``;
per-dataset scripts in ``MTiles-Dataset-codes/`` and ``DAGM-Dataset-codes/``). Line-by-line
comparison with that code, per recipe: docs/fidelity.md.

N networks of the same architecture, initialised independently (the released code builds three
identical U-Nets with PyTorch's default initialisation, so they differ by their random draws):

* ℓ_sup: Σ over networks of 0.5 (CE + Dice) on the labelled batch;
* ℓ_cps: network i learns, with 0.5 (CE + Dice), from the argmax of the element-wise max (or
  mean, ``pseudo_label_ensemble``) of the other networks' softmax outputs (detached), Σ over
  networks, on the unlabelled batch, and (``cross_on_labeled``) separately on the labelled
  batch as ℓ_cps_labeled;
* ℓ_sim: for every pair of networks and every compared tensor, MSE between their B x B
  similarity maps (``methods.similarity``), each side pulled towards the other, detached; Σ over
  pairs, on the labelled and on the unlabelled batch;
* total ℓ_sup + w_cps(t) (ℓ_cps + ℓ_cps_labeled) + w_sim(t) ℓ_sim.

Logged: ℓ_sup as ``loss_sup``, ℓ_cps + ℓ_cps_labeled as ``loss_unsup`` and w_cps(t) as
``unsup_weight`` (the standard keys of ``methods.base``), and ``loss_cps``, ``loss_cps_labeled``,
``loss_sim``, ``similarity_weight``.

Options (defaults = recipe ``unified``: the released ``simEps_train.py`` except
``similarity_rampup`` and ``dice_form``; ``authors_options`` gives the released code's values per
dataset; taken from the released code, not the paper's text):

* ``networks`` 3 (paper and code); at least 2.
* ``cps_weight`` 0.1 (``--consistency 0.1``) with the sigmoid ramp-up over ``rampup_fraction``
  0.64 of the run (code: 200 "epochs" of 150 iterations = 30,000 of its 799 x 59 = 47,141
  iterations). This overrides the common 0.34, which is the UAPS code's ramp.
* ``similarity_weight`` 50 (``similarity_loss_coeff = 50``; 200 in the MTiles and DAGM scripts)
  with ``similarity_rampup`` true: ramped up like ``cps_weight``. The released code keeps it
  constant (``similarity_rampup: false``); from step 0, 50 x ℓ_sim dominates the start of short
  runs (40-iteration runs at the smoke profile's size: test mIoU 0.001 constant, 0.029 ramped, 0.058 without
  ℓ_sim; supervised 0.054).
* ``similarity_stages`` ["output"]: the NEU-Seg and MTiles scripts compare the networks' output
  logits only. "encoder" compares the bottleneck features and "decoder_last" the last decoder
  block's output (the features before the head), what the DAGM script compares (and the NEU-Seg
  script's commented-out variant); "decoder" compares every decoder block's output. Stages other
  than "output" need the paper U-Net backbone (``unet`` / ``unet-tconv``).
* ``pseudo_label_ensemble`` "max" (NEU-Seg and DAGM scripts: ``torch.max`` of the others'
  softmax); "mean" averages them (the MTiles script's soft voting).
* ``cross_on_labeled`` true (the code adds the cross pseudo-label loss on labelled images too).
* ``dice_form`` "ssl4mis"; "uaps" is the released code's Dice (``methods.losses``).
* ``data_parallel`` 1: each network's training passes run whole; 2 (released code: each network in
  ``nn.DataParallel`` over two GPUs) splits them into halves, each normalised by BatchNorm on its
  own, with running statistics from the first half (``methods.data_parallel``).
* ``eval_mode`` "ensemble" (the released test notebook evaluates the average of the three
  networks): log of the mean softmax, whose argmax is that of the mean probabilities (the
  notebook averages logits instead); "network0" uses the first network alone. Every network and
  the ensemble are also evaluated through ``predict_variants``.

Remaining differences from the released code (docs/fidelity.md): one Adam over all networks
(equivalent to the code's one Adam per network, but the code's three ReduceLROnPlateau
schedulers and its per-network best epochs are the runner's business); the ramp-up is continuous
where the code's steps every 150 (50, 60) iterations. As in the code, labelled and unlabelled
batches go through separate forward passes of each network (BatchNorm statistics per batch, or
per half with ``data_parallel`` 2).
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from itertools import combinations
from typing import Any

import torch
from torch import Tensor, nn

from defectseg.options import ConfigError, choice, flag, integer, number, subset

from .base import LabeledBatch, Method, step_losses
from .data_parallel import DATA_PARALLEL, parallel_forward
from .ensemble import ENSEMBLE, member_predictions
from .losses import DICE_FORMS, hard_labels, pseudo_label_loss, segmentation_loss
from .networks import SegmentationNet, UNetDecoder, build_network
from .registry import register_method
from .released_loops import SIMEPS_LOOPS, per_dataset
from .similarity import similarity_consistency

STAGES = ("encoder", "decoder", "decoder_last", "output")
# The released code (docs/fidelity.md): simEps_train.py (NEU-Seg, also used for datasets without a
# script), MTiles-Dataset-codes/simEps_train.py, DAGM-Dataset-codes/simEps_model_train.py.
# Ramp-up: sigmoid_rampup(iter_num // q, 200) over the script's run (methods.released_loops).
AUTHORS_OPTIONS: dict[str, Any] = {
    "dice_form": "uaps",  # simEps_train.py:22, 235-237, 283-285, 305-307
    "similarity_rampup": False,  # simEps_train.py:314: similarity_loss_coeff * inp_sim_loss
    # nn.DataParallel(model_i, device_ids=[0,1]) for each network: simEps_model.py:22-24,
    # MTiles-Dataset-codes/simEps_model.py:18-20, DAGM-Dataset-codes/simEps_model.py:21-23
    "data_parallel": 2,
}
AUTHORS_PER_DATASET: dict[str, dict[str, Any]] = {
    "neu": {"rampup_fraction": SIMEPS_LOOPS["neu"].rampup_fraction},
    "mtiles": {  # MTiles-Dataset-codes/simEps_train.py:269-271, 290-292, 309
        "rampup_fraction": SIMEPS_LOOPS["mtiles"].rampup_fraction,
        "similarity_weight": 200.0,
        "pseudo_label_ensemble": "mean",
    },
    "dagm": {  # DAGM-Dataset-codes/simEps_model_train.py:284-308, 357
        "rampup_fraction": SIMEPS_LOOPS["dagm"].rampup_fraction,
        "similarity_weight": 200.0,
        "similarity_stages": ["encoder", "decoder_last"],
    },
}


def ensemble_cross_pseudo_labels(probs: Sequence[Tensor], reduction: str = "max") -> list[Tensor]:
    """For each network i: argmax of the element-wise max (or ``mean``) over the other networks' (detached) softmax."""
    labels = []
    for i in range(len(probs)):
        others = torch.stack([p.detach() for j, p in enumerate(probs) if j != i])
        labels.append(hard_labels(others.amax(0) if reduction == "max" else others.mean(0)))
    return labels


@register_method("simeps")
class SimEps(Method):
    option_specs = {
        "networks": integer(3, minimum=2),
        "cps_weight": number(0.1),
        "similarity_weight": number(50.0),
        "similarity_rampup": flag(True),
        "similarity_stages": subset(["output"], STAGES, non_empty=True),
        "pseudo_label_ensemble": choice("max", ("max", "mean")),
        "cross_on_labeled": flag(True),
        "dice_form": choice("ssl4mis", DICE_FORMS),
        "data_parallel": DATA_PARALLEL,
        "eval_mode": choice(ENSEMBLE, (ENSEMBLE, "network0")),
        "rampup_fraction": number(0.64),
    }
    variants_include_default = True  # every network and the ensemble, whatever ``eval_mode``

    def __init__(self, options, in_channels: int, num_classes: int) -> None:
        super().__init__(options, in_channels, num_classes)
        self.stages = frozenset(self.options["similarity_stages"])
        self.nets = nn.ModuleList(
            build_network(self.options["backbone"], in_channels, num_classes) for _ in range(self.options["networks"])
        )
        if self.stages - {"output"} and not isinstance(self.nets[0].decoder, UNetDecoder):
            raise ConfigError(
                f"simeps option 'similarity_stages' {sorted(self.stages)} needs the 'unet' or 'unet-tconv' backbone, "
                f"got backbone {self.options['backbone']!r}"
            )

    @classmethod
    def authors_options(cls, dataset: str) -> dict[str, Any]:
        return {**AUTHORS_OPTIONS, **per_dataset(AUTHORS_PER_DATASET, dataset)}

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
        compared += [decoded[-1]] if "decoder_last" in self.stages else []
        compared += [logits] if "output" in self.stages else []
        return logits, compared

    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        lab, unl = self._passes(labeled.images), self._passes(unlabeled)
        lab_logits, unl_logits = [logits for logits, _ in lab], [logits for logits, _ in unl]
        dice_form = self.options["dice_form"]
        loss_sup = torch.stack([segmentation_loss(logits, labeled.masks, dice_form=dice_form) for logits in lab_logits]).sum()
        zero = torch.zeros((), device=loss_sup.device)
        loss_cps = self._cross_pseudo_loss(unl_logits)
        loss_cps_labeled = self._cross_pseudo_loss(lab_logits) if self.options["cross_on_labeled"] else zero
        loss_sim = _similarity_loss([c for _, c in lab]) + _similarity_loss([c for _, c in unl])
        ramp = self.rampup(step, total_steps)
        cps_weight = self.options["cps_weight"] * ramp
        similarity_weight = self.options["similarity_weight"] * (ramp if self.options["similarity_rampup"] else 1.0)
        return step_losses(
            loss_sup, loss_cps + loss_cps_labeled, cps_weight, similarity_weight * loss_sim,
            loss_cps=loss_cps, loss_cps_labeled=loss_cps_labeled, loss_sim=loss_sim,
            similarity_weight=loss_sup.new_tensor(similarity_weight),
        )

    def _passes(self, images: Tensor) -> list[tuple[Tensor, list[Tensor]]]:
        """``_forward`` of every network in training, each pass split as nn.DataParallel over ``data_parallel`` devices splits it."""
        devices = self.options["data_parallel"]
        return [parallel_forward(partial(self._forward, net), net, images, devices) for net in self.nets]

    def prediction_names(self) -> tuple[str, ...]:
        return (ENSEMBLE, *self._networks())

    def named_predictions(self, images: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        return member_predictions(self._networks(), images, names)

    def member_outputs(self, images: Tensor) -> dict[str, Tensor]:
        return self.named_predictions(images, tuple(self._networks()))

    def _networks(self) -> dict[str, nn.Module]:
        return {f"network{i}": net for i, net in enumerate(self.nets)}

    def _cross_pseudo_loss(self, logits: Sequence[Tensor]) -> Tensor:
        probs = [member.float().softmax(1) for member in logits]
        labels = ensemble_cross_pseudo_labels(probs, self.options["pseudo_label_ensemble"])
        dice_form = self.options["dice_form"]
        return torch.stack([pseudo_label_loss(member, label, dice_form=dice_form) for member, label in zip(logits, labels)]).sum()


def _similarity_loss(compared: Sequence[Sequence[Tensor]]) -> Tensor:
    """Σ over network pairs and compared tensors of the symmetric similarity-map consistency."""
    pairs = combinations(range(len(compared)), 2)
    return torch.stack([similarity_consistency(a, b) for i, j in pairs for a, b in zip(compared[i], compared[j])]).sum()
