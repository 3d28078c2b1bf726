"""The result tables in README.md and docs/ are the generated tables they name, not hand-typed numbers."""
import pytest

from defectseg.benchmarks.docs_tools.doc_tables import (
    DOCUMENTS, ROOT, cited_tables, stale_blocks, table_blocks, table_rows, unbacked_intervals, update_documents,
)

STUDY_TABLES = ROOT / "results" / "reference" / "label_scarcity" / "tables" / "label_scarcity"


def test_documents_match_the_committed_tables_they_name():
    assert stale_blocks() == [], "documents differ from the tables they name: run `make doc-tables`"
    names = [block.table.name for block in table_blocks(ROOT / "README.md")]
    assert "selection_standard.md" in names and "selection_paper.md" in names  # the headline: the second edition
    assert unbacked_intervals(ROOT / "README.md") == [], "the README's reading quotes intervals its tables no longer hold"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d.name)
def test_every_interval_a_document_quotes_is_in_a_table_it_cites(document):
    assert unbacked_intervals(document) == [], f"{document.name} quotes intervals that the tables it cites do not hold"


def _table(folder, name, rows):
    path = folder / name
    path.write_text("**Table: caption**\n\n| Method | A | B |\n| :-- | --: | --: |\n" + "".join(f"| {r} | +1.00 {r} | 2 |\n" for r in rows))
    return path


def test_update_rewrites_only_the_blocks_and_reports_them(tmp_path):
    _table(tmp_path, "first.md", ["x"])
    _table(tmp_path, "second.md", ["y", "z"])
    document = tmp_path / "README.md"
    document.write_text("intro\n<!-- table: first.md -->\n| old |\n<!-- /table -->\nmiddle\n"
                        "<!-- table: second.md | B | Method -->\n<!-- /table -->\nend\n")
    assert update_documents((document,), tmp_path) == ["README.md: " + str(tmp_path / "first.md"), "README.md: " + str(tmp_path / "second.md")]
    text = document.read_text()
    assert "| old |" not in text and "caption" not in text
    assert "<!-- table: first.md -->\n| Method | A | B |\n| :-- | --: | --: |\n| x | +1.00 x | 2 |\n<!-- /table -->" in text
    assert "<!-- table: second.md | B | Method -->\n| B | Method |\n| --: | :-- |\n| 2 | y |\n| 2 | z |\n<!-- /table -->" in text
    assert text.startswith("intro\n") and "\nmiddle\n" in text and text.endswith("end\n")
    assert update_documents((document,), tmp_path) == []  # now up to date
    assert stale_blocks((document,), tmp_path) == []


def test_missing_table_or_column_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.md"):
        table_rows(tmp_path / "nothere.md")
    table = _table(tmp_path, "t.md", ["x"])
    with pytest.raises(ValueError, match=r"t.md has no column\(s\) 'C'; its columns: 'Method', 'A', 'B'"):
        table_rows(table, ("Method", "C"))
    (tmp_path / "empty.md").write_text("no table\n")
    with pytest.raises(ValueError, match="empty.md holds no markdown table"):
        table_rows(tmp_path / "empty.md")


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


def test_a_reading_that_quotes_an_interval_the_tables_no_longer_hold_is_reported(tmp_path):
    _table(tmp_path, "first.md", ["x"])
    document = tmp_path / "README.md"
    document.write_text("<!-- table: first.md -->\n<!-- /table -->\nx leads by +1.00 [+0.50, +1.50]; "
                        "y by +2.00 [-0.25, +4.25] and again +2.00 [-0.25, +4.25]; z by +3.00 [+1.00,\n+5.00].\n")
    (tmp_path / "first.md").write_text((tmp_path / "first.md").read_text().replace("+1.00 x", "+1.00 [+0.50, +1.50]"))
    assert unbacked_intervals(document, tmp_path) == ["+2.00 [-0.25, +4.25]", "+3.00 [+1.00, +5.00]"]  # across a line too
    (tmp_path / "other.md").write_text("no blocks: +9.00 [+1.00, +2.00]\n")
    assert unbacked_intervals(tmp_path / "other.md", tmp_path) == []


def test_a_cited_folder_backs_the_prose_of_a_document_without_blocks(tmp_path):
    (tmp_path / "tables").mkdir()
    _table(tmp_path / "tables", "first.md", ["[+0.50, +1.50]"])
    document = tmp_path / "history.md"
    document.write_text("<!-- cites: tables -->\nx led by +1.00 [+0.50, +1.50], y by +2.00 [-0.25, +4.25].\n")
    assert cited_tables(document, tmp_path) == [tmp_path / "tables" / "first.md"]
    assert unbacked_intervals(document, tmp_path) == ["+2.00 [-0.25, +4.25]"]
    document.write_text("<!-- cites: gone -->\n")
    with pytest.raises(FileNotFoundError, match="gone"):
        cited_tables(document, tmp_path)
