"""Figures from a fixture results tree: PNG + PDF written, missing cells not invented, empty figures skipped."""
import math

import pytest
from matplotlib.container import BarContainer, ErrorbarContainer

from benchmarks.aggregate import collect_runs
from benchmarks.plots import plot_lambdas, plot_miou_vs_ratio, plot_mixing, write_figures
from benchmarks.tables import load_paper_reference
from tests.fixtures_results import PROFILE, write_fixture_results

FIGURES = ["miou_vs_ratio_standard", "miou_vs_ratio_paper", "ablation_losses", "ablation_lambdas", "ablation_mixing", "ablation_aux_decoders"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_fixture_results(tmp_path_factory.mktemp("results"))


def test_every_figure_written_as_png_and_pdf(tree, tmp_path):
    written, notes = write_figures(tree, tmp_path)
    assert sorted(p.name for p in written[PROFILE]) == sorted(f"{n}.{ext}" for n in FIGURES for ext in ("png", "pdf"))
    for path in written[PROFILE]:
        assert path.stat().st_size > 1000
    assert path.parent == tmp_path / PROFILE
    # profile "other" has no ablation runs: those figures are skipped with a note, not drawn
    assert sorted(p.stem for p in written["other"] if p.suffix == ".png") == ["miou_vs_ratio_paper", "miou_vs_ratio_standard"]
    assert "profile other: figure ablation_losses skipped: no matching runs" in notes
    assert not (tmp_path / "other" / "ablation_losses.png").exists()


def test_missing_cells_are_gaps_not_values(tree):
    runs = collect_runs(tree, PROFILE)
    fig = plot_miou_vs_ratio(runs, PROFILE, "paper", load_paper_reference())
    dagm = next(ax for ax in fig.axes if ax.get_title() == "DAGM")
    mean_teacher = next(c for c in dagm.containers if isinstance(c, ErrorbarContainer) and c.get_label() == "mean_teacher")
    assert math.isnan(mean_teacher.lines[0].get_ydata()[1])  # no run at 30%: a gap
    assert "no runs: mean_teacher @ 30%" in dagm.get_xlabel()

    fig = plot_mixing(runs, PROFILE)
    ax = fig.axes[0]
    bars = [bar for container in ax.containers if isinstance(container, BarContainer) for bar in container]
    assert sorted(round(bar.get_height(), 2) for bar in bars) == [75.0, 76.0, 77.0, 80.0]  # 10% and 30% only
    assert sum(text.get_text() == "n/a" for text in ax.texts) == 2  # both mixings at 50%


def test_figure_without_data_is_skipped(tree):
    runs = collect_runs(tree, PROFILE)
    no_ablation = runs[runs["method"] == runs["base_method"]]
    assert plot_lambdas(no_ablation, PROFILE) is None
    assert plot_mixing(no_ablation.iloc[0:0], PROFILE) is None
    only_lambda1 = runs[runs["method"] != "uaps_l2_0.5"]
    fig = plot_lambdas(only_lambda1, PROFILE)  # λ2 panel shows n/a instead of invented values
    assert fig is not None and any(text.get_text() == "n/a (no runs)" for text in fig.axes[1].texts)
    assert not fig.axes[1].get_lines()
