"""How every figure looks and is saved, shared by ``plots`` and a section's figures (``benchmarks.uaps_paper.figures``).

seaborn's paper theme applied without global state (``theme``), a row (or rows) of panels on a
pyplot-free figure (``panels``), PNG + PDF output without time stamps so the bytes repeat (``save``), and the
drawing conventions for missing data: a hatched "n/a" slot among grouped bars (``bar_group``), an
"n/a" panel (``empty_panel``), the cells without runs listed under a panel (``note_missing``), error
bars of zero where the std is missing (``zero_nan``), and the value axis zoomed onto the bars
(``bar_limits``).
"""
from __future__ import annotations

import contextlib
import math
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import seaborn as sns
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from defectseg.benchmarks.reporting.table_format import is_missing

MISSING_HATCH = {"hatch": "//", "fill": False, "edgecolor": "0.6", "linewidth": 0.8}


def theme() -> contextlib.AbstractContextManager:
    """seaborn's whitegrid/paper look for the figures drawn (and saved) inside, without global state."""
    return matplotlib.rc_context({**sns.axes_style("whitegrid"), **sns.plotting_context("paper", font_scale=1.1)})


def panels(count: int, width: float = 4.3, height: float = 3.5, columns: int | None = None) -> tuple[Figure, list[Axes]]:
    """A figure (no pyplot: rendered by Agg/PDF canvases when saved) with ``count`` panels in a row,
    or in rows of ``columns`` panels.

    Constrained layout: a ``titled_legend`` gets its own space above the panels.
    """
    columns = min(count, columns or count)
    rows = -(-count // columns)
    fig = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = list(fig.subplots(rows, columns, squeeze=False).flat)
    for unused in axes[count:]:
        fig.delaxes(unused)
    return fig, axes[:count]


def titled_legend(fig: Figure, handles: Sequence[Artist], title: str, columns: int, widest: float = 7.5) -> None:
    """The figure's legend above its ``panels``, headed by the figure's title (one block, so the
    constrained layout keeps title, legend and panels apart however many rows the legend has).

    A figure narrower than its title widens, up to ``widest`` inches, so its panels fill the width
    instead of hanging in wide margins; title lines still longer wrap, and the legend takes fewer
    than ``columns`` columns where they would not fit.
    """
    chars_per_inch = 72 / (0.5 * matplotlib.rcParams["font.size"])  # an average glyph is about half an em
    longest = max(len(line) for line in title.split("\n"))
    fig.set_figwidth(max(fig.get_figwidth(), min(longest / chars_per_inch, widest)))
    line_chars = int(fig.get_figwidth() * chars_per_inch)
    title = "\n".join(textwrap.fill(line, line_chars, break_on_hyphens=False) for line in title.split("\n"))
    labels = [len(str(handle.get_label())) for handle in handles]
    count = len(labels)  # each candidate evened out: 4 entries in 3 columns would be 2 + 1 + 1, so 2 + 2
    balanced = [math.ceil(count / math.ceil(count / c)) for c in range(min(columns, count), 0, -1)]
    columns = next(c for c in balanced if c == 1 or _legend_chars(labels, c) <= line_chars)
    fig.legend(handles=list(handles), loc="outside upper center", ncol=columns, frameon=False, title=title,
               title_fontsize="medium")


def _legend_chars(labels: Sequence[int], columns: int) -> int:
    """The width, in characters, of a legend of labels this long in ``columns`` columns, split as matplotlib
    splits them (``np.array_split``; a column: its longest label, the marker and the gap)."""
    return sum(max(column) + 8 for column in np.array_split(np.asarray(labels), columns))


def note_missing(ax: Axes, missing: Sequence[str]) -> None:
    """List the cells without runs under the panel's x label (call after ``set_xlabel``)."""
    if missing:
        lines = textwrap.wrap("no runs: " + "; ".join(missing), 45)
        ax.set_xlabel("\n".join([ax.get_xlabel(), *lines]).strip())


def empty_panel(ax: Axes, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "n/a (no runs)", transform=ax.transAxes, ha="center", va="center", color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def zero_nan(values: Sequence[float]) -> list[float]:
    return [0.0 if is_missing(v) else v for v in values]


def save(fig: Figure, directory: Path, name: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    png, pdf = directory / f"{name}.png", directory / f"{name}.pdf"
    if fig.get_layout_engine() is None:  # ``panels`` figures lay themselves out (constrained)
        fig.tight_layout()
    fig.savefig(png, dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(pdf, bbox_inches="tight", metadata={"Creator": None, "Producer": None, "CreationDate": None})
    return [png, pdf]


def bar_group(ax: Axes, slots: Sequence[Any], groups: Sequence[Any], value: Callable[[Any, Any], tuple[float, float]],
               colors: Sequence[Any], labels: Sequence[str]) -> list[tuple[Any, Any]]:
    """Grouped bars (mean ± std) at x = slot index; a missing (slot, group) is a hatched "n/a" slot.

    Returns the missing (slot, group) pairs.
    """
    width = 0.8 / max(len(groups), 1)
    missing = []
    for g, group in enumerate(groups):
        labelled = False
        for s, slot in enumerate(slots):
            x = s - 0.4 + width * (g + 0.5)
            mean, std = value(slot, group)
            if is_missing(mean):
                ax.axvspan(x - width / 2, x + width / 2, **MISSING_HATCH)
                ax.text(x, 0.03, "n/a", transform=ax.get_xaxis_transform(), ha="center", fontsize=7, color="0.35")
                missing.append((slot, group))
                continue
            ax.bar(x, mean, width * 0.95, yerr=None if is_missing(std) else std, color=colors[g], capsize=3,
                   label=None if labelled else labels[g])
            labelled = True
    return missing


def bar_limits(ax: Axes, cells: Sequence[tuple[float, float]]) -> None:
    """Zoom the value axis onto the (mean, std) cells, error bars included (differences of a few points
    matter), within [0, 100]; a missing std counts as 0."""
    present = [(mean, 0.0 if is_missing(std) else std) for mean, std in cells if not is_missing(mean)]
    if present:
        low = min(mean - std for mean, std in present)
        high = max(mean + std for mean, std in present)
        ax.set_ylim(max(0.0, low - 5.0), min(100.0, high + 3.0))
