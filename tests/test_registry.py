"""The method registry and the Method interface checks."""
import pytest
from torch import nn

from methods import Method, PluginError, available_methods, build_method, register_method
from methods.registry import _METHODS


def test_builtin_methods_registered():
    assert "supervised" in available_methods()


def test_registering_a_non_method_or_incomplete_method_is_an_error():
    with pytest.raises(PluginError, match="subclass of methods.Method"):
        register_method("bad")(nn.Module)

    class Incomplete(Method):
        def predict(self, images):
            return images

    with pytest.raises(PluginError, match="does not implement.*training_step"):
        register_method("incomplete")(Incomplete)
    assert "incomplete" not in _METHODS


def test_name_already_taken_is_an_error():
    class Other(Method):
        def training_step(self, labeled, unlabeled, step, total_steps):
            return {}

        def predict(self, images):
            return images

    with pytest.raises(PluginError, match="already taken"):
        register_method("supervised")(Other)


def test_method_options_resolved_with_common_defaults():
    method = build_method("supervised", {"rampup_fraction": 0.5}, 1, 3)
    assert method.options == {"backbone": "unet", "rampup_fraction": 0.5, "dice_form": "ssl4mis"}
    assert method.rampup(0, 100) < method.rampup(25, 100) < method.rampup(50, 100) == 1.0
