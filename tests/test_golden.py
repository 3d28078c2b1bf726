"""Same results for the same seeds: the current code against golden values from older code.

``golden/golden.json`` was made by ``golden/make_golden.py`` from the code before ``benchmarks/``
was split into packages and the Method interface changed (commit 73396ab): per method and recipe,
the losses of 3 Adam steps and the predictions afterwards; per smoke run (supervised, UAPS), the
config hash, best step and test IoUs. Here the same script's functions recompute them.

Config hashes and best steps must be equal exactly. Losses, predictions and metrics must agree
within a relative 1e-5, not exactly: the reference file comes from an AMD EPYC with AVX-512 (CPU
family 26) and torch 2.14.1, and torch's CPU kernels (vectorisation width, oneDNN code paths)
differ between processors and versions, which changes float rounding. On the machine that made
the file every value is equal bit for bit.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from golden.make_golden import GOLDEN, RECIPES, RUN_METHODS, method_values, one_thread, run_values

RTOL = 1e-5
REFERENCE = json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    with one_thread():
        yield


def numbers(values: dict[str, Any] | list[Any], prefix: str = "") -> dict[str, float]:
    """The numbers in nested dicts and lists, keyed by dotted paths (``loss.0``); strings left out."""
    items = values.items() if isinstance(values, dict) else enumerate(values)
    out: dict[str, float] = {}
    for key, value in items:
        if isinstance(value, (dict, list)):
            out.update(numbers(value, f"{prefix}{key}."))
        elif not isinstance(value, str):
            out[f"{prefix}{key}"] = value
    return out


def test_golden_file_covers_every_recipe_and_run():
    assert all(set(recipes) == set(RECIPES) for recipes in REFERENCE["methods"].values())
    assert set(REFERENCE["runs"]) == set(RUN_METHODS)


@pytest.mark.parametrize("recipe", list(RECIPES))
@pytest.mark.parametrize("name", sorted(REFERENCE["methods"]))
def test_method_steps_match_golden(name: str, recipe: str):
    assert numbers(method_values(name, recipe)) == pytest.approx(numbers(REFERENCE["methods"][name][recipe]), rel=RTOL)


@pytest.mark.parametrize("method", RUN_METHODS)
def test_smoke_run_matches_golden(method: str, tmp_path: Path):
    expected, actual = REFERENCE["runs"][method], run_values(method, tmp_path)
    assert actual["config_hash"] == expected["config_hash"]
    assert actual["best_step"] == expected["best_step"]
    assert numbers(actual) == pytest.approx(numbers(expected), rel=RTOL)
