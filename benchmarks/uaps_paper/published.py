"""The UAPS authors' published numbers (Sime et al. 2023, ``paper_reference.yaml``) and how they are shown
beside ours: ``load_paper_reference``, ``paper_source`` (the citation under each comparison table),
``PAPER_STYLE`` and ``PAPER_LABEL`` (the markers drawn in the figures)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PAPER_REFERENCE = Path(__file__).resolve().parent / "paper_reference.yaml"
PAPER_LABEL = "paper (Sime et al. 2023)"
PAPER_STYLE = {"marker": "D", "color": "black", "markerfacecolor": "none", "markeredgewidth": 1.5, "markersize": 7,
               "linestyle": "none", "zorder": 5}


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
