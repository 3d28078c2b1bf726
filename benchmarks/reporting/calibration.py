"""Does a 95 % interval mean 95 %? Simulated cells with known effects, scored by the study's procedures.

A simulated cell is what one table cell holds: n units (labelled subset x seed), each with a method
run and a baseline run scored on the unit's test images. Per-image IoU of the baseline is
``q_i + e``; of the method ``q_i + effect + a_u + h_i + e'``, where

* ``q_i`` is the image's difficulty (shared by both runs: what pairing removes),
* ``a_u`` the unit's own difference (between-unit spread, sd = ``ratio`` x the image-sampling sd of
  one unit's difference),
* ``h_i`` the method's systematic gain or loss on image i, the same in every unit that holds the
  image (a ``shared_fraction`` of the per-image difference variance; 0-0.3 in the committed study),
* ``e``, ``e'`` per run and image noise.

Test-image designs: ``shared`` (every unit scores the same images, as NEU-Seg's official test set)
and ``per_unit`` (each unit draws its own test images from a pool, as MTiles does). Image counts
and spreads default to the committed study's (NEU-Seg: 840 images, per-image difference sd ~0.09;
MTiles: 39 of 392 images, sd ~0.22). The standard protocol sums TP / FP / FN: an image with IoU x
and union area A holds TP = x A and FP + FN = (1 - x) A, with lognormal areas.

``miss_rate`` scores a procedure on such cells (with effect 0: the false-positive rate of a mark; else
1 - coverage):
``t_interval`` (``benchmarks.reporting.statistics.unit_interval``, the tables' procedure) and
``percentile_bootstrap`` (the procedure the tables used before: seeds with replacement, then test
images within each seed, percentile interval; image draws here are Poisson(1) weights, the usual
large-N stand-in for the multinomial). ``python -m defectseg.benchmarks.reporting.calibration`` prints both
side by side (docs/statistics.md holds its output).
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from defectseg.benchmarks.reporting.statistics import CONFIDENCE, PROTOCOLS, Protocol, linearise, unit_interval

DESIGNS = {"shared": (840, 840, 0.09), "per_unit": (39, 392, 0.22)}  # images per unit, pool, per-image difference sd


@dataclass(frozen=True)
class Scenario:
    """One kind of simulated cell."""

    units: int
    ratio: float  # between-unit sd of the difference / image-sampling sd of one unit's difference
    design: str = "shared"
    protocol: str = "paper"
    effect: float = 0.0  # true difference (fraction)
    shared_fraction: float = 0.25


@dataclass(frozen=True)
class Cells:
    """``count`` simulated cells: features (count, n, N, F) of the method and baseline runs, the images'
    positions in their union (n, N) (one layout for all cells of a batch)."""

    method: np.ndarray
    baseline: np.ndarray
    image_index: np.ndarray


def _features(iou: np.ndarray, area: np.ndarray, protocol: str) -> np.ndarray:
    """Per-image features of runs with per-image IoU ``iou`` (..., N) on images of union area ``area``."""
    if protocol == "paper":
        return np.stack([iou, np.ones_like(iou)], axis=-1)
    zero = np.zeros_like(iou)
    tp, other = iou * area, (1 - iou) * area / 2  # one defect class beside the background
    return np.stack([zero, tp, zero, other, zero, other], axis=-1)


def simulate(scenario: Scenario, count: int, rng: np.random.Generator) -> Cells:
    """``count`` cells of ``scenario`` (each with its own images, units and noise)."""
    per_unit, pool, spread = DESIGNS[scenario.design]
    n = scenario.units
    if scenario.design == "shared":
        index = np.tile(np.arange(per_unit), (n, 1))
    else:
        index = np.sort(np.stack([rng.choice(pool, per_unit, replace=False) for _ in range(n)]), axis=1)
    difficulty = rng.normal(0.6, 0.2, (count, pool))[:, index]
    area = rng.lognormal(6.0, 1.0, (count, pool))[:, index]
    systematic = rng.normal(0.0, spread * np.sqrt(scenario.shared_fraction), (count, pool))[:, index]
    noise = spread * np.sqrt((1 - scenario.shared_fraction) / 2)
    unit_sd = scenario.ratio * spread / np.sqrt(per_unit)
    baseline = difficulty + rng.normal(0.0, noise, difficulty.shape)
    method = (difficulty + scenario.effect + rng.normal(0.0, unit_sd, (count, n, 1)) + systematic
              + rng.normal(0.0, noise, difficulty.shape))
    return Cells(_features(method, area, scenario.protocol), _features(baseline, area, scenario.protocol), index)


def t_interval(cells: Cells, protocol: Protocol) -> tuple[np.ndarray, np.ndarray]:
    """The tables' interval (low, high) of each cell's paired difference."""
    ours, ours_influence = linearise(cells.method, protocol)
    theirs, theirs_influence = linearise(cells.baseline, protocol)
    result = unit_interval(ours - theirs, ours_influence - theirs_influence, cells.image_index)
    return result.low, result.high


def percentile_bootstrap(cells: Cells, protocol: Protocol, replicates: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The earlier tables' interval: per replicate, n units drawn with replacement, each drawn unit's
    images reweighted (Poisson(1)), the paired difference averaged over the drawn units; 2.5 / 97.5 %."""
    rng = np.random.default_rng(seed)
    count, n, images, _ = cells.method.shape
    lows, highs = np.empty(count), np.empty(count)
    tail = 100 * (1 - CONFIDENCE) / 2
    for c in range(count):
        drawn = rng.integers(n, size=(replicates, n))
        weights = rng.poisson(1.0, (replicates, n, images)).astype(np.float64)
        difference = np.empty((replicates, n))
        for u in range(n):
            slots = drawn == u
            w = weights[slots]
            difference[slots] = protocol.metric(w @ cells.method[c, u]) - protocol.metric(w @ cells.baseline[c, u])
        lows[c], highs[c] = np.percentile(np.nanmean(difference, axis=1), [tail, 100 - tail])
    return lows, highs


Procedure = Callable[[Cells, Protocol], tuple[np.ndarray, np.ndarray]]
PROCEDURES: dict[str, Procedure] = {"t_interval": t_interval, "percentile_bootstrap": percentile_bootstrap}


def _batches(scenario: Scenario, count: int, seed: int, batch: int = 200) -> Iterator[Cells]:
    rng = np.random.default_rng(seed)
    for start in range(0, count, batch):
        yield simulate(scenario, min(batch, count - start), rng)


def miss_rate(scenario: Scenario, count: int, procedure: Procedure = t_interval, seed: int = 0) -> float:
    """The fraction of ``count`` simulated cells whose interval misses the true effect: with effect 0 the
    false-positive rate of a mark, otherwise 1 - coverage."""
    protocol = PROTOCOLS[scenario.protocol]
    misses = 0
    for cells in _batches(scenario, count, seed):
        low, high = procedure(cells, protocol)
        misses += int(((low > scenario.effect) | (high < scenario.effect)).sum())
    return misses / count


def calibration_rows(scenarios: list[Scenario], counts: dict[str, int], procedures: dict[str, Procedure] = PROCEDURES,
                     seed: int = 0) -> Iterator[dict[str, object]]:
    """One row per scenario: each procedure's miss rate (%) on ``counts[name]`` simulated cells."""
    for scenario in scenarios:
        row: dict[str, object] = {"design": scenario.design, "protocol": scenario.protocol, "units": scenario.units,
                                  "ratio": scenario.ratio, "effect": scenario.effect}
        for name, procedure in procedures.items():
            row[name] = 100 * miss_rate(scenario, counts[name], procedure, seed)
        yield row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="False-positive rate and coverage of the old and new intervals on simulated cells")
    parser.add_argument("--cells", type=int, default=2000, help="simulated cells per scenario for the t-interval (default 2000)")
    parser.add_argument("--bootstrap-cells", type=int, default=200,
                        help="simulated cells per scenario for the slower percentile bootstrap (default 200)")
    args = parser.parse_args(argv)
    scenarios = [Scenario(units, ratio, design, protocol, effect)
                 for design in DESIGNS for protocol in PROTOCOLS for effect in (0.0, 0.02) for units in (3, 5, 10)
                 for ratio in (0.0, 1.0, 3.0)]
    counts = {"t_interval": args.cells, "percentile_bootstrap": args.bootstrap_cells}
    start = time.perf_counter()
    print("| design | protocol | effect | units | ratio | t-interval miss % | percentile bootstrap miss % |")
    print("|---|---|---|---|---|---|---|")
    for row in calibration_rows(scenarios, counts):
        print(f"| {row['design']} | {row['protocol']} | {row['effect']:g} | {row['units']} | {row['ratio']:g} | "
              f"{row['t_interval']:.1f} | {row['percentile_bootstrap']:.1f} |", flush=True)
    errors = ", ".join(f"{name} {100 * np.sqrt(0.05 * 0.95 / count):.1f}" for name, count in counts.items())
    print(f"\nMonte-Carlo standard error of a 5 % rate (points): {errors}; {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
