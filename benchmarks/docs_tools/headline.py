"""The README's headline tables, copied from the study's generated difference tables.

The README holds, between ``<!-- headline:<protocol> -->`` and ``<!-- /headline:<protocol> -->``,
the rows of ``difference_<protocol>.md`` as ``run_all.py tables`` wrote them, so its numbers are
never typed by hand. ``python -m defectseg.benchmarks.docs_tools.headline`` (``make headline``) rewrites the
blocks; ``stale_blocks`` tells a test whether they still match the tables.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from defectseg.benchmarks.reporting.table_format import PROTOCOLS

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
STUDY_TABLES = ROOT / "results" / "reference" / "label_scarcity" / "tables" / "label_scarcity"


def _pattern(protocol: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- headline:{protocol} -->\n)(.*?)(<!-- /headline:{protocol} -->)", re.S)


def table_rows(tables_dir: Path, protocol: str) -> str:
    """The table lines (header, rule, rows) of ``difference_<protocol>.md``, without its caption."""
    path = Path(tables_dir) / f"difference_{protocol}.md"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: build the study's tables first (run_all.py tables)")
    return "".join(line + "\n" for line in path.read_text().splitlines() if line.startswith("|"))


def _block(readme: str, protocol: str) -> re.Match[str]:
    match = _pattern(protocol).search(readme)
    if match is None:
        raise ValueError(f"README has no <!-- headline:{protocol} --> ... <!-- /headline:{protocol} --> block")
    return match


def _stale(readme: str, tables_dir: Path) -> dict[str, str]:
    """Protocol -> the generated rows, for each README block that differs from them."""
    generated = {protocol: table_rows(tables_dir, protocol) for protocol in PROTOCOLS}
    return {protocol: rows for protocol, rows in generated.items() if _block(readme, protocol).group(2) != rows}


def stale_blocks(readme_path: Path = README, tables_dir: Path = STUDY_TABLES) -> list[str]:
    """The protocols whose README block differs from the generated table."""
    return list(_stale(Path(readme_path).read_text(), tables_dir))


def update_readme(readme_path: Path = README, tables_dir: Path = STUDY_TABLES) -> list[str]:
    """Rewrite the stale blocks; returns their protocols."""
    readme = Path(readme_path).read_text()
    stale = _stale(readme, tables_dir)
    for protocol, rows in stale.items():
        block = _block(readme, protocol)
        readme = readme[: block.start(2)] + rows + readme[block.end(2):]
    if stale:
        Path(readme_path).write_text(readme)
    return list(stale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--tables", type=Path, default=STUDY_TABLES, help="folder holding difference_<protocol>.md")
    args = parser.parse_args(argv)
    updated = update_readme(args.readme, args.tables)
    print(f"{args.readme}: headline {', '.join(updated)} updated from {args.tables}" if updated else f"{args.readme}: headline up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
