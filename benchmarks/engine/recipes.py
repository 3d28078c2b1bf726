"""The recipe registry: every named recipe, declared once with all it sets (config key ``recipe``).

* ``unified`` (default): one set of shared settings for every method (flips and rot90, inputs
  scaled to [-1, 1], constant learning rate, every method option at its default), so methods are
  compared under identical conditions.
* ``authors``: the settings of the UAPS and simEps authors' released code (details and line
  references in ``docs/fidelity.md``): their albumentations pipeline, nearest-neighbour resizing,
  ImageNet normalisation, float32, and ``ReduceLROnPlateau(mode="max")`` on validation mean Dice;
  per run (``Recipe.loop``) the iteration count, learning rate, its floor and the plateau
  patience of the released script that trained the method on the dataset (``released_loop``);
  per method the released code's loss forms and perturbations (``Method.authors_options``).

A recipe fills defaults only: a key set in the profile or with ``--set`` always wins. The config
(``benchmarks.engine.config``) checks the name and applies the three parts.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from defectseg.methods import Method
from defectseg.methods.released_loops import SIMEPS_LOOPS, UAPS_LOOPS, ReleasedLoop, per_dataset

Loop = Callable[[str, str], dict[str, Any]]  # (registered method, dataset) -> train settings of that run
MethodHook = Callable[[type[Method], str], dict[str, Any]]  # (method class, dataset) -> option values


def no_loop(method: str, dataset: str) -> dict[str, Any]:
    """No per-run settings: every run keeps the recipe's and the profile's ``train``."""
    return {}


def no_method_options(method_class: type[Method], dataset: str) -> dict[str, Any]:
    """No option values: every method keeps its defaults."""
    return {}


def authors_method_options(method_class: type[Method], dataset: str) -> dict[str, Any]:
    """The method's own hook for the released code on ``dataset`` (``Method.authors_options``)."""
    return method_class.authors_options(dataset)


# The released script each method's loop comes from, by dataset: simEps its own; every other method
# the UAPS scripts', the loop of the UAPS paper's comparison (docs/fidelity.md).
SCRIPT_LOOPS: dict[str, dict[str, ReleasedLoop]] = {"simeps": SIMEPS_LOOPS}


def released_loop(method: str, dataset: str) -> dict[str, Any]:
    """Iterations, learning rate, its floor and the plateau patience (in iterations) of the released
    script of ``method`` on ``dataset``; a dataset without a script gets the NEU-Seg script's."""
    return per_dataset(SCRIPT_LOOPS.get(method, UAPS_LOOPS), dataset).train_settings()


@dataclass(frozen=True)
class Recipe:
    """What a recipe sets: ``train`` for every run, ``loop(method, dataset)`` on top for one run, and
    ``method_options(method class, dataset)``, the option values of a method (defaults <- these <- the user's)."""

    train: dict[str, Any] = field(default_factory=dict)
    loop: Loop = no_loop
    method_options: MethodHook = no_method_options


RECIPES: dict[str, Recipe] = {
    "unified": Recipe(),
    "authors": Recipe(
        train={
            "augmentation": "authors",
            "resize": "nearest",  # A.Resize(256, 256, interpolation=cv2.INTER_NEAREST), utilities/dataloaders.py:98,104-105
            "normalization": "imagenet",
            "precision": "fp32",  # no autocast in the released code
            "lr_schedule": "plateau",
            "lr_factor": 0.1,
        },
        loop=released_loop,
        method_options=authors_method_options,
    ),
}
