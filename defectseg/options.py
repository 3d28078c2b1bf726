"""Options: every setting a run is configured with, declared once with its default and the values it accepts.

Methods (``Method.option_specs``), datasets (their constructors' keyword parameters) and the engine's
config (run-level and train settings) all declare their settings as ``Option``s and check a mapping
of values against them here, so that every wrong key or value is a ``ConfigError`` naming the key,
the value and what is expected. This module imports nothing of the project: every layer can use it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal


class ConfigError(ValueError):
    """An unknown or invalid configuration key; the message names it and lists the valid ones."""


OptionKind = Literal["number", "integer", "flag", "choice", "subset", "text"]


@dataclass(frozen=True)
class Option:
    """One setting: its default value and the values it accepts (method options and config settings alike).

    ``kind``: "number" (an int or float in [``minimum``, ``maximum``]; ``None``: unbounded), "integer"
    (an int in those bounds), "flag" (true or false), "choice" (one of ``choices``), "subset" (a list
    drawn from ``choices``, not empty if ``non_empty``) or "text" (a string the method interprets
    itself); ``nullable``: null is accepted too. ``note`` says why, in the error message. Build
    them with ``number``, ``integer``, ``flag``, ``choice``, ``subset`` and ``text``.
    """

    default: Any
    kind: OptionKind
    minimum: float | None = 0
    maximum: float | None = None
    choices: tuple[Any, ...] = ()
    non_empty: bool = False
    nullable: bool = False
    note: str = ""

    def accepts(self, value: Any) -> bool:
        if value is None and self.nullable:
            return True
        if self.kind in ("number", "integer"):
            kind = int if self.kind == "integer" else (int, float)
            if isinstance(value, bool) or not isinstance(value, kind) or value != value:
                return False
            return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)
        if self.kind == "flag":
            return isinstance(value, bool)
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "subset":
            return isinstance(value, (list, tuple)) and bool(value or not self.non_empty) and all(item in self.choices for item in value)
        return isinstance(value, str)

    def expected(self) -> str:
        """What the option accepts, in words."""
        if self.kind in ("number", "integer"):
            if self.minimum is None:
                bounds = "" if self.maximum is None else f" <= {_bound_text(self.maximum)}"
            elif self.maximum is None:
                bounds = f" >= {_bound_text(self.minimum)}"
            else:
                bounds = f" in [{_bound_text(self.minimum)}, {_bound_text(self.maximum)}]"
            words = f"{'an integer' if self.kind == 'integer' else 'a number'}{bounds}"
        elif self.kind == "flag":
            words = "true or false"
        elif self.kind == "choice":
            words = f"one of {list(self.choices)}"
        elif self.kind == "subset":
            words = f"{'a non-empty list' if self.non_empty else 'a list'} drawn from {list(self.choices)}"
        else:
            words = "a string"
        return f"{words} or null" if self.nullable else words

    def check_at(self, where: str, value: Any) -> None:
        """ConfigError naming ``where`` (a key or an option), the value and what is expected, unless accepted."""
        if not self.accepts(value):
            note = f" ({self.note})" if self.note else ""
            raise ConfigError(f"{where} must be {self.expected()}{note}, got {value!r}")


def _bound_text(bound: float) -> str:
    """A bound as written: 4294967295 stays whole (``:g`` would print 4.29497e+09), 0.5 stays 0.5."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def number(default: float | None, minimum: float | None = 0, maximum: float | None = None, nullable: bool = False) -> Option:
    return Option(default, "number", minimum, maximum, nullable=nullable)


def integer(default: int | None, minimum: int | None = 0, maximum: int | None = None, nullable: bool = False) -> Option:
    return Option(default, "integer", minimum, maximum, nullable=nullable)


def flag(default: bool) -> Option:
    return Option(default, "flag")


def choice(default: Any, choices: Sequence[Any], note: str = "") -> Option:
    return Option(default, "choice", choices=tuple(choices), note=note)


def subset(default: list[Any], choices: Sequence[Any], non_empty: bool = False) -> Option:
    return Option(default, "subset", choices=tuple(choices), non_empty=non_empty)


def text(default: str) -> Option:
    return Option(default, "text")


def defaults(specs: Mapping[str, Option]) -> dict[str, Any]:
    """Every option's default value."""
    return {key: spec.default for key, spec in specs.items()}


def resolve_options(specs: Mapping[str, Option], values: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """The defaults of ``specs`` overridden by ``values``, each checked; ``owner`` (e.g. "method 'uaps'") names them in
    errors: "unknown option(s) [...] for <owner>; valid options: [...]", "option 'k' of <owner> must be ..."."""
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for {owner}; valid options: {sorted(specs)}")
    resolved = {**defaults(specs), **values}
    for key, spec in specs.items():
        spec.check_at(f"option {key!r} of {owner}", resolved[key])
    return resolved


def check_section(specs: Mapping[str, Option], values: Mapping[str, Any], section: str = "") -> None:
    """Check ``values``, the keys of config section ``section`` (e.g. "train"; "" for the top level) that a profile
    sets: "unknown config key 'section.k'; valid keys: [...]", "section.k must be ..."."""
    for key, value in values.items():
        where = f"{section}.{key}" if section else key
        if key not in specs:
            raise ConfigError(f"unknown config key '{where}'; valid keys: {sorted(specs)}")
        specs[key].check_at(where, value)
