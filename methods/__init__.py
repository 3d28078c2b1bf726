"""Methods: the ``Method`` base class, the registry and one module per method.

Importing this package registers every built-in method. It also exports the option kernel
(``Option``, ``ConfigError`` and the constructors, from ``defectseg.options``) that plugins declare
their options with.
"""
from defectseg.options import ConfigError, Option, choice, flag, integer, number, subset, text

from . import supervised  # noqa: F401  (registers)
from . import cct, cross_teaching, urpc  # noqa: F401  (register)
from . import simeps, uaps  # noqa: F401  (register)
from . import cps, mean_teacher, ua_mt  # noqa: F401  (register)
from .base import COMMON_OPTIONS, LOSS_SUP, LOSS_UNSUP, UNSUP_WEIGHT, LabeledBatch, Method, step_losses
from .registry import (
    PluginError,
    available_methods,
    build_method,
    get_method_class,
    load_entry_point_plugins,
    load_plugin,
    register_method,
)

__all__ = [
    "COMMON_OPTIONS",
    "LOSS_SUP",
    "LOSS_UNSUP",
    "UNSUP_WEIGHT",
    "ConfigError",
    "LabeledBatch",
    "Method",
    "Option",
    "PluginError",
    "available_methods",
    "build_method",
    "get_method_class",
    "load_entry_point_plugins",
    "load_plugin",
    "register_method",
    "choice",
    "flag",
    "integer",
    "number",
    "step_losses",
    "subset",
    "text",
]
