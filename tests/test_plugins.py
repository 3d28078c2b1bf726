"""The "add a new method" path: the documented example plugin end to end, and every broken-plugin error."""
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

import run_all
from defectseg.benchmarks.reporting.aggregate import collect_runs, summarize
from defectseg.methods import PluginError, available_methods, load_plugin
from defectseg.methods import registry
from defectseg.methods.registry import check_step_output
from tests.helpers import restored_registry

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "my_method.py"
HEADER = "import torch\nfrom defectseg.methods import Method, register_method\n\n"
GOOD_PREDICT = "    def named_predictions(self, images, names):\n        return {name: images for name in names}\n"
GOOD_STEP = "    def training_step(self, labeled, unlabeled, step, total_steps):\n        return {'loss': self.w.sum()}\n"


@pytest.fixture(autouse=True)
def clean_registry():
    """Each test starts from and leaves the registry (and imported plugin modules) as they were."""
    with restored_registry():
        yield


def write_plugin(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(HEADER + textwrap.dedent(body))
    return path


def method_class(name: str, *members: str, init: bool = True) -> str:
    lines = [f"@register_method({name!r})", "class Plugin(Method):"]
    if init:
        lines += [
            "    def __init__(self, options, in_channels, num_classes):",
            "        super().__init__(options, in_channels, num_classes)",
            "        self.w = torch.nn.Parameter(torch.zeros(num_classes, 1, 1))",
        ]
    return "\n".join(lines) + "\n" + "".join(members)


def test_example_plugin_runs_in_the_smoke_benchmark_and_is_aggregated(tmp_path, capsys):
    plugin = shutil.copy(EXAMPLE, tmp_path / "my_method.py")
    results = tmp_path / "results"
    status = run_all.main([
        "benchmark", "--profile", "smoke", "--plugin", str(plugin), "--methods", "my_method",
        "--results-dir", str(results), "--device", "cpu",
        "--set", "train.iterations=20", "--set", "train.val_every=10", "--set", "method_options.my_method.threshold=0.8",
        "--set", "train.num_threads=1",  # the grid would take every core: on a busy 2-core machine 20x slower
    ])
    assert status == 0, capsys.readouterr().err
    runs = collect_runs(results, "smoke")
    assert list(runs["method"]) == ["my_method"]
    summary = summarize(runs)
    assert list(summary["method"]) == ["my_method"] and summary["seeds"].tolist() == [1]
    run_directory = Path(runs["path"].iloc[0])
    options = yaml.safe_load((run_directory / "config.yaml").read_text())["method_options"]
    assert options["threshold"] == 0.8 and options["weight"] == 1.0
    header = (run_directory / "train_log.csv").read_text().splitlines()[0].split(",")
    assert {"loss_sup", "loss_unsup", "unsup_weight", "confident_fraction"} <= set(header)


def test_guide_shows_the_example_file():
    guide = (EXAMPLE.parent.parent / "adding_a_method.md").read_text()
    shown = guide.split("```python\n", 1)[1].split("```", 1)[0]
    assert shown in EXAMPLE.read_text()


def test_loading_the_same_plugin_twice_is_harmless(tmp_path):
    plugin = shutil.copy(EXAMPLE, tmp_path / "my_method.py")
    assert load_plugin(plugin) == ["my_method"]
    assert load_plugin(plugin) == ["my_method"]


@pytest.mark.parametrize("missing", ["named_predictions", "training_step"])
def test_missing_interface_method_is_a_clear_error(tmp_path, capsys, missing):
    members = [GOOD_STEP] if missing == "named_predictions" else [GOOD_PREDICT]
    plugin = write_plugin(tmp_path, f"no_{missing}", method_class(f"no_{missing}", *members))
    assert run_all.main(["list", "--plugin", str(plugin)]) == 2
    assert f"does not implement ['{missing}']" in capsys.readouterr().err
    assert f"no_{missing}" not in available_methods()
    assert f"defectseg_plugin_no_{missing}" not in sys.modules


def test_options_declared_the_old_way_are_a_clear_error(tmp_path):
    body = method_class("old_options", GOOD_STEP, GOOD_PREDICT).replace(
        "class Plugin(Method):\n", "class Plugin(Method):\n    defaults = {'threshold': 0.9}\n"
    )
    with pytest.raises(PluginError, match="declares its options as 'defaults'.*option_specs = "):
        load_plugin(write_plugin(tmp_path, "old_options", body))
    assert "old_options" not in available_methods()


def test_a_plugin_overriding_predict_still_predicts(tmp_path):
    predict = "    def predict(self, images):\n        return images * 2\n"
    (name,) = load_plugin(write_plugin(tmp_path, "old_predict", method_class("old_predict", GOOD_STEP, predict)))
    method = registry.build_method(name, {}, 1, 3)
    images = torch.randn(1, 3, 4, 4)
    assert torch.equal(method.predict(images), images * 2) and method.predict_variants(images) == {}


def test_name_already_taken_is_a_clear_error_and_nothing_stays_registered(tmp_path):
    clash = method_class("supervised", GOOD_STEP, GOOD_PREDICT).replace("Plugin", "Clash")
    body = method_class("fresh_name", GOOD_STEP, GOOD_PREDICT) + "\n\n" + clash
    plugin = write_plugin(tmp_path, "clash", body)
    with pytest.raises(PluginError, match="'supervised' is already taken by defectseg.methods.supervised.Supervised"):
        load_plugin(plugin)
    assert "fresh_name" not in available_methods()


def test_plugin_that_is_not_a_method_registers_nothing_or_fails_to_import(tmp_path):
    with pytest.raises(PluginError, match="must decorate a subclass of defectseg.methods.Method"):
        load_plugin(write_plugin(tmp_path, "not_a_method", "@register_method('plain')\nclass Plain:\n    pass\n"))
    with pytest.raises(PluginError, match="registered no method"):
        load_plugin(write_plugin(tmp_path, "empty", "X = 1\n"))
    with pytest.raises(PluginError, match="failed to import: SyntaxError"):
        load_plugin(write_plugin(tmp_path, "broken", "def oops(:\n"))
    with pytest.raises(PluginError, match="does not exist"):
        load_plugin(tmp_path / "missing.py")


def test_installed_package_registers_through_the_entry_point_group(tmp_path, monkeypatch, capsys):
    shutil.copy(EXAMPLE, tmp_path / "my_method_package.py")
    dist_info = tmp_path / "my_method_package-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-method-package\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[defectseg.methods]\nmy_method = my_method_package\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_method_package", raising=False)
    assert run_all.main(["list"]) == 0
    assert "my_method" in capsys.readouterr().out.split()
    sys.modules.pop("my_method_package", None)


def test_failing_entry_point_is_a_clear_error(monkeypatch):
    class BrokenEntryPoint:
        name, value = "broken", "broken_package.method"

        def load(self):
            raise ModuleNotFoundError("No module named 'broken_package'")

    monkeypatch.setattr(registry, "entry_points", lambda group: [BrokenEntryPoint()])
    with pytest.raises(PluginError, match="entry point 'broken'.*defectseg.methods.*No module named"):
        registry.load_entry_point_plugins()


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (lambda w: w.sum(), "must return a dict of named losses"),
        (lambda w: (w.sum(), {}), "must return a dict of named losses"),
        (lambda w: {"total": w.sum()}, "without 'loss'"),
        (lambda w: {"loss": w.sum(), "acc": 0.5}, "'acc' as float: every entry must be a tensor"),
        (lambda w: {"loss": w}, r"'loss' with shape \(3, 1, 1\)"),
        (lambda w: {"loss": w.sum().detach()}, "does not require grad"),
    ],
)
def test_step_output_check(output, message):
    weight = torch.nn.Parameter(torch.zeros(3, 1, 1))
    with pytest.raises(PluginError, match=message):
        check_step_output("my_method", output(weight))
    valid = {"loss": weight.sum(), "loss_sup": torch.tensor(0.0)}
    assert check_step_output("my_method", valid) is valid


def test_wrong_step_output_stops_training_with_a_clear_error(tmp_path, capsys):
    step = "    def training_step(self, labeled, unlabeled, step, total_steps):\n        return self.w.sum()\n"
    plugin = write_plugin(tmp_path, "bad_output", method_class("bad_output", step, GOOD_PREDICT))
    status = run_all.main([
        "train", "--profile", "smoke", "--plugin", str(plugin), "--method", "bad_output",
        "--dataset", "synthetic", "--ratio", "0.2", "--results-dir", str(tmp_path / "results"), "--device", "cpu",
    ])
    assert status == 2
    assert "method 'bad_output': training_step must return a dict of named losses" in capsys.readouterr().err
    failure = next((tmp_path / "results").rglob("failure.json")).read_text()
    assert "PluginError" in failure
