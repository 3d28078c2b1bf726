"""The committed reference results rebuild byte for byte: tables, figures and report from their runs."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "results" / "reference"
BUILT = ("tables", "figures", "report")  # what `run_all.py report` writes into a results folder
COMMIT = re.compile(rb"git commit [0-9a-f]{40}( \(with uncommitted changes\))?")  # the page's provenance line


def _built_files(folder: Path) -> list[Path]:
    return sorted(path.relative_to(folder) for part in BUILT for path in (folder / part).rglob("*") if path.is_file())


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.parametrize("name", ["cpu", "label_scarcity", "label_scarcity_units"])
def test_committed_results_rebuild_byte_identical(name, tmp_path):
    committed = REFERENCE / name
    copy = tmp_path / name
    shutil.copytree(committed, copy, ignore=shutil.ignore_patterns(*BUILT))
    subprocess.run([sys.executable, str(ROOT / "run_all.py"), "report", "--results-dir", str(copy)], cwd=ROOT, check=True,
                   capture_output=True, text=True)

    expected = _built_files(committed)
    assert expected, f"{committed} has no built tables, figures or report"
    assert _built_files(copy) == expected
    for relative in expected:
        built, reference = (copy / relative).read_bytes(), (committed / relative).read_bytes()
        if relative.parts[0] == "report":  # the page names the folder and the commit it was built from
            built = COMMIT.sub(b"git commit", built.replace(str(copy).encode(), str(committed.relative_to(ROOT)).encode()))
            reference = COMMIT.sub(b"git commit", reference)
        assert built == reference, f"{relative} differs from the committed {committed / relative}"
