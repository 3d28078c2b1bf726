"""The one interface every method implements; the runner owns everything else.

A method owns its networks and losses. The runner gives it, at every step, a labelled batch
(normalised images and class-id masks), an unlabelled batch of images, the step counter and the
total number of steps; the method returns its named losses, of which ``"loss"`` is optimised and
every other entry is logged. After the optimiser step the runner calls ``on_step_end`` (for EMA
teachers and the like). For evaluation the runner calls ``predict``, which returns logits.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

from torch import Tensor, nn

from .ramps import sigmoid_rampup

# Options every method accepts, on top of its own ``defaults``.
COMMON_DEFAULTS: dict[str, Any] = {
    # network: "unet" (paper U-Net), "unet-tconv", or "smp:<Arch>:<encoder>"
    "backbone": "unet",
    # length of every sigmoid ramp-up as a fraction of the run's iterations; 0.34 is the UAPS
    # code's 200 "epochs" x 80 iterations out of its ~47,000 iterations
    "rampup_fraction": 0.34,
}


# Named recipes (config key ``recipe``): "unified" = the shared settings; "authors" = the released
# code's loss forms and perturbations (``Method.recipe_options``, docs/fidelity.md).
RECIPES = ("unified", "authors")
# The SSL4MIS 2D scripts ramp their consistency weight with sigmoid_rampup(iter_num // 150, 200):
# 30,000 iterations, their default max_iterations, so over the whole run (docs/fidelity.md).
SSL4MIS_RAMPUP: dict[str, Any] = {"rampup_fraction": 1.0}


class ConfigError(ValueError):
    """An unknown or invalid configuration key; the message names it and lists the valid ones."""


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


def check_number(method: str, key: str, value: Any, minimum: float = 0, maximum: float | None = None, integer: bool = False) -> None:
    """ConfigError unless ``value`` is a number (an integer if asked) in [minimum, maximum]."""
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum:g}" if maximum is None else f"in [{minimum:g}, {maximum:g}]"
        raise ConfigError(f"option {key!r} of method {method!r} must be {'an integer' if integer else 'a number'} {bounds}, got {value!r}")


def check_choice(method: str, key: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ConfigError(f"option {key!r} of method {method!r} must be one of {list(choices)}, got {value!r}")


def check_flag(method: str, key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"option {key!r} of method {method!r} must be true or false, got {value!r}")


def check_subset(method: str, key: str, value: Any, allowed: Sequence[Any], non_empty: bool = False) -> None:
    """ConfigError unless ``value`` is a list whose items all come from ``allowed``."""
    if not isinstance(value, (list, tuple)) or (non_empty and not value) or any(item not in allowed for item in value):
        kind = "a non-empty list" if non_empty else "a list"
        raise ConfigError(f"option {key!r} of method {method!r} must be {kind} drawn from {list(allowed)}, got {value!r}")


def per_dataset(table: Mapping[str, dict[str, Any]], dataset: str) -> dict[str, Any]:
    """A copy of ``table[dataset]``; a dataset without its own released script gets the NEU-Seg (default) script's entry."""
    return dict(table.get(dataset, table["neu"]))


def consistency_losses(loss_sup: Tensor, loss_cons: Tensor, weight: float) -> dict[str, Tensor]:
    """The step output of an objective ``loss_sup + weight * loss_cons`` (CCT, URPC), parts named for logging."""
    return {
        "loss": loss_sup + weight * loss_cons,
        "loss_sup": loss_sup,
        "loss_cons": loss_cons,
        "cons_weight": loss_sup.new_tensor(weight),
    }


class Method(nn.Module, ABC):
    """Base class of all semi-supervised segmentation methods.

    Subclasses set ``defaults`` (their own options with default values) and implement
    ``training_step`` and ``predict``. ``self.options`` holds the resolved options.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, options: Mapping[str, Any], in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.options = resolve_options(self.name, self.all_defaults(), options)
        self.in_channels = in_channels
        self.num_classes = num_classes

    @classmethod
    def all_defaults(cls) -> dict[str, Any]:
        return {**COMMON_DEFAULTS, **cls.defaults}

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

    @abstractmethod
    def training_step(
        self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int
    ) -> dict[str, Tensor]:
        """Losses of one step: ``{"loss": total, <part>: value, ...}`` (tensors)."""

    def on_step_end(self, step: int) -> None:
        """Called after each optimiser step (e.g. to update an EMA teacher)."""

    @abstractmethod
    def predict(self, images: Tensor) -> Tensor:
        """Logits (B, num_classes, H, W) used for evaluation."""

    def predict_variants(self, images: Tensor) -> dict[str, Tensor]:
        """Extra named predictions evaluated beside ``predict`` (e.g. main decoder vs ensemble)."""
        return {}

    def predict_variant(self, images: Tensor, name: str) -> Tensor:
        """One entry of ``predict_variants`` alone, for timing and MACs; override where cheaper."""
        return self.predict_variants(images)[name]

    def member_outputs(self, images: Tensor) -> dict[str, Tensor]:
        """Logits of each member network or decoder by name (for pictures); one entry by default."""
        return {"prediction": self.predict(images)}

    def rampup(self, step: int, total_steps: int) -> float:
        """Sigmoid ramp-up in [0, 1] over ``rampup_fraction`` of the run."""
        return sigmoid_rampup(step, round(self.options["rampup_fraction"] * total_steps))
