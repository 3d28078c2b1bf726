"""Tables from a fixture results tree: files, a hand-checked cell, best marks, missing cells, paper numbers."""
import pandas as pd
import pytest
import scipy.stats

import run_all
from defectseg.benchmarks.reporting.aggregate import collect_failures, collect_runs
from defectseg.benchmarks.reporting.results_view import ResultsView
from defectseg.benchmarks.reporting.statistics import cell_scores, friedman_permutation_p
from defectseg.benchmarks.reporting.table_format import latex_escape, mean_std
from defectseg.benchmarks.reporting.tables import best_steps_table, write_tables
from defectseg.benchmarks.uaps_paper.ablations import ablation_runs, canonical_losses
from defectseg.benchmarks.uaps_paper.section import UapsPaperSection
from defectseg.benchmarks.uaps_paper.tables import ablation_cell, ablation_table
from tests.fixtures_results import FAILED, HAND_CHECKED, NO_RECORDS, PROFILE, write_fixture_results


def _write(root, out, profiles=None):
    """The files ``run_all.py tables`` writes (with the UAPS paper's section) per profile, and its notes."""
    built, notes = write_tables(ResultsView(root, profiles), out, [UapsPaperSection()])
    return {profile: tables.files for profile, tables in built.items()}, notes


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = write_fixture_results(tmp_path_factory.mktemp("results"))
    written, notes = _write(root, root / "tables")
    return root, written, notes


def _csv(root, name):
    return pd.read_csv(root / "tables" / PROFILE / f"{name}.csv")


def _row(markdown: str, first_cell: str) -> str:
    return next(line for line in markdown.splitlines() if line.startswith(f"| {first_cell} |"))


def test_every_table_in_three_formats(tree):
    root, written, _ = tree
    names = {p.stem for p in written[PROFILE]}
    assert {"main_standard", "main_paper", "difference_standard", "difference_paper", "best_steps",
            "significance_standard", "significance_paper", "ranks_standard", "ranks_paper",
            "per_class_iou_neu", "per_class_iou_dagm", "paper_main", "paper_losses",
            "paper_aux_decoders", "paper_cost", "ablation_losses", "ablation_lambda1", "ablation_lambda2",
            "ablation_mixing", "ablation_aux_decoders"} <= names
    for name in names:
        for ext in ("csv", "md", "tex"):
            assert (root / "tables" / PROFILE / f"{name}.{ext}").stat().st_size > 0
    caption = (root / "tables" / PROFILE / "main_paper.md").read_text().splitlines()[0]
    assert "64×64 images, 300 iterations, fp32" in caption  # the setup the runs used, precision included
    tex = (root / "tables" / PROFILE / "main_paper.tex").read_text()
    assert "\\blacktriangle" in tex and "▲" not in tex  # the mark of cps against supervised, in LaTeX
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex


@pytest.mark.parametrize("protocol, mean", [("standard", HAND_CHECKED["miou"]), ("paper", HAND_CHECKED["paper_miou"])])
def test_hand_checked_cell(tree, protocol, mean):
    root, _, _ = tree
    data = _csv(root, f"main_{protocol}")
    cell = data[(data["method"] == HAND_CHECKED["method"]) & (data["dataset"] == HAND_CHECKED["dataset"]) & (data["ratio"] == HAND_CHECKED["ratio"])]
    assert cell["miou_mean"].item() == pytest.approx(mean)
    assert cell["miou_std"].item() == pytest.approx(HAND_CHECKED["std"])
    assert cell["seeds"].item() == HAND_CHECKED["seeds"]
    markdown = (root / "tables" / PROFILE / f"main_{protocol}.md").read_text()
    assert f"{mean:.2f} ± 2.00 (n=3)" in _row(markdown, "supervised")


def test_best_per_column_marked(tree):
    root, _, _ = tree
    data = _csv(root, "main_standard")
    best = data[data["best"]]
    assert set(best["method"]) == {"uaps"} and len(best) == 4  # one per (dataset, ratio) column
    markdown = (root / "tables" / PROFILE / "main_standard.md").read_text()
    assert "**67.00 ± 1.41 (n=2)**" in _row(markdown, "uaps")
    assert "**" not in _row(markdown, "supervised")
    assert "\\textbf{67.00 $\\pm$ 1.41 (n=2)}" in (root / "tables" / PROFILE / "main_standard.tex").read_text()


def test_missing_cell_and_failed_seed(tree):
    root, _, _ = tree
    data = _csv(root, "main_paper")
    missing = data[(data["method"] == "mean_teacher") & (data["dataset"] == "dagm") & (data["ratio"] == 0.3)]
    assert missing["seeds"].item() == 0 and pd.isna(missing["miou_mean"].item()) and not missing["best"].item()
    row = _row((root / "tables" / PROFILE / "main_paper.md").read_text(), "mean_teacher")
    assert row.rstrip(" |").endswith("—")
    failed = data[(data["method"] == FAILED["method"]) & (data["dataset"] == FAILED["dataset"]) & (data["ratio"] == FAILED["ratio"])]
    assert failed["seeds"].item() == 1  # the failed seed is not counted
    failures = collect_failures(root)
    assert failures[["method", "seed", "status"]].values.tolist() == [[FAILED["method"], FAILED["seed"], "failed"]]
    assert FAILED["reason"] in failures["reason"].item()


def test_main_tables_mark_the_tests_against_the_baseline(tree):
    root, _, _ = tree
    markdown = (root / "tables" / PROFILE / "main_paper.md").read_text()
    assert "75.00 ± 2.00 (n=3) ▲" in _row(markdown, "cps")  # +3 on every image of every seed
    assert "▲" not in _row(markdown, "uaps") and "▲" not in _row(markdown, "supervised")  # 2 seeds; the baseline itself
    assert "73.00 ± 2.00 (n=3)" in _row(markdown, "cps") and "73.00 ± 2.00 (n=3) ▲" not in markdown  # no records at DAGM 30%
    data = _csv(root, "main_paper").set_index(["dataset", "ratio", "method"])
    assert data.loc[("neu", 0.1, "cps"), "mark"] == "▲" and data.loc[("neu", 0.1, "cps"), "diff"] == pytest.approx(3.0)
    assert data.loc[("neu", 0.1, "uaps"), "test_note"] == "too few units"
    assert data.loc[("neu", 0.1, "supervised"), "ci_low"] < 72 < data.loc[("neu", 0.1, "supervised"), "ci_high"]
    assert data.loc[(NO_RECORDS["dataset"], NO_RECORDS["ratio"], NO_RECORDS["method"]), "ci_note"] == "no per-image records"


def test_significance_table(tree):
    root, _, _ = tree
    markdown = (root / "tables" / PROFILE / "significance_paper.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| NEU-Seg | 10% |")]
    cps = next(r for r in rows if "| cps |" in r)
    assert "75.00 ± 2.00 (n=3)" in cps and "+3.00 [+3.00, +3.00] ▲ (MDE 0.00) | 0.000 | 0.89 |" in cps
    assert "too few units (n=2)" in next(r for r in rows if "| uaps |" in r)
    assert "(baseline)" in next(r for r in rows if "| supervised |" in r)
    no_records = next(line for line in markdown.splitlines() if line.startswith("| DAGM | 30% | cps |"))
    assert no_records.count("no per-image records") == 2  # no CI of the mean, no test; mean ± std stays
    assert "73.00 ± 2.00 (n=3)" in no_records
    data = _csv(root, "significance_paper").set_index(["dataset", "ratio", "method"])
    assert data.loc[("neu", 0.1, "cps"), "vs_supervised_p_improvement"] == pytest.approx(8 / 9, abs=1e-4)
    assert data.loc[("neu", 0.1, "cps"), "vs_supervised_units"] == 3
    other = (root / "tables" / "other" / "significance_paper.md").read_text()  # runs from before per-image records
    assert "| NEU-Seg | 10% | supervised | 60.00 (n=1) | no per-image records |" in other


def test_difference_table_is_the_headline_view(tree):
    root, _, _ = tree
    markdown = (root / "tables" / PROFILE / "difference_paper.md").read_text()
    assert "Difference from supervised" in markdown.splitlines()[0]
    assert not any(line.startswith("| supervised |") for line in markdown.splitlines())  # no difference row for the baseline
    assert _row(markdown, "supervised (mIoU)").split(" | ")[1] == "72.00 ± 2.00 (n=3)"  # its own mIoU instead, hand-checked
    assert _row(markdown, "cps").split(" | ")[1] == "+3.00 [+3.00, +3.00] ▲ (MDE 0.00)"  # NEU-Seg 10 %, the first column
    assert "too few units (n=2)" in _row(markdown, "uaps")
    assert _row(markdown, "mean_teacher").rstrip(" |").endswith("—")  # no run at DAGM 30 %
    data = _csv(root, "difference_paper").set_index(["dataset", "ratio", "method"])
    assert data.loc[("neu", 0.1, "cps"), "diff"] == pytest.approx(3.0) and data.loc[("neu", 0.1, "cps"), "mark"] == "▲"
    assert set(data["baseline"]) == {"supervised"}


def test_best_steps_count_late_peaks():
    runs = pd.DataFrame([{"profile": "p", "dataset": "neu", "ratio": 0.02, "method": m, "base_method": m, "seed": seed,
                          "best_step": step, "iterations": 5000, "image_size": 64, "precision": "bf16"}
                         for m, steps in (("supervised", (3800, 4200, 4500)), ("uaps", (4000, 4600, 5000)))
                         for seed, step in enumerate(steps)])
    table = best_steps_table(runs, "p")
    assert table.rows == [["supervised", "3,800–4,500 (0 of 3 late)"], ["uaps", "4,000–5,000 (2 of 3 late)"]]
    assert table.data["late"].tolist() == [False, False, False, False, True, True]
    # an ablation profile holds only variants: their best steps are reported too (was training long enough?)
    variants = runs.assign(method=runs["method"].map({"supervised": "uaps_d0", "uaps": "uaps_full"}), base_method="uaps")
    assert best_steps_table(variants, "p").rows == [["uaps_d0", "3,800–4,500 (0 of 3 late)"], ["uaps_full", "4,000–5,000 (2 of 3 late)"]]


def test_ranks_table(tree):
    root, _, _ = tree
    data = _csv(root, "ranks_standard")
    assert data["method"].tolist() == ["uaps", "cps", "mean_teacher", "supervised"]
    assert data["average_rank"].tolist() == [1.0, 2.0, 3.0, 4.0] and data["cells"].eq(3).all()  # DAGM 30% lacks mean_teacher
    scores = cell_scores(collect_runs(root, PROFILE).query("method == base_method"), "miou").dropna()
    expected = scipy.stats.friedmanchisquare(*(scores[m] for m in data["method"]))
    assert data["friedman_statistic"].iloc[0] == pytest.approx(expected.statistic)
    # NEU-Seg 10 % and 30 % share a test set: permuted together, and no Nemenyi test
    groups = [dataset for dataset, _ in scores.index]
    assert data["friedman_p"].iloc[0] == pytest.approx(friedman_permutation_p(scores[data["method"]].to_numpy(), groups)[1], abs=1e-4)
    assert data["critical_difference"].isna().all()
    assert set(data["differs_from_best"]) == {"—"}
    markdown = (root / "tables" / PROFILE / "ranks_standard.md").read_text()
    assert "left out (not every method ran): DAGM 30%" in markdown and "Friedman χ² = 9.00" in markdown
    assert "permutation p" in markdown and "share a dataset" in markdown


def test_baseline_option(tree, tmp_path):
    root, _, _ = tree
    assert run_all.main(["tables", "--results-dir", str(root), "--profile", PROFILE, "--out", str(tmp_path), "--baseline", "mean_teacher"]) == 0
    header = (tmp_path / PROFILE / "significance_standard.md").read_text().splitlines()[2]
    assert "Δ vs supervised [95 % CI]" in header and "Δ vs mean_teacher [95 % CI]" in header
    caption, *rows = (tmp_path / PROFILE / "main_standard.md").read_text().splitlines()
    assert "marks against mean_teacher" in caption and "▲" not in "".join(rows)  # mean_teacher has one seed: no test


def test_paper_numbers_beside_ours(tree):
    root, _, _ = tree
    main = (root / "tables" / PROFILE / "paper_main.md").read_text()
    assert f"profile {PROFILE}" in main
    neu_supervised = next(line for line in main.splitlines() if "NEU-Seg" in line and "supervised" in line)
    assert "72.93" in neu_supervised and "72.00 ± 2.00 (n=3)" in neu_supervised and "-0.93" in neu_supervised
    dagm_uaps = next(line for line in main.splitlines() if "DAGM" in line and "uaps" in line)
    assert "74.50" in dagm_uaps and "72.00 ± 1.41 (n=2)" in dagm_uaps
    losses = (root / "tables" / PROFILE / "paper_losses.md").read_text()
    assert "75.32" in _row(losses, "ℓ_seg + ℓ_un") and "—" in _row(losses, "ℓ_seg + ℓ_un")  # no run of that combination
    assert "75.48" in _row(losses, "ℓ_seg + ℓ_ps") and "73.00 (n=1)" in _row(losses, "ℓ_seg + ℓ_ps")
    decoders = (root / "tables" / PROFILE / "paper_aux_decoders.md").read_text()
    assert _row(decoders, "2").count("—") == 2 and "75.40" in _row(decoders, "2")
    cost = _csv(root, "paper_cost")
    assert cost.set_index("aux_decoders").loc[1, "paper_params_m"] == pytest.approx(2.45)
    assert cost.set_index("aux_decoders").loc[1, "ours_ensemble_gmacs_256"] == pytest.approx(0.38 * 16)


def test_ablations_read_options_not_names(tree):
    root, _, _ = tree
    runs = collect_runs(root, PROFILE)
    lambda1 = ablation_runs(runs, "lambda1")
    assert sorted(set(lambda1["value"])) == [0.0, 0.1, 0.3]
    assert set(lambda1["method"]) == {"uaps", "uaps_l1_0", "uaps_l1_0.3"}
    mixing = _csv(root, "ablation_mixing")
    assert set(mixing["mixing"]) == {"dynamic", "average"}
    assert _row((root / "tables" / PROFILE / "ablation_losses.md").read_text(), "ℓ_seg").count("(n=1)") == 1
    assert "(default)" in _row((root / "tables" / PROFILE / "ablation_lambda1.md").read_text(), "0.1 (default)")
    lambda1 = _csv(root, "ablation_lambda1").set_index(["dataset", "ratio", "lambda1"])
    assert lambda1.loc[("neu", 0.1, 0.0), "test_note"] == "too few units"  # one seed against the default's two
    assert pd.isna(lambda1.loc[("neu", 0.1, 0.1), "test_note"])  # the default itself is not tested
    for name in ("ablation_lambda1", "ablation_mixing", "main_standard", "significance_paper"):
        assert "nan" not in (root / "tables" / PROFILE / f"{name}.md").read_text()


def test_ablation_default_run_as_a_variant_is_still_the_default(tree):
    """A profile of variants only (the default run as ``uaps_full``) reads every setting against it, as with plain runs."""
    root, _, _ = tree
    runs = collect_runs(root, PROFILE)
    as_variant = runs.assign(method=runs["method"].where(runs["method"] != "uaps", "uaps_full"))
    plain, variant = ablation_table(runs, PROFILE, "lambda1"), ablation_table(as_variant, PROFILE, "lambda1")
    assert variant.rows == plain.rows and any("(default)" in row[0] for row in variant.rows)
    columns = ["diff", "diff_ci_low", "diff_ci_high", "mark", "test_note"]
    pd.testing.assert_frame_equal(variant.data[columns], plain.data[columns])
    assert set(ablation_runs(as_variant, "lambda1").query("reference")["method"]) == {"uaps_full"}


def test_an_ablation_cell_gives_the_paired_difference_from_the_default_where_it_was_tested():
    entry = {"paper_miou_mean": 66.07, "paper_miou_std": 0.6704, "seeds": 3, "diff": -0.3062, "diff_ci_low": -0.8322,
             "diff_ci_high": 0.1734, "mark": "·", "mde": 2.104}
    assert ablation_cell(pd.Series(entry)) == "66.07 ± 0.67 (n=3); -0.31 [-0.83, +0.17] · (MDE 2.10)"
    untested = {**entry, "seeds": 1, "paper_miou_std": float("nan"), "diff": float("nan"), "mark": ""}
    assert ablation_cell(pd.Series(untested)) == "66.07 (n=1)"  # too few units: no difference shown


def test_the_decoder_ablation_reads_each_d_against_the_default(tree):
    root, _, _ = tree
    markdown = (root / "tables" / PROFILE / "ablation_aux_decoders.md").read_text()
    assert "| Main | Main vs default |" in markdown
    assert "too few units" in _row(markdown, "NEU-Seg | 10% | 0")  # one seed of D = 0 against two of the default
    assert _row(markdown, "NEU-Seg | 10% | 3 (default)").count("|  |") == 1  # the default is not tested against itself
    decoders = _csv(root, "ablation_aux_decoders").set_index("aux_decoders")
    assert decoders.loc[1, "main_note"] == "too few units" and pd.isna(decoders.loc[3, "main_note"])


def test_profile_selection_and_command_line(tree, tmp_path):
    root, written, _ = tree
    assert set(written) == {PROFILE, "other"}
    assert run_all.main(["tables", "--results-dir", str(root), "--profile", "other", "--out", str(tmp_path)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["other"]
    assert (tmp_path / "other" / "main_paper.md").exists() and not (tmp_path / "other" / "ablation_losses.md").exists()
    assert run_all.main(["tables", "--results-dir", str(tmp_path / "nothing")]) == 1


def test_helpers():
    assert canonical_losses(["un", "ups"]) == "seg+ups+un"
    assert canonical_losses([]) == "seg"
    assert canonical_losses("ps+un") == "seg+ps+un"
    assert mean_std(float("nan"), float("nan"), 0) == "—"
    assert mean_std(1.234, float("nan"), 1) == "1.23 (n=1)"
    assert latex_escape("ℓ_seg 50% ± 1") == "$\\ell$\\_seg 50\\% $\\pm$ 1"


def test_unreadable_metrics_named_in_the_error(tmp_path, capsys):
    run = tmp_path / "runs" / "p" / "neu" / "0.1" / "supervised" / "seed0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text("{not json")
    assert run_all.main(["tables", "--results-dir", str(tmp_path)]) == 2
    assert str(run / "metrics.json") in capsys.readouterr().err


def test_an_earlier_builds_table_is_removed_not_left_beside_the_new_ones(tree, tmp_path):
    out = tmp_path / "tables"
    (out / PROFILE).mkdir(parents=True)
    stale = [out / PROFILE / "per_class_iou_gone.md", out / PROFILE / "per_class_iou_gone.csv"]
    for path in stale:
        path.write_text("from runs that are no longer there\n")
    keep = out / PROFILE / "notes.txt"  # not a table format: not ours to remove
    keep.write_text("mine\n")
    written, notes = _write(tree[0], out, [PROFILE])
    assert written[PROFILE] and all(path.exists() for path in written[PROFILE])
    assert not any(path.exists() for path in stale) and keep.exists()
    assert any("removed" in note and "per_class_iou_gone.md" in note for note in notes)
