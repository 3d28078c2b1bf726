"""The project's import namespace: ``defectseg.datasets``, ``defectseg.methods`` and ``defectseg.benchmarks``.

The code lives in the top-level folders ``datasets/``, ``methods/`` and ``benchmarks/`` (the design
card's layout); importing it as ``defectseg.*`` keeps those short, common names out of a user's
environment, where ``datasets`` is also a widely used distribution. An installed copy holds the
folders inside this package; in a clone they sit beside it, and this package's path reaches them.
"""
from pathlib import Path

_here = Path(__file__).resolve().parent
if not (_here / "methods").is_dir():  # a clone: the code sits beside this folder
    __path__.append(str(_here.parent))
