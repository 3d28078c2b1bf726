"""The README's headline tables are the study's generated difference tables, not hand-typed numbers."""
import pytest

from defectseg.benchmarks.docs_tools.headline import STUDY_TABLES, stale_blocks, table_rows, update_readme


def test_readme_headline_matches_the_committed_study_tables():
    assert stale_blocks() == [], f"README headline differs from {STUDY_TABLES}: run `make headline`"
    assert "| supervised (mIoU) |" in table_rows(STUDY_TABLES, "standard")


def test_update_rewrites_only_the_blocks_and_reports_them(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    for protocol in ("standard", "paper"):
        (tables / f"difference_{protocol}.md").write_text(f"**Table: caption**\n\n| Method | A |\n| :-- | --: |\n| x | +1.00 {protocol} |\n")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- headline:standard -->\n| old |\n<!-- /headline:standard -->\nmiddle\n"
                      "<!-- headline:paper -->\n<!-- /headline:paper -->\nend\n")
    assert update_readme(readme, tables) == ["standard", "paper"]
    text = readme.read_text()
    assert "| old |" not in text and "caption" not in text
    assert "<!-- headline:standard -->\n| Method | A |\n| :-- | --: |\n| x | +1.00 standard |\n<!-- /headline:standard -->" in text
    assert text.startswith("intro\n") and "\nmiddle\n" in text and text.endswith("end\n")
    assert update_readme(readme, tables) == []  # now up to date


def test_missing_block_or_table_is_named(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    with pytest.raises(ValueError, match="headline:standard"):
        stale_blocks(readme, STUDY_TABLES)
    with pytest.raises(FileNotFoundError, match="difference_standard.md"):
        table_rows(tmp_path, "standard")


def test_the_committed_marks_are_what_the_procedure_gives_and_depend_on_no_random_seed():
    """The committed study's difference tables equal the statistics recomputed from its per-image records;
    the only random numbers (the Friedman permutations) move the rank test's p-value by Monte-Carlo error only."""
    import numpy as np
    import pandas as pd

    from defectseg.benchmarks.reporting.aggregate import collect_runs, main_runs
    from defectseg.benchmarks.reporting.statistics import cell_scores, cell_statistics, friedman_permutation_p

    results = STUDY_TABLES.parents[1]
    runs = main_runs(collect_runs(results, "label_scarcity"))
    comparisons = cell_statistics(runs).comparisons
    for protocol in ("standard", "paper"):
        committed = pd.read_csv(STUDY_TABLES / f"difference_{protocol}.csv").set_index(["dataset", "ratio", "method"])
        ours = comparisons[comparisons["protocol"] == protocol].set_index(["dataset", "ratio", "method"])
        assert (ours.loc[committed.index, "mark"] == committed["mark"]).all()
        np.testing.assert_allclose(ours.loc[committed.index, ["diff", "diff_ci_low", "diff_ci_high", "p_holm"]],
                                   committed[["diff", "diff_ci_low", "diff_ci_high", "p_holm"]], atol=1e-3)
    scores = cell_scores(runs, "paper_miou")
    groups = [dataset for dataset, _ in scores.index]
    p_values = [friedman_permutation_p(scores.to_numpy(), groups, seed=seed)[1:] for seed in (1, 2, 3)]
    assert max(p for p, _ in p_values) - min(p for p, _ in p_values) < 6 * max(error for _, error in p_values)
