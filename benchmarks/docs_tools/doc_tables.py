"""Result tables in the documents, copied from the generated ones, so no number in a document is typed by hand.

A document (``README.md``, ``docs/*.md``) holds a generated table between two markers::

    <!-- table: results/reference/label_scarcity/tables/label_scarcity/difference_standard.md -->
    | Method | NEU-Seg 1% | ...
    <!-- /table -->

The path is relative to the repository root and names a table ``run_all.py tables`` wrote; the
block holds its header, rule and rows, without the caption. After the path, ``|``-separated column
names keep only those columns, in that order (``<!-- table: PATH | Method | validation budget -->``).
A document whose prose also quotes tables it holds no block of names their folder once, on a line of its own:
``<!-- cites: results/reference/label_scarcity/tables/label_scarcity -->``.
``python -m defectseg.benchmarks.docs_tools.doc_tables`` (``make doc-tables``) rewrites the blocks
that differ from their tables; ``stale_blocks`` tells a test which do, and ``unbacked_intervals``
which intervals the prose around them quotes that the tables no longer hold.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
BLOCK = re.compile(r"<!-- table: (?P<spec>[^\n]*?) -->\n(?P<body>.*?)<!-- /table -->", re.S)
CITES = re.compile(r"^<!-- cites: (?P<path>[^\n]*?) -->$", re.M)  # on a line of its own
INTERVAL = re.compile(r"[+-]\d+\.\d+ \[[+-]\d+\.\d+, [+-]\d+\.\d+\]")


@dataclass(frozen=True)
class TableBlock:
    """One marked block of a document: the table it copies and the columns it keeps (all when empty)."""

    document: Path
    table: Path
    columns: tuple[str, ...]
    body: str
    span: tuple[int, int]  # of the body in the document's text

    @property
    def name(self) -> str:
        return f"{self.document.name}: {self.table.relative_to(ROOT) if self.table.is_relative_to(ROOT) else self.table}"


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split(" | ")]


def table_rows(table: Path, columns: tuple[str, ...] = ()) -> str:
    """The table lines (header, rule, rows) of a generated markdown table, without its caption; only
    ``columns`` (by header name, in that order) when given."""
    if not table.is_file():
        raise FileNotFoundError(f"{table} not found: build the tables first (run_all.py report or tables)")
    lines = [line for line in table.read_text().splitlines() if line.startswith("|")]
    if not lines:
        raise ValueError(f"{table} holds no markdown table")
    if not columns:
        return "".join(line + "\n" for line in lines)
    header = _cells(lines[0])
    missing = [column for column in columns if column not in header]
    if missing:
        raise ValueError(f"{table} has no column(s) {', '.join(map(repr, missing))}; its columns: {', '.join(map(repr, header))}")
    keep = [header.index(column) for column in columns]
    return "".join("| " + " | ".join(_cells(line)[i] for i in keep) + " |\n" for line in lines)


def table_blocks(document: Path, root: Path = ROOT) -> list[TableBlock]:
    """The marked blocks of ``document``, their paths resolved against ``root``."""
    text = Path(document).read_text()
    blocks = []
    for match in BLOCK.finditer(text):
        path, *columns = (part.strip() for part in match["spec"].split("|"))
        blocks.append(TableBlock(Path(document), root / path, tuple(columns), match["body"], match.span("body")))
    return blocks


def _stale(document: Path, root: Path) -> list[tuple[TableBlock, str]]:
    """The blocks of ``document`` whose contents differ from their tables, each with the rows it should hold."""
    return [(block, rows) for block in table_blocks(document, root) if block.body != (rows := table_rows(block.table, block.columns))]


def stale_blocks(documents: tuple[Path, ...] = DOCUMENTS, root: Path = ROOT) -> list[str]:
    """The blocks (``document: table``) whose contents differ from their tables."""
    return [block.name for document in documents for block, _ in _stale(document, root)]


def update_documents(documents: tuple[Path, ...] = DOCUMENTS, root: Path = ROOT) -> list[str]:
    """Rewrite the stale blocks of ``documents``; returns their names."""
    updated = []
    for document in documents:
        stale = _stale(document, root)
        text = Path(document).read_text()
        for block, rows in reversed(stale):  # from the end, so earlier spans stay valid
            text = text[: block.span[0]] + rows + text[block.span[1]:]
        if stale:
            Path(document).write_text(text)
        updated += [block.name for block, _ in stale]
    return updated


def cited_tables(document: Path, root: Path = ROOT) -> list[Path]:
    """The generated markdown tables ``document``'s prose may quote: those its blocks name, and those in the
    folders its ``cites`` markers name."""
    text = Path(document).read_text()
    folders = [root / match["path"].strip() for match in CITES.finditer(text)]
    missing = [folder for folder in folders if not folder.is_dir()]
    if missing:
        raise FileNotFoundError(f"{document}: cited folder(s) {', '.join(map(str, missing))} not found")
    return [block.table for block in table_blocks(document, root)] + [table for folder in folders for table in sorted(folder.glob("*.md"))]


def unbacked_intervals(document: Path, root: Path = ROOT) -> list[str]:
    """The differences with intervals (``+3.36 [+2.25, +4.48]``) quoted in ``document``'s prose,
    outside its blocks, that none of the tables it cites holds (``cited_tables``): a reading gone stale.
    A document that cites no table is not checked."""
    prose = " ".join(BLOCK.sub("", Path(document).read_text()).split())  # an interval may break across lines
    cited = cited_tables(document, root)
    tables = "".join(table.read_text() for table in cited if table.is_file())
    return [quote for quote in dict.fromkeys(INTERVAL.findall(prose)) if quote not in tables] if cited else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("documents", nargs="*", type=Path, help="markdown files (default: README.md and docs/*.md)")
    args = parser.parse_args(argv)
    documents = tuple(args.documents) or DOCUMENTS
    updated = update_documents(documents)
    print("\n".join(f"updated {name}" for name in updated) if updated else "document tables up to date")
    stale = [f"{document.name}: {quote}" for document in documents for quote in unbacked_intervals(document)]
    if stale:
        print("intervals quoted in the prose that the tables no longer hold (update the reading):\n  " + "\n  ".join(stale))
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
