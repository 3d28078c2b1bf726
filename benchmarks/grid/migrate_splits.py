"""Replace the run folders' own ``split.json`` copies by references to shared split files.

    python -m defectseg.benchmarks.grid.migrate_splits RESULTS_DIR [RESULTS_DIR ...] [--dry-run]

Every run folder under ``RESULTS_DIR/runs`` that holds a ``split.json`` gets its split stored once
in ``RESULTS_DIR/splits/`` (``split_store``), a ``split.ref`` naming that file, and loses its copy.
Identical copies share one file. A run folder that is running (its lock held by a live process)
is left alone. Rerunning it changes nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from defectseg.datasets.splits import Split

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.split_store import record_split
from defectseg.benchmarks.engine.locks import FileLock


def migrate(results_dir: Path, dry_run: bool = False) -> tuple[list[Path], list[Path]]:
    """(run folders migrated, run folders skipped because a live process holds them) under ``results_dir``."""
    migrated, busy = [], []
    for copy in sorted(layout.runs_root(results_dir).glob(f"*/*/*/*/seed*/{layout.SPLIT}")):
        directory = copy.parent
        lock = FileLock(directory / layout.LOCK)
        if not dry_run and not lock.acquire():
            busy.append(directory)
            continue
        try:
            split = Split.from_json(copy)  # a DatasetError naming the file if it is not a split
            if not dry_run:
                record_split(directory, results_dir, split)
            migrated.append(directory)
        finally:
            if not dry_run:
                lock.release()
    return migrated, busy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results_dirs", nargs="+", type=Path, metavar="RESULTS_DIR", help="a folder holding runs/")
    parser.add_argument("--dry-run", action="store_true", help="only list the run folders that would be migrated")
    args = parser.parse_args(argv)
    for results_dir in args.results_dirs:
        if not layout.runs_root(results_dir).is_dir():
            print(f"error: {layout.runs_root(results_dir)} not found: expected a results directory", file=sys.stderr)
            return 2
        migrated, busy = migrate(results_dir, args.dry_run)
        files = sorted({p.name for p in layout.splits_dir(results_dir).glob("*.json")}) if not args.dry_run else []
        verb = "would migrate" if args.dry_run else "migrated"
        where = f" to {len(files)} split file(s) in {layout.splits_dir(results_dir)}" if files else ""
        print(f"{results_dir}: {verb} {len(migrated)} run folder(s){where}")
        for directory in busy:
            print(f"note: {directory} skipped: held by a running process", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
