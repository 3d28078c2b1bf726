"""The classes of a folder dataset, and its mask files decoded to class ids.

A declaration lists the classes in order, background first, each with the value its pixels have
in the mask files: an integer 0..255 for index masks (single-channel PNGs, palette PNGs included),
or a colour for RGB palette masks (``"#rrggbb"``, or ``[r, g, b]`` in YAML). Class ids are the
positions in the list, so ``{background: 0, defect: 255}`` reads 0/255 masks as classes 0 and 1.
Written in YAML as a mapping, or on the command line as ``background=0,scratch=1`` (or
``background=#000000,scratch=#ff0000``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import NO_MASK, DatasetError
from .imagefiles import decode_image, decode_mask

Colour = tuple[int, int, int]
HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
SHOWN = 5  # offending values named in an error


@dataclass(frozen=True)
class ClassMap:
    """Class names (index 0 the background) and the mask value (``int``) or colour of each."""

    names: tuple[str, ...]
    values: tuple[int | Colour, ...]

    @property
    def colours(self) -> bool:
        """Whether the masks are RGB palette masks (else single-channel index masks)."""
        return isinstance(self.values[0], tuple)

    @classmethod
    def parse(cls, declaration: Any, where: str) -> ClassMap:
        """The classes of a YAML mapping or a ``name=value,...`` string; a DatasetError naming ``where``."""
        if isinstance(declaration, str):
            pairs = [item.split("=", 1) for item in declaration.split(",") if item.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise DatasetError(f"{where}: classes must read name=value,name=value (background first), got {declaration!r}")
            declaration = {name.strip(): _text_value(value.strip()) for name, value in pairs}
        if not isinstance(declaration, dict) or len(declaration) < 2:
            raise DatasetError(f"{where}: classes must map at least two names (background first) to mask values, got {declaration!r}")
        values = tuple(_value(value, f"{where}: class {name!r}") for name, value in declaration.items())
        names = tuple(str(name) for name in declaration)
        if len({isinstance(value, tuple) for value in values}) > 1:
            raise DatasetError(f"{where}: classes mix mask values and colours; give every class an integer 0..255, or every class a colour")
        if len(set(values)) < len(values):
            raise DatasetError(f"{where}: two classes share a mask value: {dict(zip(names, map(_show, values)))}")
        if len(names) >= NO_MASK:
            raise DatasetError(f"{where}: {len(names)} classes; at most {NO_MASK - 1} are supported")
        return cls(names, values)

    def describe(self) -> dict[str, int | str]:
        """The declaration as written in dataset.yaml (colours as ``#rrggbb``)."""
        return {name: _show(value) for name, value in zip(self.names, self.values)}

    def read(self, path: Path) -> np.ndarray:
        """The mask file at ``path`` as uint8 class ids (H, W); a DatasetError naming the file and every
        value or colour (the first few) that is not a declared class."""
        if self.colours:
            rgb = decode_image(path, 3).astype(np.uint32)
            raw = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
            codes = np.array([(r << 16) | (g << 8) | b for r, g, b in self.values], dtype=np.uint32)
        else:
            raw, codes = decode_mask(path), np.array(self.values)
        order = np.argsort(codes)
        position = np.searchsorted(codes[order], raw).clip(0, len(codes) - 1)
        known = codes[order][position] == raw
        if not known.all():
            bad = np.unique(raw[~known])
            shown = ", ".join(str(_show(_unpack(int(v)) if self.colours else int(v))) for v in bad[:SHOWN])
            more = f" and {bad.size - SHOWN} more" if bad.size > SHOWN else ""
            kind = "colour(s)" if self.colours else "value(s)"
            raise DatasetError(f"mask {path} has {kind} {shown}{more} that no class has; declared: {self.describe()}")
        return order[position].astype(np.uint8)


def _text_value(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _value(value: Any, where: str) -> int | Colour:
    """An index-mask value 0..255 or an (r, g, b) colour, from an int, ``#rrggbb`` or ``[r, g, b]``."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255:
        return value
    if isinstance(value, str) and HEX_COLOUR.fullmatch(value):
        return _unpack(int(value[1:], 16))
    if isinstance(value, list) and len(value) == 3 and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value):
        return (value[0], value[1], value[2])
    raise DatasetError(f"{where} has value {value!r}: expected a mask value 0..255, a colour '#rrggbb' or [r, g, b]")


def _unpack(code: int) -> Colour:
    return (code >> 16) & 255, (code >> 8) & 255, code & 255


def _show(value: int | Colour) -> int | str:
    return "#{:02x}{:02x}{:02x}".format(*value) if isinstance(value, tuple) else value
