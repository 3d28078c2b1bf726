"""The method registry and the Method interface checks."""
import pytest
from torch import nn

from defectseg.methods import ConfigError, Method, PluginError, available_methods, build_method, get_method_class, register_method
from defectseg.methods.registry import _METHODS


def test_builtin_methods_registered():
    assert "supervised" in available_methods()


def test_registering_a_non_method_or_incomplete_method_is_an_error():
    with pytest.raises(PluginError, match="subclass of defectseg.methods.Method"):
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


def test_an_option_spec_names_method_option_value_and_what_is_expected():
    with pytest.raises(ConfigError, match=r"option 'dice_form' of method 'supervised' must be one of \['ssl4mis', 'uaps'\], got 'l2'"):
        build_method("supervised", {"dice_form": "l2"}, 1, 3)
    with pytest.raises(ConfigError, match=r"option 'rampup_fraction' of method 'supervised' must be a number >= 0, got True"):
        build_method("supervised", {"rampup_fraction": True}, 1, 3)
    with pytest.raises(ConfigError, match=r"'mc_passes' of method 'ua_mt' must be an integer >= 1, got 2.0"):
        build_method("ua_mt", {"mc_passes": 2.0}, 1, 3)
    with pytest.raises(ConfigError, match=r"'backbone' of method 'urpc' must be one of .* \(URPC needs the paper U-Net"):
        build_method("urpc", {"backbone": "smp:Unet:resnet18"}, 1, 3)


def test_defaults_are_derived_from_the_option_specs_in_order():
    defaults = get_method_class("simeps").all_defaults()
    assert list(defaults)[:3] == ["backbone", "rampup_fraction", "networks"]  # a method's own value replaces a common one in place
    assert defaults["rampup_fraction"] == 0.64
    assert type(defaults["networks"]) is int and type(defaults["similarity_weight"]) is float


def test_method_options_resolved_with_common_defaults():
    method = build_method("supervised", {"rampup_fraction": 0.5}, 1, 3)
    assert method.options == {"backbone": "unet", "rampup_fraction": 0.5, "dice_form": "ssl4mis"}
    assert method.rampup(0, 100) < method.rampup(25, 100) < method.rampup(50, 100) == 1.0
