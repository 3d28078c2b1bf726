"""Recipes and the typed train settings: layering, hash stability, the LR schedule, the authors' augmentation."""
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from defectseg.benchmarks.engine.config import config_hash, load_profile, resolve_run
from defectseg.benchmarks.engine.run import TrainSettings
from defectseg.benchmarks.engine.trainer import build_scheduler
from defectseg.datasets.transforms import authors_augment, to_float
from defectseg.methods import ConfigError

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
REFERENCE_RUNS = [REFERENCE / "cpu" / "runs", REFERENCE / "label_scarcity" / "runs"]


def test_committed_reference_runs_keep_their_config_hash():
    configs = sorted(path for root in REFERENCE_RUNS for path in root.glob("*/*/*/*/seed*/config.yaml"))
    assert configs, f"no committed reference runs under {REFERENCE_RUNS}"
    checked = 0
    for path in configs:
        stored = yaml.safe_load(path.read_text())
        resolved = resolve_run(load_profile(stored["profile"]), stored["dataset"], stored["ratio"], stored["method"], stored["seed"])
        assert config_hash(resolved) == stored["config_hash"], path
        checked += 1
    assert checked >= 25


def test_unified_is_the_default_and_authors_fills_defaults_only():
    unified = load_profile("smoke")
    assert unified["recipe"] == "unified" and unified["train"]["augmentation"] == "flips_rot90"
    authors = load_profile("smoke", ["recipe=authors"])
    assert authors["train"]["augmentation"] == "authors" and authors["train"]["lr_schedule"] == "plateau"
    assert authors["train"]["normalization"] == "imagenet"
    run = resolve_run(authors, "mtiles", 0.1, "supervised", 0)
    assert run["recipe"] == "authors" and run["train"]["lr"] == 2e-3  # the MTiles script's rate
    assert resolve_run(authors, "neu", 0.1, "supervised", 0)["train"]["lr"] == 1e-3
    explicit = load_profile("smoke", ["recipe=authors", "train.lr=5e-4", "train.normalization=half"])
    assert resolve_run(explicit, "mtiles", 0.1, "supervised", 0)["train"]["lr"] == 5e-4  # explicit wins
    assert explicit["train"]["normalization"] == "half"


def test_recipe_changes_the_hash_and_unknown_recipes_are_errors():
    unified = resolve_run(load_profile("smoke"), "synthetic", 0.2, "uaps", 0)
    authors = resolve_run(load_profile("smoke", ["recipe=authors"]), "synthetic", 0.2, "uaps", 0)
    assert config_hash(unified) != config_hash(authors)
    with pytest.raises(ConfigError, match=r"recipe must be one of \['unified', 'authors'\], got 'paper'"):
        load_profile("smoke", ["recipe=paper"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.iterations=abc", r"train.iterations must be an integer >= 1, got 'abc'"),
        ("train.iterations=0", r"train.iterations must be an integer >= 1, got 0"),
        ("train.lr=-1", r"train.lr must be a number >= 0, got -1"),
        ("train.augment=maybe", r"train.augment must be true or false, got 'maybe'"),
        ("train.lr_schedule=cosine", r"train.lr_schedule must be one of \['constant', 'plateau'\], got 'cosine'"),
        ("train.val_max_images=1.5", r"train.val_max_images must be an integer >= 1 or null, got 1.5"),
        ("train_per_dataset.neu.lr=fast", r"train_per_dataset.neu.lr must be a number >= 0, got 'fast'"),
        ("train_per_dataset.neu.epochs=3", r"unknown config key 'train_per_dataset.neu.epochs'"),
    ],
)
def test_wrong_train_values_fail_when_loaded_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_profile("smoke", [override])


def test_plateau_schedule_cuts_the_rate_after_the_patience():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=1e-3)
    train = TrainSettings.of(load_profile("smoke", ["recipe=authors", "train.val_every=100", "train.lr_patience=300"])["train"])
    scheduler = build_scheduler(optimizer, train)
    # best at the 2nd validation; patience 300 iterations = 3 validations; as in torch (and the UAPS
    # code), the rate is cut at the first validation beyond the patience
    scores = [0.5, 0.6, 0.6, 0.6, 0.6, 0.6]
    rates = []
    for score in scores:
        scheduler.step(score)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[:5] == [1e-3] * 5 and rates[5] == pytest.approx(1e-4)
    assert build_scheduler(optimizer, TrainSettings.of(load_profile("smoke")["train"])) is None


def test_authors_augmentation_statistics_and_alignment():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4000, 1, 8, 8), dtype=torch.uint8)
    masks = (images[:, 0].long() * 7) % 5  # a function of the pixel value
    out, out_masks = authors_augment(images, masks, generator)
    assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 255
    assert torch.equal(out, out.round())  # integers, as albumentations' uint8 ops give (truncated or rounded)
    same_geometry = [k for k in range(len(images)) if torch.equal(out_masks[k], masks[k])]
    # geometry unchanged: no flip of either axis (0.6²) and no effective rotation (1 - 0.3·3/4)
    # (a flip on both axes equals a 180° turn, so count only exact identity of masks)
    assert 0.25 < len(same_geometry) / len(images) < 0.35
    unchanged = (out == images.float()).flatten(1).all(1)
    # untouched images: no photometric op fired: 0.5 · 0.7 · 0.7, times the identity geometry above
    assert 0.05 < unchanged.float().mean() < 0.12
    again, _ = authors_augment(images, masks, torch.Generator().manual_seed(0))
    assert torch.equal(again, out)


def test_imagenet_normalisation():
    images = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = to_float(images, "imagenet")
    expected = torch.tensor([(1 - m) / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    torch.testing.assert_close(out[0, :, 0, 0], expected)
    assert torch.equal(to_float(images), torch.ones(1, 3, 2, 2))


@pytest.mark.parametrize("method", sorted(m for m in __import__("defectseg.methods").methods.available_methods() if not m.startswith("test_")))
def test_every_method_trains_under_the_authors_recipe(method, tmp_path):
    from tests.helpers import smoke_config, train_smoke

    overrides = ("recipe=authors", "train.iterations=4", "train.val_every=2", "train.checkpoint_every=2", "train.log_every=2", "train.lr_patience=2")
    metrics = train_smoke(method, tmp_path, overrides)
    assert metrics["status"] == "completed" and 0 <= metrics["standard"]["miou"] <= 1
    log = pd.read_csv(tmp_path / "runs" / "smoke" / "synthetic" / "0.2" / method / "seed0" / "train_log.csv")
    learning_rates = log["lr"].dropna()  # the plateau schedule logs its learning rate
    assert len(learning_rates) and learning_rates.iloc[0] == pytest.approx(smoke_config(method, overrides)["train"]["lr"])
    assert (learning_rates.diff().dropna() <= 0).all()  # cut, never raised
