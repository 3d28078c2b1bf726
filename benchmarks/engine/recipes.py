"""Named training recipes: the training-loop settings that a recipe fixes, per method and dataset.

A recipe is chosen with the top-level config key ``recipe``:

* ``unified`` (default): one set of shared settings for every method (flips and rot90, inputs
  scaled to [-1, 1], constant learning rate), so methods are compared under identical conditions.
* ``authors``: the settings of the UAPS and simEps authors' released code (details and line
  references in ``docs/fidelity.md``): their albumentations pipeline, nearest-neighbour resizing,
  ImageNet normalisation, float32, and ``ReduceLROnPlateau(mode="max")`` on validation mean Dice;
  per run (``Recipe.loop``) the iteration count, learning rate, its floor and the plateau
  patience of the released script that trained the method on the dataset (``released_loop``).

A recipe fills defaults only: a key set in the profile or with ``--set`` always wins. The loss
forms and perturbations a recipe implies belong to each method (``Method.recipe_options``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from defectseg.methods import ConfigError
from defectseg.methods.base import RECIPES, per_dataset
from defectseg.methods.released_loops import SIMEPS_LOOPS, UAPS_LOOPS, ReleasedLoop

Loop = Callable[[str, str], dict[str, Any]]  # (registered method, dataset) -> train settings of that run


def no_loop(method: str, dataset: str) -> dict[str, Any]:
    """No per-run settings: every run keeps the recipe's and the profile's ``train``."""
    return {}


# The released script each method's loop comes from, by dataset: simEps its own; every other method
# the UAPS scripts', the loop of the UAPS paper's comparison (docs/fidelity.md).
SCRIPT_LOOPS: dict[str, dict[str, ReleasedLoop]] = {"simeps": SIMEPS_LOOPS}


def released_loop(method: str, dataset: str) -> dict[str, Any]:
    """Iterations, learning rate, its floor and the plateau patience (in iterations) of the released
    script of ``method`` on ``dataset``; a dataset without a script gets the NEU-Seg script's."""
    return per_dataset(SCRIPT_LOOPS.get(method, UAPS_LOOPS), dataset).train_settings()


@dataclass(frozen=True)
class Recipe:
    """Training settings of a recipe: ``train`` for every run, ``loop(method, dataset)`` on top for one run."""

    train: dict[str, Any] = field(default_factory=dict)
    loop: Loop = no_loop


TRAIN_RECIPES: dict[str, Recipe] = {
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
    ),
}
assert tuple(TRAIN_RECIPES) == RECIPES, "every recipe of methods.RECIPES has training settings here"


def train_recipe(name: str) -> Recipe:
    """The training settings of recipe ``name``; ConfigError naming the valid recipes otherwise."""
    if name not in TRAIN_RECIPES:
        raise ConfigError(f"unknown recipe {name!r} (config key 'recipe'); valid recipes: {list(TRAIN_RECIPES)}")
    return TRAIN_RECIPES[name]
