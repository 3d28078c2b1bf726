"""Golden values: what the code computes for fixed seeds, written to ``tests/golden/golden.json``.

``tests/test_golden.py`` recomputes them with the current code and compares. Two parts:

* ``method_values``: every registered method under both recipes (the options each recipe sets for it
  on NEU-Seg, ``recipe_options``; ``FIXED_OPTIONS`` on top), built on a fixed seed for 1-channel 32x32 images and 3
  classes, trained 3 Adam steps in float32 on fixed random batches: ``loss`` per step and the
  sum and sum of squares of ``predict`` on a fixed batch afterwards;
* ``run_values``: one run of the ``smoke`` profile on the synthetic set per method in
  ``RUN_METHODS`` through the runner (fp32, one thread): its config hash, best step and test mIoU
  (per class, with and without background) under both protocols, read from its ``metrics.json``.

Regenerate from the repository root with ``python -m tests.golden.make_golden [OUTPUT]``. The
committed files were made from the code before ``benchmarks/`` was split into packages (commit
73396ab), so this script runs against both module layouts (the import fallback below).

Float rounding differs between processors (vectorisation width, oneDNN code paths), and over 60
training steps the difference grows far beyond any tolerance, so the values are per CPU model:
one file per model (``golden*.json``, each naming its ``cpu``). ``golden_from_commit`` makes them
on this machine from that commit, taken from the clone's git history
(``python -m tests.golden.make_golden --from-commit [OUTPUT]``); the test does so itself for a
CPU model without a file.
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

try:  # the current layout, imported as defectseg.* (benchmarks/engine/)
    from defectseg.methods import LabeledBatch, available_methods, get_method_class
    from defectseg.benchmarks.engine.config import config_hash, load_profile, resolve_run
    from defectseg.benchmarks.engine.environment import cpu_model
    from defectseg.benchmarks.engine.layout import run_dir
    from defectseg.benchmarks.engine.recipes import RECIPES as RECIPE_REGISTRY
    from defectseg.benchmarks.engine.run import RunConfig, Workspace
    from defectseg.benchmarks.engine.runner import train_run

    def train_on_cpu(run_config: dict[str, Any], results_dir: Path) -> None:
        """Train one run on the CPU in ``results_dir`` (with its cache)."""
        train_run(RunConfig(run_config), Workspace(results_dir, cache_dir=results_dir / "cache", device="cpu"), progress=False)

    def recipe_options(method_class: type, recipe: str) -> dict[str, Any]:
        """The option values ``recipe`` sets for ``method_class`` on NEU-Seg."""
        return RECIPE_REGISTRY[recipe].method_options(method_class, "neu")
except ModuleNotFoundError:  # commit 73396ab, which made the committed golden.json: top-level packages, a flat benchmarks/
    from methods import LabeledBatch, available_methods, get_method_class
    from benchmarks.config import config_hash, load_profile, resolve_run, run_dir
    from benchmarks.runner import train_run

    def train_on_cpu(run_config: dict[str, Any], results_dir: Path) -> None:
        """Train one run on the CPU in ``results_dir`` (with its cache)."""
        train_run(run_config, results_dir, device="cpu", cache_dir=results_dir / "cache", progress=False)

    cpu_model = None  # that code records no CPU model: golden_from_commit adds this machine's

    def recipe_options(method_class: type, recipe: str) -> dict[str, Any]:
        """The option values ``recipe`` sets for ``method_class`` on NEU-Seg (that code asks the method)."""
        return method_class.recipe_options(recipe, "neu")

GOLDEN = Path(__file__).with_name("golden.json")  # the AMD EPYC's (family 26, model 2)
GOLDEN_COMMIT = "73396ab"
REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES = ("authors", "unified")
# On top of the recipe: fewer teacher passes; and one device for the methods whose released scripts ran
# on two (``data_parallel``, newer than the golden files: tests/test_data_parallel.py checks it).
FIXED_OPTIONS = {"ua_mt": {"mc_passes": 2}, "uaps": {"data_parallel": 1}, "simeps": {"data_parallel": 1}}
IN_CHANNELS, NUM_CLASSES, SIZE, BATCH = 1, 3, 32, 2
FIRST_STEP, TOTAL_STEPS, STEPS = 5, 10, 3  # mid-run, so that every ramped weight is > 0
SEED = 0
RUN_METHODS = ("supervised", "uaps")
RUN_OVERRIDES = ("train.iterations=60", "train.val_every=20", "train.checkpoint_every=20", "train.precision=fp32", "train.num_threads=1")
RUN_DATASET, RUN_RATIO = "synthetic", 0.2
PROTOCOLS = ("standard", "paper")  # the test protocols in metrics.json; their IoU entries are recorded


def method_options(name: str, recipe: str) -> dict[str, Any]:
    """The options ``name`` is built with under ``recipe`` (a key of ``RECIPES``), without those the code does not
    know (the code of ``GOLDEN_COMMIT`` predates ``data_parallel``: it runs on one device)."""
    method_class = get_method_class(name)
    options = {**recipe_options(method_class, recipe), **FIXED_OPTIONS.get(name, {})}
    return {key: value for key, value in options.items() if key in method_class.all_defaults()}


def fixed_batch(seed: int) -> tuple[LabeledBatch, torch.Tensor]:
    """A labelled batch and an unlabelled batch of images, drawn from their own generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(BATCH, IN_CHANNELS, SIZE, SIZE, generator=generator)
    masks = torch.randint(0, NUM_CLASSES, (BATCH, SIZE, SIZE), generator=generator)
    return LabeledBatch(images, masks), torch.randn(BATCH, IN_CHANNELS, SIZE, SIZE, generator=generator)


def method_values(name: str, recipe: str) -> dict[str, Any]:
    """``loss`` of each of ``STEPS`` Adam steps, then the sum and sum of squares of ``predict`` on a fixed batch."""
    torch.manual_seed(SEED)
    method = get_method_class(name)(method_options(name, recipe), IN_CHANNELS, NUM_CLASSES)
    optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for index in range(STEPS):
        step = FIRST_STEP + index
        out = method.training_step(*fixed_batch(step), step, TOTAL_STEPS)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        method.on_step_end(step)
        losses.append(out["loss"].item())
    method.eval()
    with torch.no_grad():
        logits = method.predict(fixed_batch(STEPS + FIRST_STEP)[1]).double()
    return {"loss": losses, "predict_sum": logits.sum().item(), "predict_sum_sq": logits.square().sum().item()}


def run_values(method: str, results_dir: Path) -> dict[str, Any]:
    """Config hash, best step and test mIoU (both protocols) of the smoke run of ``method``, trained in ``results_dir``."""
    run_config = resolve_run(load_profile("smoke", list(RUN_OVERRIDES)), RUN_DATASET, RUN_RATIO, method, SEED)
    train_on_cpu(run_config, results_dir)
    metrics = json.loads((run_dir(results_dir, run_config) / "metrics.json").read_text())
    return {
        "config_hash": config_hash(run_config),
        "best_step": metrics["best_step"],
        "best_val_mdice": metrics["best_val_mdice"],
        **{protocol: {key: value for key, value in metrics[protocol].items() if "iou" in key} for protocol in PROTOCOLS},
    }


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one CPU thread (deterministic reductions, and fastest for tiny tensors); the thread count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def golden_values() -> dict[str, Any]:
    """Every golden value: ``{"methods": {name: {recipe: method_values}}, "runs": {method: run_values}}``."""
    with one_thread(), tempfile.TemporaryDirectory() as folder:
        methods = {name: {recipe: method_values(name, recipe) for recipe in RECIPES} for name in available_methods()}
        runs = {method: run_values(method, Path(folder)) for method in RUN_METHODS}
    return {"methods": methods, "runs": runs}


def golden_files() -> dict[str, Path]:
    """The committed golden files by the CPU model they were made on."""
    return {json.loads(path.read_text())["cpu"]: path for path in sorted(GOLDEN.parent.glob("golden*.json"))}


class MissingCommitError(RuntimeError):
    """The commit the golden values come from is not in this clone's history (a shallow clone, an export)."""


def golden_from_commit(output: Path, commit: str = GOLDEN_COMMIT) -> None:
    """Write golden values made on this machine by the code of ``commit`` (from this clone's git
    history) to ``output``: this script runs in an extracted copy of that commit's tree."""
    try:
        archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        raise MissingCommitError(f"cannot read commit {commit} from the git history of {REPO_ROOT} (a shallow clone?): "
                           f"{detail.decode(errors='replace').strip() or error}") from error
    with tempfile.TemporaryDirectory() as folder:
        tree = Path(folder)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        script = tree / "tests" / "golden" / "make_golden.py"
        script.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(__file__), script)
        subprocess.run([sys.executable, "-m", "tests.golden.make_golden", str(Path(output).resolve())], cwd=tree, check=True)
    values = json.loads(Path(output).read_text())
    Path(output).write_text(json.dumps({**values, "cpu": cpu_model(), "commit": commit}, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, default=GOLDEN, help=f"where to write them (default: {GOLDEN})")
    parser.add_argument("--from-commit", action="store_true", help=f"with the code of commit {GOLDEN_COMMIT}, not this checkout's")
    args = parser.parse_args()
    if args.from_commit:
        golden_from_commit(args.output)
    else:
        machine = {"cpu": cpu_model()} if cpu_model else {}
        args.output.write_text(json.dumps({"torch": torch.__version__, **machine, **golden_values()}, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
