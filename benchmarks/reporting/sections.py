"""What a study adds to the generic reporting: its own tables and figures, the report's headings for them,
numbers published elsewhere to draw beside ours, and how its variant runs group in the validation curves.

The tables, figures and report of ``benchmarks.reporting`` know no particular method or paper: the command
layer (``run_all.py``) hands them a list of ``ReportSection`` objects (the UAPS paper's is
``benchmarks.uaps_paper.section``). Each section's tables and figures follow the generic ones.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd
from matplotlib.figure import Figure

from defectseg.benchmarks.reporting.table_format import Table

if TYPE_CHECKING:
    from defectseg.benchmarks.reporting.results_view import ResultsView


@dataclass(frozen=True)
class PublishedPoints:
    """Results published elsewhere, drawn on the label-efficiency figure of ``protocol``: ``points`` hold
    ``dataset``, ``ratio``, ``method`` and ``miou`` (%); ``style``: matplotlib keywords (the marker's face takes
    the method's colour); ``label``: the legend's."""

    label: str
    style: Mapping[str, Any]
    protocol: str
    points: Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class VariantGroup:
    """Variant runs drawn together in the validation curves of a profile of variants: a panel per (dataset,
    ratio) titled ``title``, a line per ``line`` label of ``runs`` (in their order), black where ``reference``."""

    title: str
    runs: pd.DataFrame


class ReportSection(Protocol):
    """A study's tables and figures. ``table_groups``: the report's headings for its tables, each with which
    table names go under it; ``figure_captions``: its figures' captions by file name."""

    table_groups: Sequence[tuple[str, Callable[[str], bool]]]
    figure_captions: Mapping[str, str]

    def tables(self, view: ResultsView, profile: str) -> list[tuple[str, Table | None]]:
        """The section's tables of one profile by name; None for a table without data."""

    def figures(self, view: ResultsView, profile: str) -> dict[str, Figure | None]:
        """The section's figures of one profile by file name; None for a figure without data."""

    def published_points(self) -> list[PublishedPoints]:
        """Numbers published elsewhere for cells the benchmark runs too."""

    def variant_groups(self, runs: pd.DataFrame) -> list[VariantGroup]:
        """The study's groups among a profile's variant runs (variants of no group get a panel per cell)."""
