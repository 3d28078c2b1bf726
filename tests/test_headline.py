"""The README's headline tables are the study's generated difference tables, not hand-typed numbers."""
import pytest

from benchmarks.reporting.headline import STUDY_TABLES, stale_blocks, table_rows, update_readme


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
