"""The one interface every method implements; the runner owns everything else.

A method owns its networks and losses. The runner gives it, at every step, a labelled batch
(normalised images and class-id masks), an unlabelled batch of images, the step counter and the
total number of steps; the method returns its named losses, of which ``"loss"`` is optimised and
every other entry is logged. After the optimiser step the runner calls ``on_step_end`` (for EMA
teachers and the like). For evaluation the runner calls ``predict``, which returns logits.

A method declares three things once and the base class derives the rest:

* its options, as ``option_specs`` (``Option``: default value and accepted values), from which
  ``all_defaults`` is derived and against which ``__init__`` checks the resolved options;
* its eval-mode predictions, as ``named_predictions`` over ``prediction_names``, from which
  ``predict`` (the ``eval_mode`` option's entry, else the first), ``predict_variants`` and
  ``predict_variant`` are derived;
* its step losses, with the standard log keys (``LOSS_SUP``, ``LOSS_UNSUP``, ``UNSUP_WEIGHT``;
  ``step_losses`` builds them) beside its own parts.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

from torch import Tensor, nn

from defectseg.options import Option, defaults, number, resolve_options, text

from .ramps import sigmoid_rampup

# Standard log keys of ``training_step``: every method returns them (method-specific parts keep
# their own names beside them), so that logs of different methods compare column by column.
LOSS = "loss"  # the total, the one the runner optimises
LOSS_SUP = "loss_sup"  # the supervised loss on the labelled batch (summed over networks)
LOSS_UNSUP = "loss_unsup"  # the unsupervised loss (consistency, pseudo-labels), before weighting
UNSUP_WEIGHT = "unsup_weight"  # its weight at this step: loss = loss_sup + unsup_weight * loss_unsup (+ extra terms)
STANDARD_LOG_KEYS = (LOSS, LOSS_SUP, LOSS_UNSUP, UNSUP_WEIGHT)

# Name of the one prediction of a method without variants (``prediction_names``).
PREDICTION = "prediction"


# Options every method accepts, on top of its own ``option_specs``.
COMMON_OPTIONS: dict[str, Option] = {
    # network: "unet" (paper U-Net), "unet-tconv", or "smp:<Arch>:<encoder>" (checked by build_network)
    "backbone": text("unet"),
    # length of every sigmoid ramp-up as a fraction of the run's iterations; 0.34 is the UAPS
    # code's 200 "epochs" x 80 iterations out of its ~47,000 iterations
    "rampup_fraction": number(0.34),
}


class LabeledBatch(NamedTuple):
    images: Tensor  # (B, C, H, W) float, normalised
    masks: Tensor  # (B, H, W) int64 class ids


def step_losses(
    loss_sup: Tensor, loss_unsup: Tensor, unsup_weight: float, extra: Tensor | None = None, **parts: Tensor
) -> dict[str, Tensor]:
    """A step's output: ``loss = loss_sup + unsup_weight * loss_unsup (+ extra)``, the standard log keys and ``parts``.

    ``extra``: an already weighted term of a second unsupervised loss (simEps, UAPS).
    """
    loss = loss_sup + unsup_weight * loss_unsup
    if extra is not None:
        loss = loss + extra
    return {LOSS: loss, LOSS_SUP: loss_sup, LOSS_UNSUP: loss_unsup, UNSUP_WEIGHT: loss_sup.new_tensor(unsup_weight), **parts}


class Method(nn.Module, ABC):
    """Base class of all semi-supervised segmentation methods.

    Subclasses set ``option_specs`` (their own options), implement ``training_step`` and
    ``named_predictions`` (over ``prediction_names``, default just ``"prediction"``).
    ``self.options`` holds the resolved, checked options.
    """

    name: ClassVar[str] = ""
    option_specs: ClassVar[dict[str, Option]] = {}
    # whether ``predict_variants`` also reports the default prediction, under its own name
    variants_include_default: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, Any], in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.options = self.checked_options(options)
        self.in_channels = in_channels
        self.num_classes = num_classes

    @classmethod
    def all_option_specs(cls) -> dict[str, Option]:
        return {**COMMON_OPTIONS, **cls.option_specs}

    @classmethod
    def checked_options(cls, options: Mapping[str, Any], label: str = "") -> dict[str, Any]:
        """Defaults <- ``options``, each value checked against its spec; ConfigError naming the method
        (``label`` if given, e.g. a variant), the option, the value and what is expected."""
        return resolve_options(cls.all_option_specs(), options, f"method {label or cls.name!r}")

    @classmethod
    def all_defaults(cls) -> dict[str, Any]:
        return defaults(cls.all_option_specs())

    @classmethod
    def authors_options(cls, dataset: str) -> dict[str, Any]:
        """The options that reproduce the released code's loss forms and perturbations on ``dataset``.

        Overridden by every method whose released code differs from its defaults; a dataset without
        its own script in the released code gets the default (NEU-Seg) script's values.
        """
        return {}

    @classmethod
    def unimplemented(cls) -> list[str]:
        """The methods a subclass still lacks: abstract ones, and ``named_predictions`` unless it
        or (older plugins) ``predict`` is overridden; the registry refuses a class that lacks any."""
        missing = set(getattr(cls, "__abstractmethods__", ()))
        if cls.named_predictions is Method.named_predictions and cls.predict is Method.predict:
            missing.add("named_predictions")
        return sorted(missing)

    @abstractmethod
    def training_step(
        self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int
    ) -> dict[str, Tensor]:
        """Losses of one step: ``{"loss": total, "loss_sup": ..., "loss_unsup": ..., "unsup_weight": ..., <part>: value}``."""

    def on_step_end(self, step: int) -> None:
        """Called after each optimiser step (e.g. to update an EMA teacher)."""

    def prediction_names(self) -> tuple[str, ...]:
        """Every prediction ``named_predictions`` computes, in the order results report them."""
        return (PREDICTION,)

    def named_predictions(self, images: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        """Logits (B, num_classes, H, W) of the predictions ``names`` (from ``prediction_names``), in
        that order, computed with only the passes they need.

        A method that overrides ``predict`` instead (older plugins) has that one prediction.
        """
        return {name: self.predict(images) for name in names}

    @property
    def default_prediction(self) -> str:
        """What ``predict`` returns: the ``eval_mode`` option where the method has one, else the first name."""
        return self.options.get("eval_mode", self.prediction_names()[0])

    def predict(self, images: Tensor) -> Tensor:
        """Logits (B, num_classes, H, W) used for evaluation: the default prediction alone."""
        name = self.default_prediction
        return self.named_predictions(images, (name,))[name]

    def variant_names(self) -> tuple[str, ...]:
        """The predictions evaluated beside ``predict``: the others, or all (``variants_include_default``)."""
        names = self.prediction_names()
        return names if self.variants_include_default else tuple(name for name in names if name != self.default_prediction)

    def predict_variants(self, images: Tensor) -> dict[str, Tensor]:
        """Extra named predictions evaluated beside ``predict`` (e.g. main decoder vs ensemble), computed together."""
        names = self.variant_names()
        return self.named_predictions(images, names) if names else {}

    def predict_variant(self, images: Tensor, name: str) -> Tensor:
        """One entry of ``predict_variants``, for timing and MACs; override where it is cheaper alone."""
        return self.predict_variants(images)[name]

    def member_outputs(self, images: Tensor) -> dict[str, Tensor]:
        """Logits of each member network or decoder by name (for pictures); one entry by default."""
        return {PREDICTION: self.predict(images)}

    def rampup(self, step: int, total_steps: int) -> float:
        """Sigmoid ramp-up in [0, 1] over ``rampup_fraction`` of the run."""
        return sigmoid_rampup(step, round(self.options["rampup_fraction"] * total_steps))
