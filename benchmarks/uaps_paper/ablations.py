"""The UAPS ablation studies: which runs form one, and how its settings are normalised, ordered and labelled.

The UAPS ``method_options`` the studies vary (``ABLATION_OPTIONS``), how a value of each is normalised
(``option_value``, ``canonical_losses``), ordered and labelled (``ordered_values``, ``value_label``,
``OPTION_LABELS``, ``losses_tick``), the settings the ablation figures always show (``LAMBDA_VALUES``,
``MIXING_RATIOS``, ``MIXING_VALUES``, ``DECODER_COUNTS``), and ``ablation_runs``: the runs of one study,
told apart by their resolved ``method_options`` (from ``config.yaml``), never by their names.
"""
from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pandas as pd
import yaml

from defectseg.benchmarks.uaps_paper.published import load_paper_reference

# options read from config.yaml's method_options for the ablation studies (UAPS's names)
ABLATION_OPTIONS = ("losses", "lambda1", "lambda2", "mixing", "aux_decoders")
FLOAT_OPTIONS = ("lambda1", "lambda2")
LOSS_ORDER = ("seg", "ps", "ups", "un")
LOSS_LABELS = {"seg": "ℓ_seg", "ps": "ℓ_ps", "ups": "ℓ_ups", "un": "ℓ_un"}
OPTION_LABELS = {
    "losses": "Loss terms",
    "lambda1": "λ1 (pseudo-label loss weight)",
    "lambda2": "λ2 (uncertainty loss weight)",
    "mixing": "Pseudo-label mixing",
    "aux_decoders": "Auxiliary decoders D",
}
# settings the ablation figures show even without runs (a gap or an "n/a" slot), as the paper's figures do
LAMBDA_VALUES = (0.0, 0.1, 0.3, 0.5, 1.0)
MIXING_RATIOS = (0.1, 0.3, 0.5)  # shown once the runs hold any of them (a study at other ratios shows its own)
MIXING_VALUES = ("dynamic", "average")
DECODER_COUNTS = (0, 1, 2, 3, 4)


def canonical_losses(value: Any) -> str | None:
    """``["ups", "un"]`` -> ``"seg+ups+un"``: the loss terms in a fixed order (ℓ_seg is always on)."""
    if value is None:
        return None
    if isinstance(value, str):
        names = value.replace(",", "+").replace(" ", "+").split("+")
    elif isinstance(value, dict):
        names = [name for name, on in value.items() if on]
    else:
        names = list(value)
    found = {str(name).strip().lower() for name in names if str(name).strip()} | {"seg"}
    known = [name for name in LOSS_ORDER if name in found]
    return "+".join(known + sorted(found - set(LOSS_ORDER)))


def option_value(key: str, options: dict[str, Any]) -> Any:
    """The value of ablation option ``key`` in ``options``, normalised so that equal settings compare equal."""
    value = options.get(key)
    if key == "losses":
        return canonical_losses(value)
    if key in FLOAT_OPTIONS and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # lambda1: 0 and lambda1: 0.0 are one setting
    return value


def losses_label(canonical: str) -> str:
    """``"seg+ups+un"`` -> ``"ℓ_seg + ℓ_ups + ℓ_un"``."""
    return " + ".join(LOSS_LABELS.get(name, name) for name in canonical.split("+"))


def losses_tick(canonical: str) -> str:
    """``"seg+ups+un"`` -> ``"+ℓ_ups+ℓ_un"`` in mathtext, as the paper labels its bars."""
    names = canonical.split("+")
    if names == ["seg"]:
        return r"$\ell_{seg}$"
    return "".join(rf"+$\ell_{{{name}}}$" for name in names if name != "seg")


def ordered_values(option: str, values: Iterable[Any]) -> list[Any]:
    """Distinct option values: loss combinations in the paper's order, numbers ascending, else by name."""
    values = list(dict.fromkeys(values))
    if option == "losses":
        paper = [row["losses"] for row in load_paper_reference()["loss_ablation"]["rows"]]
        return sorted(values, key=lambda v: (paper.index(v) if v in paper else len(paper), str(v)))
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        return sorted(values)
    return sorted(values, key=str)


def value_label(option: str, value: Any) -> str:
    if option == "losses":
        return losses_label(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _reference_options(family: pd.DataFrame, base_method: str) -> dict[str, Any]:
    """Options of the plain ``base_method`` run if there is one, else each option's most common value."""
    plain = family[family["method"] == base_method]
    if not plain.empty:
        return dict(plain.iloc[0]["options"])
    keys = {key for options in family["options"] for key in options}
    reference = {}
    for key in keys:
        counts = Counter(yaml.safe_dump(options.get(key)) for options in family["options"])
        reference[key] = yaml.safe_load(counts.most_common(1)[0][0])
    return reference


def ablation_runs(runs: pd.DataFrame, option: str, base_method: str = "uaps", per_ratio: bool = True) -> pd.DataFrame:
    """Runs of ``base_method`` (plain or variants) whose options differ from the reference only in ``option``.

    The reference is, per profile, the plain ``base_method`` run's options (or, without one, each
    option's most common value). Adds ``value``: the option's value (losses canonicalised), and
    ``reference``: whether it is the reference's value (the default the other settings are read
    against, whether run as the plain method or as a variant repeating its options). Only
    cells where the option takes more than one value are kept: cells are (dataset, ratio), or
    datasets when not ``per_ratio`` (for a study across ratios). When a variant repeats the
    reference's options, its seeds are not counted twice.
    """
    if runs.empty:
        return runs.assign(value=pd.Series(dtype=object), reference=pd.Series(dtype=bool))
    parts = []
    for _, family in runs[runs["base_method"] == base_method].groupby("profile", sort=True):
        reference = _reference_options(family, base_method)
        keep = [
            all(_same(options.get(k), reference.get(k)) for k in set(options) | set(reference) if k != option)
            for options in family["options"]
        ]
        selected = family[keep]
        selected = selected.assign(value=[option_value(option, o) for o in selected["options"]])
        selected = selected[selected["value"].notna()]
        default = option_value(option, reference)
        selected = selected.assign(reference=[_same(v, default) for v in selected["value"]])
        # the plain run first, so that it wins over a variant repeating its options
        selected = selected.assign(_plain=selected["method"] != base_method).sort_values(["_plain", "method"])
        selected = selected.drop_duplicates(["dataset", "ratio", "seed", "value"], keep="first")
        cell = ["dataset", "ratio"] if per_ratio else ["dataset"]
        varied = selected.groupby(cell)["value"].transform(lambda v: v.astype(str).nunique() > 1)
        parts.append(selected[varied.astype(bool)].drop(columns="_plain"))
    if not parts:
        return runs.iloc[0:0].assign(value=pd.Series(dtype=object), reference=pd.Series(dtype=bool))
    return pd.concat(parts, ignore_index=True)
