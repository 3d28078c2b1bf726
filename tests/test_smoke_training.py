"""Every built-in method and the example plugin train in the smoke profile as the runner trains them (the
profile's precision and channels-last) and beat the same network untrained, on the same split."""
from __future__ import annotations


import pytest

from defectseg.methods import available_methods, get_method_class, load_plugin
from tests.helpers import restored_registry, train_smoke, untrained_miou
from tests.test_contract import EXAMPLE

pytestmark = pytest.mark.slow  # trains models or simulates: run by make test, not make test-fast

BUILTIN = [name for name in available_methods() if get_method_class(name).__module__.startswith("defectseg.methods.")]
PLUGIN = "my_method"  # docs/examples/my_method.py
OVERRIDES = {"ua_mt": ("method_options.ua_mt.mc_passes=2",)}  # 3 teacher passes a step instead of 9
VARIANTS = {  # the prediction variants each method reports besides its default prediction
    "cps": {"net2", "ensemble"},
    "cross_teaching": {"transformer", "ensemble"},
    "mean_teacher": {"teacher"},
    "ua_mt": {"teacher"},
    "simeps": {"ensemble", "network0", "network1", "network2"},
    "uaps": {"main", "ensemble"},
}
LOG_COLUMNS = {"uaps": {"loss_sup", "loss_unsup", "unsup_weight", "loss_ps", "loss_ups", "loss_un", "lambda2", "mean_exp_neg_u"}}


@pytest.fixture(scope="module")
def example_plugin():
    """The example plugin registered as ``run_all.py --plugin`` registers it; the registry is restored afterwards."""
    with restored_registry():
        (name,) = load_plugin(EXAMPLE)
        yield name


@pytest.mark.parametrize("method", [*BUILTIN, PLUGIN])
def test_trains_in_the_smoke_profile_and_beats_an_untrained_model(method, tmp_path, request):
    if method == PLUGIN:
        assert request.getfixturevalue("example_plugin") == PLUGIN
    overrides = ("train.num_threads=1", *OVERRIDES.get(method, ()))  # one torch thread: fastest on a busy 2-core machine
    before = untrained_miou(method, tmp_path, overrides)
    metrics = train_smoke(method, tmp_path, overrides)  # raises NonFiniteLossError on a NaN loss
    assert metrics["standard"]["miou"] > before
    assert set(metrics.get("variants") or {}) == VARIANTS.get(method, set())
    log = next(tmp_path.rglob("train_log.csv")).read_text().splitlines()[0].split(",")
    assert LOG_COLUMNS.get(method, set()) <= set(log)
