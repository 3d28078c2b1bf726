"""What the reporting takes from the UAPS paper (Sime et al. 2023) rather than from the benchmark itself.

* Its published numbers (``paper_reference.yaml``): ``load_paper_reference``, ``paper_source``
  (the citation under each comparison table) and how they are drawn beside ours
  (``PAPER_STYLE``, ``PAPER_LABEL``).
* Its ablation studies: the UAPS ``method_options`` they vary (``ABLATION_OPTIONS``) and how a
  value of each is normalised (``option_value``, ``canonical_losses``), ordered and labelled
  (``ordered_values``, ``value_label``, ``OPTION_LABELS``, ``losses_tick``), the settings the
  ablation figures always show (``LAMBDA_VALUES``, ``MIXING_RATIOS``, ``MIXING_VALUES``,
  ``DECODER_COUNTS``) and the captions of those figures (``ABLATION_FIGURE_CAPTIONS``).

``paper_tables`` and ``paper_figures`` build the paper-comparison and ablation tables and figures
from these definitions (``aggregate`` finds the ablation runs, ``report`` captions the figures);
this module reads no runs.
"""
from __future__ import annotations

import numbers
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

PAPER_REFERENCE = Path(__file__).resolve().parent / "paper_reference.yaml"
PAPER_LABEL = "paper (Sime et al. 2023)"
PAPER_STYLE = {"marker": "D", "color": "black", "markerfacecolor": "none", "markeredgewidth": 1.5, "markersize": 7,
               "linestyle": "none", "zorder": 5}

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
ABLATION_FIGURE_CAPTIONS = {
    "ablation_losses": ("UAPS loss combinations (paper protocol; bars: mean, whiskers: std over seeds); diamonds: published, "
                        "drawn only beside runs at the paper's labelled ratio; hatched: no runs."),
    "ablation_lambdas": "UAPS loss coefficients λ1 and λ2 (paper protocol; mean ± std over seeds).",
    "ablation_mixing": "UAPS dynamic mixing against averaging over labelled ratios (paper protocol; mean ± std over seeds).",
    "ablation_aux_decoders": ("UAPS auxiliary decoders D: mIoU, inference time, parameters, MACs (mean ± std over seeds); "
                              "diamonds: published (their mIoU only beside runs at the paper's dataset and ratio)."),
}


def load_paper_reference(path: Path = PAPER_REFERENCE) -> dict[str, Any]:
    """The UAPS authors' published numbers (see ``paper_reference.yaml``), checked for its sections."""
    data = yaml.safe_load(Path(path).read_text())
    expected = ("source", "main", "loss_ablation", "aux_decoders", "inference_ms")
    missing = [key for key in expected if not isinstance(data, dict) or key not in data]
    if missing:
        raise ValueError(f"{path} lacks section(s) {missing}; expected {list(expected)}")
    return data


def paper_source(reference: dict[str, Any]) -> str:
    source = reference["source"]
    return f"Paper: {' '.join(source['paper'].split())} Numbers from {source['repository']} (commit {source['commit'][:10]})."


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
