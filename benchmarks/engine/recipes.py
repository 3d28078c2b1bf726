"""Named training recipes: the training-loop settings that a recipe fixes, per dataset.

A recipe is chosen with the top-level config key ``recipe``:

* ``unified`` (default): one set of shared settings for every method (flips and rot90, inputs
  scaled to [-1, 1], constant learning rate), so methods are compared under identical conditions.
* ``authors``: the settings of the UAPS and simEps authors' released code
  (``utilities/dataloaders.py``, ``UAPS_train.py``; details and line references in
  ``docs/fidelity.md``): their albumentations pipeline, ImageNet normalisation, and
  ``ReduceLROnPlateau(mode="max")`` on validation mean Dice with a patience of 50 "epochs" of 59
  iterations, plus the per-dataset settings of their MTiles script (learning rate 2e-3).

A recipe fills defaults only: a key set in the profile or with ``--set`` always wins. The loss
forms and perturbations a recipe implies belong to each method (``Method.recipe_options``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from methods import ConfigError
from methods.base import RECIPES


@dataclass(frozen=True)
class Recipe:
    """Training settings of a recipe: ``train`` for every dataset, ``train_per_dataset`` on top."""

    train: dict[str, Any] = field(default_factory=dict)
    train_per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)


AUTHORS_EPOCH = 59  # UAPS_train.py: iter_per_epoch = 60 with range(1, iter_per_epoch) -> 59 steps per "epoch"

TRAIN_RECIPES: dict[str, Recipe] = {
    "unified": Recipe(),
    "authors": Recipe(
        train={
            "augmentation": "authors",
            "normalization": "imagenet",
            "lr_schedule": "plateau",
            "lr_patience": 50 * AUTHORS_EPOCH,
            "lr_factor": 0.1,
            "min_lr": 1e-8,
        },
        train_per_dataset={"mtiles": {"lr": 2e-3}},
    ),
}
assert tuple(TRAIN_RECIPES) == RECIPES, "every recipe of methods.RECIPES has training settings here"


def train_recipe(name: str) -> Recipe:
    """The training settings of recipe ``name``; ConfigError naming the valid recipes otherwise."""
    if name not in TRAIN_RECIPES:
        raise ConfigError(f"unknown recipe {name!r} (config key 'recipe'); valid recipes: {list(TRAIN_RECIPES)}")
    return TRAIN_RECIPES[name]
