"""Registry of methods by name, in the style of timm's ``@register_model``."""
from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .base import ConfigError, Method

ENTRY_POINT_GROUP = "defectseg.methods"
_METHODS: dict[str, type[Method]] = {}


class PluginError(ValueError):
    """A method plugin that cannot be loaded or breaks the Method interface."""


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: ``@register_method("uaps") class UAPS(Method): ...``."""

    def decorator(cls: type[Method]) -> type[Method]:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise PluginError(f"@register_method({name!r}) must decorate a subclass of methods.Method, got {cls!r}")
        if name in _METHODS and _METHODS[name] is not cls:
            raise PluginError(f"method name {name!r} is already taken by {_METHODS[name].__module__}.{_METHODS[name].__qualname__}")
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise PluginError(f"method {name!r} ({cls.__qualname__}) does not implement {missing}")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorator


def available_methods() -> list[str]:
    return sorted(_METHODS)


def get_method_class(name: str) -> type[Method]:
    if name not in _METHODS:
        raise ConfigError(f"unknown method {name!r}; registered methods: {available_methods()}")
    return _METHODS[name]


def build_method(name: str, options: Mapping[str, Any], in_channels: int, num_classes: int) -> Method:
    return get_method_class(name)(options, in_channels, num_classes)


def load_plugin(path: str | Path) -> list[str]:
    """Import a Python file that registers methods; returns the names it registered."""
    path = Path(path)
    if not path.is_file():
        raise PluginError(f"plugin file {path} does not exist")
    before = set(_METHODS)
    module_name = f"defectseg_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin {path} is not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    added = sorted(set(_METHODS) - before)
    if not added:
        raise PluginError(f"plugin {path} registered no method: decorate a Method subclass with @register_method('name')")
    return added


def load_entry_point_plugins() -> None:
    """Import every module advertised under the ``defectseg.methods`` entry-point group."""
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        entry_point.load()
