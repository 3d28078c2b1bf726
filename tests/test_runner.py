"""One run end to end through the runner and the CLI: files written, metrics, errors."""
import json

import pytest
import torch
import yaml

import run_all
from defectseg.benchmarks.engine.run import RunConfig, Workspace
from defectseg.benchmarks.grid import migrate_splits
from defectseg.benchmarks.engine.environment import cpu_model, resolve_precision
from defectseg.benchmarks.engine.runner import train_run
from defectseg.benchmarks.engine.trainer import NonFiniteLossError
from defectseg.datasets.splits import Split
from defectseg.methods import Method, register_method
from defectseg.methods.losses import segmentation_loss
from defectseg.methods.networks import build_network
from tests.helpers import smoke_config, train_smoke


@register_method("test_nan_after_5")
class NaNAfterFive(Method):
    """Trains normally, then its loss turns NaN at step 5."""

    def __init__(self, options, in_channels, num_classes):
        super().__init__(options, in_channels, num_classes)
        self.net = build_network("unet", in_channels, num_classes)

    def training_step(self, labeled, unlabeled, step, total_steps):
        loss = segmentation_loss(self.net(labeled.images), labeled.masks)
        if step >= 5:
            loss = loss * float("nan")
        return {"loss": loss, "loss_sup": loss}

    def predict(self, images):
        return self.net(images)


@pytest.fixture(scope="module")
def supervised_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    return results, train_smoke("supervised", results)


def test_run_writes_every_file(supervised_run):
    results, metrics = supervised_run
    directory = results / "runs" / "smoke" / "synthetic" / "0.2" / "supervised" / "seed0"
    for name in ("config.yaml", "split.ref", "train_log.csv", "best.pt", "metrics.json"):
        assert (directory / name).is_file(), name
    assert not (directory / "last.pt").exists()  # removed once the run completed
    assert not list(directory.glob(".*.tmp"))
    on_disk = json.loads((directory / "metrics.json").read_text())
    assert on_disk["status"] == "completed"
    assert on_disk["config_hash"] == yaml.safe_load((directory / "config.yaml").read_text())["config_hash"]
    split_file = results / "splits" / (directory / "split.ref").read_text().strip()
    assert split_file.name.startswith("synthetic_0.2_s0_") and not (directory / "split.json").exists()
    split = Split.from_json(split_file)
    assert len(split.labeled) > 0 and len(split.test) == on_disk["num_test_images"]
    log_lines = (directory / "train_log.csv").read_text().splitlines()
    assert log_lines[0].startswith("step,loss")
    assert len(log_lines) == 1 + 120 // 10


def test_migrate_splits_replaces_identical_copies_by_one_shared_file(supervised_run, tmp_path):
    results, _ = supervised_run
    source = results / "runs" / "smoke" / "synthetic" / "0.2" / "supervised" / "seed0"
    shared = results / "splits" / (source / "split.ref").read_text().strip()
    legacy = tmp_path / "legacy"
    folders = [legacy / "runs" / "smoke" / "synthetic" / "0.2" / method / "seed0" for method in ("supervised", "uaps")]
    for folder in folders:  # run folders as earlier versions wrote them: their own split.json each
        folder.mkdir(parents=True)
        (folder / "split.json").write_text(shared.read_text())
    assert migrate_splits.main([str(legacy)]) == 0
    assert [p.name for p in (legacy / "splits").iterdir()] == [shared.name]
    for folder in folders:
        assert (folder / "split.ref").read_text().strip() == shared.name and not (folder / "split.json").exists()
    assert migrate_splits.migrate(legacy) == ([], [])  # nothing left to do


def test_metrics_report_both_protocols_and_costs(supervised_run):
    _, metrics = supervised_run
    assert set(metrics["standard"]) >= {"miou", "mdice", "miou_with_bg", "pixel_accuracy", "per_class_iou"}
    assert set(metrics["paper"]) >= {"miou", "num_images", "per_class_iou"}
    assert metrics["params"] == pytest.approx(1.81e6, rel=0.01)
    assert metrics["macs"] > 0 and metrics["eval_ms_per_image"] > 0
    assert metrics["iterations_per_second"] > 0 and metrics["train_seconds"] > 0
    assert metrics["environment"]["torch"] == torch.__version__
    assert metrics["environment"]["cpu"] == cpu_model() and metrics["environment"]["cpu"]  # which machine ran it
    assert metrics["precision"] == resolve_precision("auto", torch.device("cpu")) and metrics["channels_last"] is True


def test_completed_run_is_not_trained_again(supervised_run):
    results, metrics = supervised_run
    path = results / "runs" / "smoke" / "synthetic" / "0.2" / "supervised" / "seed0" / "metrics.json"
    before = path.stat().st_mtime_ns
    assert train_smoke("supervised", results)["config_hash"] == metrics["config_hash"]
    assert path.stat().st_mtime_ns == before


def test_nan_loss_is_a_clear_error_recorded_in_failure_json(tmp_path):
    config = smoke_config("test_nan_after_5", ("train.log_every=2",))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \['loss', 'loss_sup'\].*at step 6"):
        train_run(RunConfig(config), Workspace(tmp_path, cache_dir=tmp_path / "cache", device="cpu"), progress=False)
    directory = tmp_path / "runs" / "smoke" / "synthetic" / "0.2" / "test_nan_after_5" / "seed0"
    failure = json.loads((directory / "failure.json").read_text())
    assert failure["error"] == "NonFiniteLossError" and "step 6" in failure["reason"]
    assert not (directory / "metrics.json").exists()


def test_cli_train_and_eval(tmp_path, capsys):
    args = ["--profile", "smoke", "--results-dir", str(tmp_path), "--set", "train.iterations=20", "--set", "train.val_every=10"]
    assert run_all.main(["train", "--dataset", "synthetic", "--ratio", "0.2", "--method", "supervised", *args]) == 0
    run_dir = tmp_path / "runs" / "smoke" / "synthetic" / "0.2" / "supervised" / "seed0"
    assert "results:" in capsys.readouterr().out
    assert run_all.main(["eval", "--run-dir", str(run_dir), "--split", "val", "--results-dir", str(tmp_path)]) == 0
    assert '"standard"' in capsys.readouterr().out


def test_cli_unknown_key_exits_2_and_lists_valid_keys(tmp_path, capsys):
    code = run_all.main(["train", "--dataset", "synthetic", "--ratio", "0.2", "--method", "supervised",
                         "--profile", "smoke", "--results-dir", str(tmp_path), "--set", "train.lr_max=1"])
    assert code == 2
    assert "unknown config key 'train.lr_max'" in capsys.readouterr().err


def test_cli_help_documents_every_option(capsys):
    for command in ("train", "eval", "benchmark"):
        with pytest.raises(SystemExit):
            run_all.main([command, "--help"])
        out = capsys.readouterr().out
        assert "--results-dir" in out and "--data-root" in out
