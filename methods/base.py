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
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar

from torch import Tensor, nn

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


class ConfigError(ValueError):
    """An unknown or invalid configuration key; the message names it and lists the valid ones."""


OptionKind = Literal["number", "integer", "flag", "choice", "subset", "text"]


@dataclass(frozen=True)
class Option:
    """One setting: its default value and the values it accepts (method options and config settings alike).

    ``kind``: "number" (an int or float in [``minimum``, ``maximum``]; ``None``: unbounded), "integer"
    (an int in those bounds), "flag" (true or false), "choice" (one of ``choices``), "subset" (a list
    drawn from ``choices``, not empty if ``non_empty``) or "text" (a string the method interprets
    itself); ``nullable``: null is accepted too. ``note`` says why, in the error message. Build
    them with ``number``, ``integer``, ``flag``, ``choice``, ``subset`` and ``text``.
    """

    default: Any
    kind: OptionKind
    minimum: float | None = 0
    maximum: float | None = None
    choices: tuple[Any, ...] = ()
    non_empty: bool = False
    nullable: bool = False
    note: str = ""

    def accepts(self, value: Any) -> bool:
        if value is None and self.nullable:
            return True
        if self.kind in ("number", "integer"):
            kind = int if self.kind == "integer" else (int, float)
            if isinstance(value, bool) or not isinstance(value, kind) or value != value:
                return False
            return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)
        if self.kind == "flag":
            return isinstance(value, bool)
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "subset":
            return isinstance(value, (list, tuple)) and bool(value or not self.non_empty) and all(item in self.choices for item in value)
        return isinstance(value, str)

    def expected(self) -> str:
        """What the option accepts, in words."""
        if self.kind in ("number", "integer"):
            if self.minimum is None:
                bounds = "" if self.maximum is None else f" <= {_bound_text(self.maximum)}"
            elif self.maximum is None:
                bounds = f" >= {_bound_text(self.minimum)}"
            else:
                bounds = f" in [{_bound_text(self.minimum)}, {_bound_text(self.maximum)}]"
            words = f"{'an integer' if self.kind == 'integer' else 'a number'}{bounds}"
        elif self.kind == "flag":
            words = "true or false"
        elif self.kind == "choice":
            words = f"one of {list(self.choices)}"
        elif self.kind == "subset":
            words = f"{'a non-empty list' if self.non_empty else 'a list'} drawn from {list(self.choices)}"
        else:
            words = "a string"
        return f"{words} or null" if self.nullable else words

    def check_at(self, where: str, value: Any) -> None:
        """ConfigError naming ``where`` (a key or an option), the value and what is expected, unless accepted."""
        if not self.accepts(value):
            note = f" ({self.note})" if self.note else ""
            raise ConfigError(f"{where} must be {self.expected()}{note}, got {value!r}")

    def check(self, method: str, key: str, value: Any) -> None:
        """``check_at`` for option ``key`` of ``method``."""
        self.check_at(f"option {key!r} of method {method!r}", value)


def _bound_text(bound: float) -> str:
    """A bound as written: 4294967295 stays whole (``:g`` would print 4.29497e+09), 0.5 stays 0.5."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def number(default: float | None, minimum: float | None = 0, maximum: float | None = None, nullable: bool = False) -> Option:
    return Option(default, "number", minimum, maximum, nullable=nullable)


def integer(default: int | None, minimum: int | None = 0, maximum: int | None = None, nullable: bool = False) -> Option:
    return Option(default, "integer", minimum, maximum, nullable=nullable)


def flag(default: bool) -> Option:
    return Option(default, "flag")


def choice(default: Any, choices: Sequence[Any], note: str = "") -> Option:
    return Option(default, "choice", choices=tuple(choices), note=note)


def subset(default: list[Any], choices: Sequence[Any], non_empty: bool = False) -> Option:
    return Option(default, "subset", choices=tuple(choices), non_empty=non_empty)


def text(default: str) -> Option:
    return Option(default, "text")


# Options every method accepts, on top of its own ``option_specs``.
COMMON_OPTIONS: dict[str, Option] = {
    # network: "unet" (paper U-Net), "unet-tconv", or "smp:<Arch>:<encoder>" (checked by build_network)
    "backbone": text("unet"),
    # length of every sigmoid ramp-up as a fraction of the run's iterations; 0.34 is the UAPS
    # code's 200 "epochs" x 80 iterations out of its ~47,000 iterations
    "rampup_fraction": number(0.34),
}


# Named recipes (config key ``recipe``): "unified" = the shared settings; "authors" = the released
# code's loss forms and perturbations (``Method.recipe_options``, docs/fidelity.md).
RECIPES = ("unified", "authors")
# The SSL4MIS 2D scripts ramp their consistency weight with sigmoid_rampup(iter_num // 150, 200):
# 30,000 iterations, their default max_iterations, so over the whole run (docs/fidelity.md).
SSL4MIS_RAMPUP: dict[str, Any] = {"rampup_fraction": 1.0}


class LabeledBatch(NamedTuple):
    images: Tensor  # (B, C, H, W) float, normalised
    masks: Tensor  # (B, H, W) int64 class ids


def resolve_options(name: str, defaults: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` overridden by ``options``; an unknown key raises ConfigError listing the valid ones."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for method {name!r}; valid options: {sorted(defaults)}"
        )
    return {**defaults, **options}


Entry = TypeVar("Entry")  # an entry of a per-dataset table of released values


def per_dataset(table: Mapping[str, Entry], dataset: str) -> Entry:
    """``table[dataset]``; a dataset without its own released script gets the NEU-Seg (default) script's entry."""
    return table.get(dataset, table["neu"])


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
        name = label or cls.name
        resolved = resolve_options(name, cls.all_defaults(), options)
        for key, spec in cls.all_option_specs().items():
            spec.check(name, key, resolved[key])
        return resolved

    @classmethod
    def all_defaults(cls) -> dict[str, Any]:
        return {key: spec.default for key, spec in cls.all_option_specs().items()}

    @classmethod
    def recipe_options(cls, recipe: str, dataset: str) -> dict[str, Any]:
        """The option values that ``recipe`` sets for this method on ``dataset``; {} keeps the defaults.

        ``unified`` keeps every default; ``authors`` gives ``authors_options(dataset)``. Options
        resolve as defaults <- recipe options <- the user's options.
        """
        if recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {recipe!r}; valid recipes: {list(RECIPES)}")
        return cls.authors_options(dataset) if recipe == "authors" else {}

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
