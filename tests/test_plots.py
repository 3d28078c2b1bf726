"""Figures from a fixture results tree: PNG + PDF written, missing cells not invented, empty figures skipped."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.collections import PolyCollection
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from defectseg.benchmarks.reporting.aggregate import collect_runs, main_runs
from defectseg.benchmarks.reporting.figure_style import bar_group, bar_limits, panels, theme, titled_legend
from defectseg.benchmarks.reporting.plots import MARK_COLORS, plot_critical_difference, plot_differences, plot_miou_vs_ratio, write_figures
from defectseg.benchmarks.reporting.results_view import ResultsView
from defectseg.benchmarks.reporting.statistics import cell_scores, cell_statistics, rank_analysis
from defectseg.benchmarks.reporting.table_format import ordered_cells
from defectseg.benchmarks.uaps_paper.figures import plot_lambdas, plot_mixing
from defectseg.benchmarks.uaps_paper.section import UapsPaperSection
from tests.fixtures_results import PROFILE, write_fixture_results

# no critical-difference diagram: the fixture's cells share datasets (NEU-Seg and DAGM at 10 % and 30 %)
FIGURES = ["miou_vs_ratio_standard", "miou_vs_ratio_paper", "difference_standard", "difference_paper", "validation_curves",
           "ablation_losses", "ablation_lambdas", "ablation_mixing", "ablation_aux_decoders"]


SECTIONS = [UapsPaperSection()]  # as run_all.py draws them


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_fixture_results(tmp_path_factory.mktemp("results"))


def _critical_difference(runs, profile):
    return plot_critical_difference(profile, "standard", rank_analysis(cell_scores(main_runs(runs), "miou")))


def test_every_figure_written_as_png_and_pdf(tree, tmp_path):
    written, notes = write_figures(ResultsView(tree), tmp_path, SECTIONS)
    assert sorted(p.name for p in written[PROFILE]) == sorted(f"{n}.{ext}" for n in FIGURES for ext in ("png", "pdf"))
    for path in written[PROFILE]:
        assert path.stat().st_size > 1000
    assert path.parent == tmp_path / PROFILE
    # profile "other" has no ablation runs: those figures are skipped with a note, not drawn
    assert sorted(p.stem for p in written["other"] if p.suffix == ".png") == ["miou_vs_ratio_paper", "miou_vs_ratio_standard", "validation_curves"]
    assert "profile other: figure ablation_losses skipped: nothing to draw (no runs it applies to, or too few paired units to test)" in notes
    assert not (tmp_path / "other" / "ablation_losses.png").exists()


def test_missing_cells_are_gaps_not_values(tree):
    runs = collect_runs(tree, PROFILE)
    fig = plot_miou_vs_ratio(runs, PROFILE, "paper", SECTIONS[0].published_points(), cell_statistics(main_runs(runs)), "supervised")
    dagm = next(ax for ax in fig.axes if ax.get_title() == "DAGM")
    mean_teacher = next(c for c in dagm.containers if isinstance(c, ErrorbarContainer) and c.get_label() == "mean_teacher")
    assert math.isnan(mean_teacher.lines[0].get_ydata()[1])  # no run at 30%: a gap
    assert "no runs: mean_teacher @ 30%" in dagm.get_xlabel()

    fig = plot_mixing(runs, PROFILE)
    ax = fig.axes[0]
    bars = [bar for container in ax.containers if isinstance(container, BarContainer) for bar in container]
    assert sorted(round(bar.get_height(), 2) for bar in bars) == [75.0, 76.0, 77.0, 80.0]  # 10% and 30% only
    assert sum(text.get_text() == "n/a" for text in ax.texts) == 2  # both mixings at 50%


def test_mixing_shows_the_papers_ratios_only_for_a_study_that_runs_them(tree):
    runs = collect_runs(tree, PROFILE)
    scarce = runs.assign(ratio=runs["ratio"].replace({0.1: 0.01, 0.3: 0.02, 0.5: 0.05}))
    ax = plot_mixing(scarce, PROFILE).axes[0]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["1%", "2%"]
    assert not any(text.get_text() == "n/a" for text in ax.texts)  # no slots for 10/30/50 % it never planned


def test_bars_and_their_error_bars_fit_the_value_axis():
    ax = Figure().add_subplot()
    cells = {"a": (66.0, 0.5), "b": (60.0, 12.0)}
    bar_group(ax, list(cells), ["ours"], lambda slot, group: cells[slot], ["C0"], ["ours"])
    bar_limits(ax, list(cells.values()))
    low, high = ax.get_ylim()
    assert low <= 60.0 - 12.0 and high >= 66.0 + 0.5  # the long error bar is not cut off


def test_figure_without_data_is_skipped(tree):
    runs = collect_runs(tree, PROFILE)
    no_ablation = runs[runs["method"] == runs["base_method"]]
    assert plot_lambdas(no_ablation, PROFILE) is None
    assert plot_mixing(no_ablation.iloc[0:0], PROFILE) is None
    only_lambda1 = runs[runs["method"] != "uaps_l2_0.5"]
    fig = plot_lambdas(only_lambda1, PROFILE)  # λ2 panel shows n/a instead of invented values
    assert fig is not None and any(text.get_text() == "n/a (no runs)" for text in fig.axes[1].texts)
    assert not fig.axes[1].get_lines()


def test_label_efficiency_bands_and_significance(tree):
    runs = collect_runs(tree, PROFILE)
    statistics = cell_statistics(main_runs(runs))
    fig = plot_miou_vs_ratio(runs, PROFILE, "paper", SECTIONS[0].published_points(), statistics, "supervised")
    neu = next(ax for ax in fig.axes if ax.get_title() == "NEU-Seg")
    bands = [c for c in neu.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 4  # one 95 % CI band per method
    cells = statistics.cells.set_index(["dataset", "ratio", "method", "protocol"])
    drawn = {round(y, 6) for y in bands[0].get_paths()[0].vertices[:, 1]}  # supervised, the first method
    for ratio in (0.1, 0.3):
        assert {round(v, 6) for v in cells.loc[("neu", ratio, "supervised", "paper"), ["ci_low", "ci_high"]]} <= drawn
    triangles = [line for line in neu.get_lines() if line.get_marker() == "^"]
    assert sorted(float(line.get_ydata()[0]) for line in triangles) == [75.0, 78.0]  # cps at 10% and 30%
    dagm = next(ax for ax in fig.axes if ax.get_title() == "DAGM")
    assert [float(line.get_ydata()[0]) for line in dagm.get_lines() if line.get_marker() == "^"] == [70.0]  # no records at 30%


def test_difference_forest_plot(tree):
    runs = collect_runs(tree, PROFILE)
    statistics = cell_statistics(main_runs(runs))
    fig = plot_differences(runs, PROFILE, "paper", statistics, "supervised")
    neu = next(ax for ax in fig.axes if ax.get_title() == "NEU-Seg, 10% labels")
    assert [t.get_text() for t in neu.get_yticklabels()] == ["cps", "mean_teacher", "uaps"]  # the baseline has no row
    cps = [line for line in neu.get_lines() if list(line.get_ydata()) in ([0, 0], [0])]  # its CI bar and its estimate
    assert len(cps) == 2 and all(line.get_color() == MARK_COLORS["▲"] for line in cps)
    assert [float(x) for line in cps for x in line.get_xdata()] == pytest.approx([3.0, 3.0, 3.0])
    assert "no test: mean_teacher (too few units); uaps (too few units)" in " ".join(neu.get_xlabel().split())
    n = statistics.comparisons.set_index(["dataset", "ratio", "protocol", "method"]).loc[("neu", 0.1, "paper", "cps"), "units"]
    assert [t.get_text() for t in neu.texts] == [f"n={n}"]  # the tested row shows its paired units; untested rows none
    no_records = runs[runs["profile"] == PROFILE].iloc[0:0]
    assert plot_differences(no_records, PROFILE, "paper", statistics, "supervised") is None


def test_critical_difference_diagram(tree):
    runs = collect_runs(tree, PROFILE)
    assert _critical_difference(runs, PROFILE) is None  # cells share datasets: not independent
    runs = runs[runs["ratio"] == 0.1]  # NEU-Seg and DAGM at 10 %: independent cells
    fig = _critical_difference(runs, PROFILE)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "uaps (1.00)" in texts and "(4.00) supervised" in texts and "CD = 3.32" in texts  # 2.569 sqrt(4 x 5 / (6 x 2))
    assert "Friedman χ² = 6.00" in fig._suptitle.get_text()
    assert _critical_difference(runs[runs["method"].isin(["supervised", "uaps"])], PROFILE) is None  # 2 methods


# five methods ranked 1..5 in three cells: two 4-method crossbars, whose set order depends on the hash seed
DRAW_CD = """
import sys
from pathlib import Path
import pandas as pd
from defectseg.benchmarks.reporting.figure_style import save
from defectseg.benchmarks.reporting.plots import plot_critical_difference
from defectseg.benchmarks.reporting.statistics import cell_scores, rank_analysis
methods = ["alpha", "bravo", "charlie", "delta", "echo"]
runs = pd.DataFrame([{"dataset": dataset, "ratio": 0.1, "method": m, "base_method": m, "miou": 90.0 - 5 * i - k}
                     for k, dataset in enumerate(("neu", "mtiles", "dagm")) for i, m in enumerate(methods)])
save(plot_critical_difference("tiny", "standard", rank_analysis(cell_scores(runs, "miou"))), Path(sys.argv[1]), "cd")
"""


@pytest.mark.process
def test_critical_difference_bytes_do_not_depend_on_the_hash_seed(tmp_path):
    root = Path(__file__).resolve().parents[1]
    outs = [tmp_path / f"seed{seed}" for seed in (0, 1)]
    procs = [subprocess.Popen([sys.executable, "-c", DRAW_CD, str(out)], cwd=root, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONHASHSEED": str(seed), "PYTHONPATH": str(root)})
             for seed, out in zip((0, 1), outs)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    for name in ("cd.png", "cd.pdf"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name


def test_validation_curves_read_every_runs_log(tree):
    from defectseg.benchmarks.reporting.aggregate import collect_runs
    from defectseg.benchmarks.reporting.plots import validation_curves

    runs = collect_runs(tree, PROFILE)
    curves = validation_curves(runs)
    assert len(curves) == 5 * len(runs)
    best = curves.loc[curves.groupby(["dataset", "ratio", "method", "seed"])["val_mdice"].idxmax(), "step"]
    assert set(best) == {40}


def test_validation_curves_legend_names_every_method_not_only_the_first_panels(tree):
    from defectseg.benchmarks.reporting.plots import plot_validation_curves

    runs = main_runs(collect_runs(tree, PROFILE))
    dataset, ratio = ordered_cells(runs)[0]
    in_first = (runs["dataset"] == dataset) & (runs["ratio"] == ratio)
    runs = runs[~in_first | (runs["method"] == "supervised")]  # the first panel holds one method, others all
    fig = plot_validation_curves(runs, PROFILE)
    legend_labels = [text.get_text() for legend in fig.legends for text in legend.get_texts()]
    assert sorted(legend_labels) == sorted(runs["method"].unique()) and len(legend_labels) > 1


def _panel_legends(fig: Figure) -> dict[str, list[tuple[str, object]]]:
    """title -> [(legend label, line colour)] of each panel."""
    return {ax.get_title(): [(text.get_text(), line.get_color()) for text, line in zip(ax.get_legend().get_texts(), ax.get_legend().get_lines())]
            for ax in fig.axes}


def test_validation_curves_of_uaps_ablations_have_a_panel_per_ablation_and_the_default_in_black(tree):
    from defectseg.benchmarks.reporting.plots import plot_validation_curves

    runs = collect_runs(tree, PROFILE)
    ablations = runs[runs["base_method"] == "uaps"].copy()
    ablations.loc[ablations["method"] == "uaps", "method"] = "uaps_full"  # the default run as a variant, as in a study
    legends = _panel_legends(plot_validation_curves(ablations, PROFILE, sections=SECTIONS))
    assert list(legends) == [f"{option}\nNEU-Seg, {ratio} labels" for option, ratio in [
        ("Loss terms", "10%"), ("λ1 (pseudo-label loss weight)", "10%"), ("λ2 (uncertainty loss weight)", "10%"),
        ("Pseudo-label mixing", "10%"), ("Pseudo-label mixing", "30%"), ("Auxiliary decoders D", "10%")]]
    decoders = legends["Auxiliary decoders D\nNEU-Seg, 10% labels"]
    assert [label for label, _ in decoders] == ["0", "1", "3 (default)"]
    assert decoders[-1][1] == "black" and "black" not in [color for _, color in decoders[:-1]]
    assert len({str(color) for _, color in decoders}) == 3


def test_validation_curves_of_variants_in_no_ablation_show_each_variant(tree):
    from defectseg.benchmarks.reporting.plots import plot_validation_curves

    runs = collect_runs(tree, PROFILE)
    variants = runs[runs["method"] != runs["base_method"]]  # no default run: lambda2 and mixing vary no more
    legends = _panel_legends(plot_validation_curves(variants, PROFILE, sections=SECTIONS))
    assert [label for label, _ in legends["λ1 (pseudo-label loss weight)\nNEU-Seg, 10% labels"]] == ["0", "0.3"]
    others = legends["Other variants\nNEU-Seg, 10% labels"]
    assert sorted(label for label, _ in others) == ["uaps_avg", "uaps_l2_0.5"]  # drawn, not dropped
    assert [label for label, _ in legends["Other variants\nNEU-Seg, 30% labels"]] == ["uaps_avg"]


def test_an_earlier_builds_figure_is_removed_when_it_is_no_longer_drawn(tree, tmp_path):
    stale = tmp_path / "other" / "ablation_losses.png"  # profile "other" has no ablation runs
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier build")
    written, notes = write_figures(ResultsView(tree, ["other"]), tmp_path, SECTIONS)
    assert not stale.exists() and written["other"]
    assert any("removed" in note and "ablation_losses.png" in note for note in notes)


def test_titled_legend_widens_a_narrow_figure_wraps_the_rest_and_balances_its_columns():
    with theme():
        fig, _ = panels(1, width=3.0)
        handles = [Line2D([], [], label=f"policy number {i}") for i in range(4)]
        titled_legend(fig, handles, "a title line far longer than one narrow panel " * 4 + "\nsecond line", columns=4, widest=6.0)
    legend = fig.legends[0]
    assert fig.get_figwidth() == 6.0  # widened, but no wider than allowed
    title_lines = legend.get_title().get_text().split("\n")
    assert len(title_lines) > 2 and title_lines[-1] == "second line"  # the long line wrapped, the break kept
    assert legend._ncols == 2  # four entries: not 3 + 1 but 2 + 2


def test_titled_legend_leaves_a_figure_wide_enough_for_its_title_alone():
    with theme():
        fig, _ = panels(3, width=4.0)
        titled_legend(fig, [Line2D([], [], label=name) for name in "abc"], "short title", columns=3)
    assert fig.get_figwidth() == 12.0 and fig.legends[0]._ncols == 3
    assert fig.legends[0].get_title().get_text() == "short title"
