"""The installed distribution keeps to its own top-level name: it installs beside a distribution named ``datasets``."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "run_all.py", "defectseg", "benchmarks", "datasets", "methods"]

CHECK = """
import datasets, defectseg.datasets
from defectseg.methods import available_methods
assert datasets.ORIGIN == "another distribution", datasets.__file__
assert defectseg.datasets.__file__.startswith(r"{target}"), defectseg.datasets.__file__
assert "uaps" in available_methods()
print("ok")
"""


def _install(source: Path, target: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(target), str(source)], check=True, capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.process
def test_installs_beside_a_distribution_named_datasets(tmp_path):
    other = tmp_path / "other"  # stands in for Hugging Face's `datasets`: only its name matters here
    (other / "datasets").mkdir(parents=True)
    (other / "datasets" / "__init__.py").write_text('ORIGIN = "another distribution"\n')
    (other / "pyproject.toml").write_text('[project]\nname = "datasets"\nversion = "1.0"\n'
                                          '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n')
    project = tmp_path / "project"  # a copy, so the build leaves no egg-info or build/ in the clone
    project.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, project / name)
    target = tmp_path / "site"
    _install(other, target)
    _install(project, target)

    top_level = {path.name for path in target.iterdir() if not path.name.endswith(".dist-info")}
    assert top_level - {"bin", "__pycache__"} == {"datasets", "defectseg", "run_all.py"}
    assert (target / "defectseg" / "methods" / "uaps.py").is_file()
    assert (target / "defectseg" / "benchmarks" / "configs" / "smoke.yaml").is_file()
    assert (target / "defectseg" / "benchmarks" / "uaps_paper" / "paper_reference.yaml").is_file()  # the paper's numbers
    assert (target / "defectseg" / "benchmarks" / "engine" / "pictures.py").is_file()
    assert (target / "defectseg" / "benchmarks" / "docs_tools" / "doc_tables.py").is_file()
    result = subprocess.run([sys.executable, "-c", CHECK.format(target=target)], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(target), "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
