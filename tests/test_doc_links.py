"""Every relative link in the README, the changelog and docs/ leads somewhere: the file exists and, for a Markdown
anchor, the target has that heading (GitHub's heading ids)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)
FENCE = re.compile(r"```.*?```", re.DOTALL)


def heading_ids(path: Path) -> set[str]:
    """GitHub's ids of a Markdown file's headings: lower case, punctuation dropped, spaces to hyphens, -1, -2 ... on repeats."""
    ids, seen = set(), {}
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        base = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        ids.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return ids


def broken_links(document: Path) -> list[str]:
    broken = []
    for target in LINK.findall(FENCE.sub("", document.read_text())):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked here (no network in tests)
            continue
        path, _, anchor = target.partition("#")
        file = (document.parent / path) if path else document
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in heading_ids(file):
            broken.append(f"{target} (no such heading)")
    return broken


def test_heading_ids_follow_github():
    assert heading_ids(ROOT / "docs" / "study.md") >= {"first-edition", "neu-seg-5--labels-cut", "second-edition"}


def test_every_relative_link_resolves():
    broken = {str(d.relative_to(ROOT)): links for d in DOCUMENTS if (links := broken_links(d))}
    assert broken == {}, f"links that lead nowhere: {broken}"


def test_a_missing_file_or_heading_is_named(tmp_path):
    (tmp_path / "other.md").write_text("# Title\n\n## A section, with words\n")
    document = tmp_path / "doc.md"
    document.write_text("[ok](other.md#a-section-with-words) [file](gone.md) [heading](other.md#nothing) "
                        "[web](https://example.org/x)\n```\n[in code](ignored.md)\n```\n")
    assert broken_links(document) == ["gone.md (no such file)", "other.md#nothing (no such heading)"]
