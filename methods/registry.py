"""Registry of methods by name, in the style of timm's ``@register_model``."""
from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Mapping
from importlib.machinery import ModuleSpec
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import Tensor

from defectseg.options import ConfigError

from .base import Method

ENTRY_POINT_GROUP = "defectseg.methods"
_METHODS: dict[str, type[Method]] = {}
_PLUGINS: dict[Path, list[str]] = {}  # plugin file -> the names it registered


class PluginError(ValueError):
    """A method plugin that cannot be loaded or breaks the Method interface."""


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: ``@register_method("uaps") class UAPS(Method): ...``."""

    def decorator(cls: type[Method]) -> type[Method]:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise PluginError(f"@register_method({name!r}) must decorate a subclass of defectseg.methods.Method, got {cls!r}")
        if name in _METHODS and _METHODS[name] is not cls:
            raise PluginError(f"method name {name!r} is already taken by {_describe(_METHODS[name])}; choose another name")
        missing = cls.unimplemented()
        if missing:
            raise PluginError(f"method {name!r} ({cls.__qualname__}) does not implement {missing}")
        if "defaults" in vars(cls):
            raise PluginError(
                f"method {name!r} ({cls.__qualname__}) declares its options as 'defaults', which is no longer read: "
                "declare them as option_specs = {'threshold': number(0.9, maximum=1.0), ...} (defectseg.methods.Option, "
                "docs/adding_a_method.md)"
            )
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorator


def _describe(cls: type) -> str:
    source = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return f"{cls.__module__}.{cls.__qualname__}" + (f" ({source})" if source else "")


def available_methods() -> list[str]:
    return sorted(_METHODS)


def get_method_class(name: str) -> type[Method]:
    if name not in _METHODS:
        raise ConfigError(f"unknown method {name!r}; registered methods: {available_methods()}")
    return _METHODS[name]


def build_method(name: str, options: Mapping[str, Any], in_channels: int, num_classes: int) -> Method:
    return get_method_class(name)(options, in_channels, num_classes)


def load_plugin(path: str | Path) -> list[str]:
    """Import a Python file that registers methods; returns the names it registered.

    Loading the same file again returns its names without re-importing it. A file that fails to
    import, registers nothing or breaks the interface raises PluginError and registers nothing.
    """
    path = Path(path).resolve()
    if path in _PLUGINS and all(name in _METHODS for name in _PLUGINS[path]):
        return list(_PLUGINS[path])
    if not path.is_file():
        raise PluginError(f"plugin file {path} does not exist")
    module_name = f"defectseg_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin {path} is not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    added = _registering(f"plugin {path}", lambda: _exec_module(module_name, module, spec))
    if not added:
        sys.modules.pop(module_name, None)
        raise PluginError(f"plugin {path} registered no method: decorate a Method subclass with @register_method('name')")
    _PLUGINS[path] = added
    return added


def _exec_module(module_name: str, module: ModuleType, spec: ModuleSpec) -> None:
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise


def _registering(source: str, load: Callable[[], object]) -> list[str]:
    """Names that ``load()`` registers; if it raises, its registrations are undone (PluginError)."""
    before = dict(_METHODS)
    try:
        load()
    except Exception as error:
        _METHODS.clear()
        _METHODS.update(before)
        if isinstance(error, PluginError):
            raise PluginError(f"{source}: {error}") from error
        raise PluginError(f"{source} failed to import: {type(error).__name__}: {error}") from error
    return sorted(set(_METHODS) - set(before))


def load_entry_point_plugins() -> None:
    """Import every module advertised under the ``defectseg.methods`` entry-point group."""
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        _registering(f"entry point {entry_point.name!r} ({entry_point.value}) of group {ENTRY_POINT_GROUP!r}", entry_point.load)


def check_step_output(name: str, output: object) -> Mapping[str, Tensor]:
    """``output`` of method ``name``'s ``training_step``, checked; else a PluginError saying what is expected.

    Expected: a mapping of scalar tensors with a ``"loss"`` entry (the one optimised) that
    carries gradient; every other entry is logged.
    """
    where = f"method {name!r}: training_step"
    if not isinstance(output, Mapping):
        raise PluginError(f"{where} must return a dict of named losses {{'loss': tensor, ...}}, got {type(output).__name__}")
    if "loss" not in output:
        raise PluginError(f"{where} returned keys {sorted(output)} without 'loss' (the tensor the runner optimises)")
    for key, value in output.items():
        if not isinstance(value, Tensor):
            raise PluginError(
                f"{where} returned {key!r} as {type(value).__name__}: every entry must be a tensor "
                "(return a zero tensor for a loss that is switched off)"
            )
        if value.numel() != 1:
            raise PluginError(f"{where} returned {key!r} with shape {tuple(value.shape)}: every entry must be a scalar tensor")
    if not output["loss"].requires_grad:
        raise PluginError(
            f"{where} returned a 'loss' that does not require grad: compute it from the method's parameters, outside torch.no_grad()"
        )
    return output
