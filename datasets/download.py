"""Fetch the public datasets into the data root (``make data``) and check their file counts.

    python -m datasets.download --data-root data                    # download pinned commits
    python -m datasets.download --data-root data --from-dir ../shared/data [--copy]

Downloads the GitHub archives of NEU-Seg and the magnetic-tile set at the commits recorded in
the data PROVENANCE.md into ``NEU_data/`` and ``MTiles_data/``, or, with ``--from-dir``,
symlinks (or copies) those folders from a local copy. Folders already present are kept. Then
every image/mask pair is counted against the upstream numbers. DAGM 2007 sits behind a licence
page and is not fetched.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from .base import DatasetError, resolve_data_root
from .mtiles import FREE, MTiles
from .neu import NEUSeg


class Source(NamedTuple):
    """A dataset folder and the GitHub commit it is downloaded from."""

    folder: str
    repo: str
    commit: str


SOURCES = (
    Source(NEUSeg.folder, "DHW-Master/NEU_Seg", "da8cebedb292beca4d101db8c442d5706fac3bfe"),
    Source(MTiles.folder, "abin24/Magnetic-tile-defect-datasets.", "c2f2f3a6e561a8cd8bff6e7c15bf1041ade78150"),
)
EXPECTED_COUNTS = {
    NEUSeg.name: {"train": 3630, "test": 840},
    MTiles.name: {"Blowhole": 115, "Break": 85, "Crack": 57, "Fray": 32, "Uneven": 103, FREE: 952},
}


def count_images(data_root: Path) -> dict[str, dict[str, int]]:
    """Image/mask pairs per NEU subset and per MTiles class folder (the layout is validated)."""
    neu = Counter(record.subset for record in NEUSeg(data_root).records())
    mtiles_dataset = MTiles(data_root, include_free=True)
    names = (FREE,) + mtiles_dataset.class_names[1:]
    mtiles = Counter(names[record.label] for record in mtiles_dataset.records())
    return {NEUSeg.name: dict(neu), MTiles.name: dict(mtiles)}


def check_counts(data_root: str | Path) -> dict[str, dict[str, int]]:
    """The counts of ``count_images``; a DatasetError listing every difference from upstream."""
    counts = count_images(Path(data_root))
    wrong = [
        f"{name} {part}: {counts[name].get(part, 0)} images, expected {expected}"
        for name, parts in EXPECTED_COUNTS.items()
        for part, expected in parts.items()
        if counts[name].get(part, 0) != expected
    ]
    if wrong:
        raise DatasetError(f"unexpected file counts under {Path(data_root).resolve()}: " + "; ".join(wrong))
    return counts


def download(source: Source, data_root: Path) -> None:
    """Download and unpack ``source`` into ``data_root/source.folder``."""
    url = f"https://codeload.github.com/{source.repo}/zip/{source.commit}"
    data_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_root, prefix=".download-") as scratch:
        archive = Path(scratch) / "archive.zip"
        print(f"downloading {url}", file=sys.stderr)
        try:
            with urllib.request.urlopen(url, timeout=60) as response, archive.open("wb") as file:
                shutil.copyfileobj(response, file)
        except (urllib.error.URLError, OSError) as error:
            raise DatasetError(
                f"cannot download {url} ({error}). Without network access, link a local copy: "
                f"python -m datasets.download --data-root {data_root} --from-dir PATH "
                f"(PATH contains {source.folder}/)"
            ) from error
        unpacked = Path(scratch) / "unpacked"
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(unpacked)
        except zipfile.BadZipFile as error:
            raise DatasetError(f"download of {url} is not a zip archive: {error}") from error
        tops = list(unpacked.iterdir())  # GitHub archives hold one <repo>-<commit>/ folder
        if len(tops) != 1:
            raise DatasetError(f"archive {url} holds {[top.name for top in tops]}, expected one folder")
        tops[0].rename(data_root / source.folder)


def link_from(source_dir: Path, folder: str, data_root: Path, copy: bool) -> None:
    """Symlink (or copy) ``source_dir/folder`` to ``data_root/folder``."""
    origin = source_dir.resolve() / folder
    if not origin.is_dir():
        raise DatasetError(f"--from-dir: missing folder {origin}")
    data_root.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copytree(origin, data_root / folder, symlinks=True)
    else:
        (data_root / folder).symlink_to(origin, target_is_directory=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.download", description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=None, help="default: $DEFECTSEG_DATA_ROOT or data/")
    parser.add_argument("--from-dir", type=Path, default=None, help="link the folders from this local copy")
    parser.add_argument("--copy", action="store_true", help="with --from-dir: copy instead of symlinking")
    args = parser.parse_args(argv)
    data_root = resolve_data_root(args.data_root)
    try:
        for source in SOURCES:
            if (data_root / source.folder).exists() or (data_root / source.folder).is_symlink():
                print(f"{data_root / source.folder} exists, kept", file=sys.stderr)
            elif args.from_dir is not None:
                link_from(args.from_dir, source.folder, data_root, args.copy)
            else:
                download(source, data_root)
        counts = check_counts(data_root)
    except (DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"data ready under {data_root.resolve()}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
