"""The training loops of the released scripts (UAPS, simEps, SSL4MIS), as numbers (docs/fidelity.md).

Each UAPS and simEps script runs ``for epoch in range(1, epochs)`` and, inside, ``iter_per_epoch`` iterations
(``range(1, iter_per_epoch)``, or ``range(0, ...)`` in the simEps DAGM script); ``epochs`` and
``epoch_length`` below are the counts those loops run. Each ramps its weights with
``sigmoid_rampup(iter_num // ramp_epoch, 200)`` and steps one ``ReduceLROnPlateau(mode="max",
patience=50, min_lr=...)`` per epoch. Both the methods' ramp-ups under the ``authors`` recipe
(``rampup_fraction``) and the runner's loop settings of that recipe (``benchmarks.engine.recipes``)
are derived from these numbers, so the two agree by construction; tests/test_fidelity.py checks
them against the scripts' own numbers. The SSL4MIS scripts (the baselines' released code) ramp over
the whole run (``SSL4MIS_RAMPUP``). ``per_dataset`` reads any per-dataset table of released values.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

RAMPUP_EPOCHS = 200  # --consistency_rampup 200 in every script
# The SSL4MIS 2D scripts ramp their consistency weight with sigmoid_rampup(iter_num // 150, 200):
# 30,000 iterations, their default max_iterations, so over the whole run (docs/fidelity.md).
SSL4MIS_RAMPUP: dict[str, Any] = {"rampup_fraction": 1.0}

Entry = TypeVar("Entry")  # an entry of a per-dataset table of released values


def per_dataset(table: Mapping[str, Entry], dataset: str) -> Entry:
    """``table[dataset]``; a dataset without its own released script gets the NEU-Seg (default) script's entry."""
    return table.get(dataset, table["neu"])


@dataclass(frozen=True)
class ReleasedLoop:
    """One script's loop: ``epochs`` epochs of ``epoch_length`` iterations, Adam at ``lr``, the
    plateau schedule's floor ``min_lr`` and patience (in epochs), the ramp's ``iter_num // ramp_epoch``."""

    epochs: int
    epoch_length: int
    ramp_epoch: int
    lr: float
    min_lr: float
    patience: int = 50

    @property
    def iterations(self) -> int:
        return self.epochs * self.epoch_length

    @property
    def rampup_fraction(self) -> float:
        """The ramp's length, 200 ramp epochs, as a fraction of the run (``Method.rampup``)."""
        return RAMPUP_EPOCHS * self.ramp_epoch / self.iterations

    def train_settings(self) -> dict[str, Any]:
        """The runner's train settings of this loop: iterations, learning rate and its floor, plateau patience in iterations."""
        return {"iterations": self.iterations, "lr": self.lr, "min_lr": self.min_lr, "lr_patience": self.patience * self.epoch_length}


# github.com/djene-mengistu/UAPS at 182a1b8; lines: lr, epochs, iter_per_epoch, scheduler, loops, ramp
UAPS_LOOPS: dict[str, ReleasedLoop] = {
    "neu": ReleasedLoop(799, 59, 80, 1e-3, 1e-8),  # UAPS_train.py:44,66,78,113,127,159,279
    "mtiles": ReleasedLoop(799, 19, 50, 2e-3, 1e-8),  # MTiles-Dataset-codes/UAPS_train.py:45,63,74,104,117,149,282
    "dagm": ReleasedLoop(799, 29, 60, 1e-3, 1e-6),  # DAGM-Dataset-codes/UAPS_train.py:41,59,70,100,114,145,250
}
# github.com/djene-mengistu/simEps at 17de20a; the same lines
SIMEPS_LOOPS: dict[str, ReleasedLoop] = {
    "neu": ReleasedLoop(799, 59, 150, 1e-3, 1e-7),  # simEps_train.py:41,59,75,123-125,139,191,312
    "mtiles": ReleasedLoop(599, 29, 50, 2e-3, 1e-7),  # MTiles-Dataset-codes/simEps_train.py:37,55,70,116-118,133,189,306
    "dagm": ReleasedLoop(799, 30, 60, 2e-3, 1e-8),  # DAGM-Dataset-codes/simEps_model_train.py:39,57,72,122-124,140,196,356
}
