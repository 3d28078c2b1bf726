"""The UAPS paper as a report section (``benchmarks.reporting.sections.ReportSection``): its comparison and
ablation tables under their own headings, its ablation figures with their captions, its published main
results on the label-efficiency figure, and its ablations as the groups of a profile of UAPS variants'
validation curves."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from defectseg.benchmarks.reporting.results_view import ResultsView
from defectseg.benchmarks.reporting.sections import PublishedPoints, VariantGroup
from defectseg.benchmarks.reporting.table_format import Table
from defectseg.benchmarks.uaps_paper.ablations import ABLATION_OPTIONS, OPTION_LABELS, ablation_runs, ordered_values, value_label
from defectseg.benchmarks.uaps_paper.figures import ABLATION_FIGURE_CAPTIONS, build_paper_figures
from defectseg.benchmarks.uaps_paper.published import PAPER_LABEL, PAPER_STYLE, load_paper_reference
from defectseg.benchmarks.uaps_paper.tables import build_paper_tables


class UapsPaperSection:
    """The UAPS paper's tables and figures; its published numbers are read once, when first needed."""

    table_groups: Sequence[tuple[str, Callable[[str], bool]]] = (
        ("Comparison with the published numbers", lambda name: name.startswith("paper_")),
        ("Ablations", lambda name: name.startswith("ablation_")),
    )
    figure_captions: Mapping[str, str] = ABLATION_FIGURE_CAPTIONS

    @cached_property
    def reference(self) -> dict[str, Any]:
        return load_paper_reference()

    def tables(self, view: ResultsView, profile: str) -> list[tuple[str, Table | None]]:
        return build_paper_tables(view.profile_runs(profile), profile, self.reference, view.run_set_records)

    def figures(self, view: ResultsView, profile: str) -> dict[str, Figure | None]:
        return build_paper_figures(view.profile_runs(profile), profile, self.reference)

    def published_points(self) -> list[PublishedPoints]:
        return [PublishedPoints(PAPER_LABEL, PAPER_STYLE, "paper", self.reference["main"])]

    def variant_groups(self, runs: pd.DataFrame) -> list[VariantGroup]:
        """One group per UAPS ablation among ``runs``: a line per setting in the paper's order, the default marked."""
        groups = []
        for option in ABLATION_OPTIONS:
            ablation = ablation_runs(runs, option)
            if ablation.empty:
                continue
            values = ordered_values(option, ablation["value"])
            ablation = ablation.assign(
                line=[value_label(option, v) + (" (default)" if ref else "") for v, ref in zip(ablation["value"], ablation["reference"])],
                order=[values.index(v) for v in ablation["value"]],
            ).sort_values("order", kind="stable")
            groups.append(VariantGroup(OPTION_LABELS[option], ablation))
        return groups
