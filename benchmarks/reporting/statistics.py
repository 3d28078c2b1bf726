"""Whether a difference between methods is real: calibrated intervals over units, Holm, power and ranks.

**The unit of replication** is a run's (labelled subset, training seed) pair: a profile with
``split_seed: per_seed`` draws each seed its own labelled subset, one with a fixed ``split_seed``
repeats one subset (its intervals then say nothing about which images were labelled). Within a
unit every method sees the same labelled, validation and test images (checked by id).

Per cell (profile, dataset, labelled ratio, method) and protocol (``standard``: TP/FP/FN summed over
the images, IoU per defect class, mean over classes; ``paper``: per-image IoU averaged over the
images with defects), in percent, from the runs' per-image records (``per_image.npz``):

* **The estimate** is the mean over units of each unit's metric (of the paired difference
  method - baseline, unit by unit, for a comparison).
* **Its variance has two parts.** (1) Between units: s^2 / n, s the standard deviation of the n
  per-unit values; this holds each unit's own test-image noise too. (2) The part the units share
  because they are scored on the same test images (NEU-Seg's official test set is in every unit;
  MTiles units draw their own and overlap little): from each run's per-image linearisation
  (influence) psi_i of its metric (delta method: metric(weights) ~ metric + sum_i psi_i (w_i - 1)),
  the cross-unit covariance X = (1/n^2) sum_images [(sum_u psi_ui)^2 - sum_u psi_ui^2], scaled
  n / (n - 1) as X estimates (n - 1) / n of that variance. Var = s^2 / n + max(X, 0) n / (n - 1).
* **The interval** is estimate ± t(n - 1) sqrt(Var): a paired t-interval over units, widened by the
  shared test-set noise when units share test images. Why not the percentile bootstrap over seeds
  used before: with 3 units one replicate in 27 draws the same unit three times, so its 95 %
  interval ends near the extreme per-unit values, and its real false-positive rate was up to 21 %.
  Why n - 1 degrees of freedom and not Welch-Satterthwaite's: the latter grow exactly when s^2 is
  small by chance, and at 3 units its false-positive rate was 6-8 %. With n - 1 the interval is
  calibrated where the units' own spread dominates and conservative where the shared test-set
  noise does. ``benchmarks.reporting.calibration`` measures all three on simulated cells with the
  study's variance components (3 to 10 units, shared and per-unit test sets; docs/statistics.md
  shows the numbers), and tests/test_calibration.py checks the false-positive rate and coverage in
  CI. Everything is closed-form: no random numbers, so no mark depends on an RNG seed.
* **Marks** (``mark``): ▲ / ▼ when the two-sided t-test of the paired difference rejects 0 after
  **Holm's correction** over the comparisons of one table and protocol (``holm``; the 95 % interval
  shown is the unadjusted one, so an interval may exclude 0 without a mark), · no evidence
  otherwise. With fewer than ``MIN_UNITS`` paired units there is no test ("too few units").
* **Detectable effect** (``mde``): the smallest true difference the test would detect with 80 %
  power at the level Holm's first step applies (alpha / m for m comparisons in the table), from
  the observed variance: (t(1 - alpha / 2m, df) + t(0.8, df)) sqrt(Var). "No evidence" has a size.
* **P(improvement)** (rliable's probability of improvement, Agarwal et al., NeurIPS 2021, for one
  task): over every pair of a method run and a baseline run at the paired units, the fraction with
  metric_i > metric_j, a tie counting 1/2 (the Mann-Whitney U statistic / (n m)). It tells how often
  a run of the method beats a run of the baseline, not how sure the difference is.

Across cells (the dataset x ratio cells of a profile in which every method ran), from the cell
means: average ranks (1 = best, ties averaged) and the Friedman statistic, with a **permutation
p-value** that permutes the methods' labels within each block, one permutation shared by the blocks
of one dataset (they share its test set, e.g. NEU-Seg at 1 % and 2 %), so dependent blocks are not
counted as independent evidence (``N_PERMUTATIONS`` with a fixed seed; its Monte-Carlo error is
reported). The Nemenyi post-hoc test and critical difference (Demšar, JMLR 2006) assume independent
blocks: they are given only when no two blocks share a dataset.

Libraries: ``scipy.stats`` (t and studentized-range distributions, the Friedman statistic),
``statsmodels`` (Holm: ``multipletests``) and ``scikit-posthocs`` (Nemenyi p-values and the
critical-difference diagram).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scikit_posthocs
import scipy.stats
from statsmodels.stats.multitest import multipletests

from defectseg.benchmarks.reporting.aggregate import CELL_KEYS, aggregate
from defectseg.benchmarks.engine.io import ResultsError
from defectseg.benchmarks.engine.cells import check_one_configuration
from defectseg.benchmarks.engine.run_state import completed_run_metrics
from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.per_image import DEFAULT_PREDICTION, PerImageError, PixelCounts, iou_from_counts, paper_image_iou, read_per_image

BASELINE = "supervised"
CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.80
MIN_UNITS = 3
N_PERMUTATIONS = 20_000
RNG_SEED = 20_240_613  # the Friedman permutation test's only
BETTER, WORSE, NO_EVIDENCE = "▲", "▼", "·"
TOO_FEW_UNITS = "too few units"
NO_RECORDS = "no per-image records"
RULE = (
    f"{BETTER} significantly better / {WORSE} significantly worse than the baseline when the paired t-test over units "
    f"(same labelled subset, seed and test images; shared test-image noise included) rejects 0 at {ALPHA:g} after Holm's "
    f"correction over the table's comparisons, {NO_EVIDENCE} no evidence otherwise; the interval shown is the unadjusted "
    f"95 % one; no mark with fewer than {MIN_UNITS} paired units ({TOO_FEW_UNITS}) or without per-image records"
)

INTERVALS = ("95 % t-interval over units (unit: labelled subset x seed; variance from the units' spread plus the test-image "
             "noise units share; t with units - 1 degrees of freedom; calibration: docs/statistics.md)")
DETECTABLE = (f"MDE: the smallest true difference the test would detect with {POWER:.0%} power at the level Holm's first "
              f"step applies (alpha / comparisons in the table)")


# ---------------------------------------------------------------------------------------------
# protocols as ratios of per-image sums, with their linearisation


@dataclass(frozen=True)
class Protocol:
    """A metric computed from per-image features summed over images.

    ``features`` maps a run's counts to an (N images, F) array; ``metric`` maps sums over images
    (..., F) to the metric (...) as a fraction, NaN where undefined; ``gradient`` maps the same sums
    to d metric / d sums (..., F), so an image's influence on the metric is gradient . its features.
    """

    name: str
    features: Callable[[PixelCounts], np.ndarray]
    metric: Callable[[np.ndarray], np.ndarray]
    gradient: Callable[[np.ndarray], np.ndarray]


def _standard_features(counts: PixelCounts) -> np.ndarray:
    return np.concatenate([counts.tp, counts.fp, counts.fn], axis=1).astype(np.float64)


def _class_iou(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(IoU, union, present) of the defect classes from TP|FP|FN sums (..., 3C); IoU 0 where absent."""
    tp, fp, fn = (part[..., 1:] for part in np.split(sums, 3, axis=-1))
    union = tp + fp + fn
    present = union > 0
    return np.where(present, iou_from_counts(tp, fp, fn), 0.0), union, present


def _standard_metric(sums: np.ndarray) -> np.ndarray:
    """Mean IoU over the defect classes with pixels, from TP|FP|FN sums (..., 3C)."""
    iou, _, present = _class_iou(sums)
    number = present.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(number > 0, iou.sum(-1) / np.maximum(number, 1), np.nan)


def _standard_gradient(sums: np.ndarray) -> np.ndarray:
    """d mIoU / d (TP|FP|FN sums): per present class c, (1 - IoU_c) / U_c for TP, -IoU_c / U_c for FP and FN,
    divided by the number of present classes; 0 for background and absent classes."""
    iou, union, present = _class_iou(sums)
    scale = np.where(present, 1.0 / np.where(present, union, 1.0), 0.0) / np.maximum(present.sum(-1, keepdims=True), 1)
    zero = np.zeros_like(iou[..., :1])
    d_tp, d_other = (1.0 - iou) * scale, -iou * scale
    return np.concatenate([zero, d_tp, zero, d_other, zero, d_other], axis=-1)


def _paper_features(counts: PixelCounts) -> np.ndarray:
    iou = paper_image_iou(counts)
    scored = ~np.isnan(iou)
    return np.stack([np.where(scored, iou, 0.0), scored.astype(np.float64)], axis=1)


def _paper_metric(sums: np.ndarray) -> np.ndarray:
    """Mean per-image IoU of the scored images, from (sum of IoU, number scored) sums (..., 2)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums[..., 1] > 0, sums[..., 0] / np.maximum(sums[..., 1], 1e-300), np.nan)


def _paper_gradient(sums: np.ndarray) -> np.ndarray:
    """d (S / K) / d (S, K) = (1 / K, -S / K^2); 0 where no image is scored."""
    scored = sums[..., 1] > 0
    k = np.where(scored, sums[..., 1], 1.0)
    return np.where(scored[..., None], np.stack([1.0 / k, -sums[..., 0] / k**2], axis=-1), 0.0)


PROTOCOLS = {
    "standard": Protocol("standard", _standard_features, _standard_metric, _standard_gradient),
    "paper": Protocol("paper", _paper_features, _paper_metric, _paper_gradient),
}


def run_metric(features: np.ndarray, protocol: Protocol) -> float:
    """One run's metric (fraction) on all its test images."""
    return float(protocol.metric(features.sum(0)))


def linearise(features: np.ndarray, protocol: Protocol) -> tuple[np.ndarray, np.ndarray]:
    """(metric (...), influence (..., N)) of runs' per-image features (..., N, F): the metric, and each
    image's first-order effect on it (gradient at the sums . the image's features; sums to 0 over images)."""
    sums = features.sum(-2)
    return protocol.metric(sums), np.einsum("...nf,...f->...n", features, protocol.gradient(sums))


# ---------------------------------------------------------------------------------------------
# the interval over units


@dataclass(frozen=True)
class UnitInterval:
    """Estimate, standard error, degrees of freedom, 95 % interval and two-sided p-value (of estimate = 0),
    arrays of one shape (one entry per simulated or real cell); fractions."""

    estimate: np.ndarray
    se: np.ndarray
    df: np.ndarray
    low: np.ndarray
    high: np.ndarray
    p_value: np.ndarray


def shared_image_variance(influence: np.ndarray, image_index: np.ndarray) -> np.ndarray:
    """The variance of the mean over units that comes from test images the units share (..., ), from the
    units' influences (..., n, N) and each image's position in the union of images (n, N) (see module doc)."""
    n = influence.shape[-2]
    flat_index = np.asarray(image_index).reshape(-1)
    order = np.argsort(flat_index, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(flat_index[order]) != 0])
    flat = influence.reshape(*influence.shape[:-2], -1)[..., order]
    per_image = np.add.reduceat(flat, starts, axis=-1)
    cross = ((per_image**2).sum(-1) - (flat**2).sum(-1)) / n**2
    return np.maximum(cross, 0.0) * n / (n - 1)


def unit_interval(values: np.ndarray, influence: np.ndarray, image_index: np.ndarray,
                  confidence: float = CONFIDENCE) -> UnitInterval:
    """The interval of the mean over units of ``values`` (..., n), with per-unit image influences
    (..., n, N) and the images' positions in their union ``image_index`` (n, N); n >= 2."""
    n = values.shape[-1]
    se = np.sqrt(values.var(-1, ddof=1) / n + shared_image_variance(influence, image_index))
    df = np.full_like(se, n - 1.0)
    estimate = values.mean(-1)
    half = scipy.stats.t.ppf(0.5 + confidence / 2, df) * se
    with np.errstate(invalid="ignore", divide="ignore"):
        statistic = np.where(se > 0, np.abs(estimate) / np.where(se > 0, se, 1.0), np.where(estimate == 0, 0.0, np.inf))
    return UnitInterval(estimate, se, df, estimate - half, estimate + half, 2 * scipy.stats.t.sf(statistic, df))


def detectable_effect(se: float, df: float, comparisons: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference a two-sided t-test at alpha / comparisons detects with ``power``."""
    level = alpha / max(comparisons, 1)
    return float((scipy.stats.t.ppf(1 - level / 2, df) + scipy.stats.t.ppf(power, df)) * se)


def probability_of_improvement(method: Sequence[float], baseline: Sequence[float], tie: float = 1e-12) -> float:
    """P(X > Y) over all (method run, baseline run) pairs, ties (closer than ``tie``, float sums) 1/2."""
    x, y = np.asarray(method, dtype=np.float64)[:, None], np.asarray(baseline, dtype=np.float64)[None, :]
    equal = np.abs(x - y) <= tie
    return float(((x > y) & ~equal).mean() + 0.5 * equal.mean())


def mark(estimate: float, p_value: float, alpha: float = ALPHA) -> str:
    """▲ / ▼ when the (Holm-adjusted) p-value is below alpha, by the sign of the estimate; · otherwise."""
    if p_value < alpha and estimate > 0:
        return BETTER
    if p_value < alpha and estimate < 0:
        return WORSE
    return NO_EVIDENCE


def holm(comparisons: pd.DataFrame, family: Sequence[str], alpha: float = ALPHA) -> pd.DataFrame:
    """``comparisons`` with ``p_holm``, ``mark`` and ``mde`` (points) decided within each ``family`` group:
    Holm's step-down correction over the tested rows (those with a p-value), the detectable effect at
    alpha / (number of tested rows). Untested rows keep an empty mark."""
    result = comparisons.copy()
    result["p_holm"], result["mde"] = math.nan, math.nan
    tested = result["p_value"].notna()
    for _, group in result[tested].groupby(list(family), sort=False, dropna=False):
        adjusted = multipletests(group["p_value"].to_numpy(dtype=np.float64), alpha=alpha, method="holm")[1]
        result.loc[group.index, "p_holm"] = adjusted
        result.loc[group.index, "mde"] = [detectable_effect(se, df, len(group), alpha) for se, df in zip(group["se"], group["df"])]
    result.loc[tested, "mark"] = [mark(d, p, alpha) for d, p in zip(result.loc[tested, "diff"], result.loc[tested, "p_holm"])]
    return result


# ---------------------------------------------------------------------------------------------
# runs -> records


@dataclass(frozen=True)
class RunRecords:
    """The default prediction's per-image features of one run, per protocol."""

    seed: int
    path: Path
    image_ids: tuple[str, ...]
    features: dict[str, np.ndarray]

    @classmethod
    def from_counts(cls, seed: int, path: Path, image_ids: Sequence[str], counts: PixelCounts) -> RunRecords:
        return cls(seed, Path(path), tuple(image_ids), {name: p.features(counts) for name, p in PROTOCOLS.items()})


def load_run_records(directory: Path) -> RunRecords | None:
    """A run's records, or None when it has no ``per_image.npz``; a corrupt file is a ResultsError."""
    path = Path(directory) / layout.PER_IMAGE
    if not path.is_file():
        return None
    try:
        records = read_per_image(path)
    except PerImageError as error:
        raise ResultsError(str(error)) from error
    seed = int(Path(directory).name.removeprefix("seed"))
    return RunRecords.from_counts(seed, path, records.image_ids, records.predictions[DEFAULT_PREDICTION])


def run_set_records(directories: Iterable[str | Path],
                    load: Callable[[Path], RunRecords | None] = load_run_records) -> list[RunRecords] | None:
    """The records of some runs (one per seed, each read by ``load``) in seed order; None if any of them has none."""
    loaded = [load(Path(d)) for d in directories]
    return None if any(r is None for r in loaded) else sorted(loaded, key=lambda r: r.seed)


def check_paired(method: RunRecords, baseline: RunRecords) -> None:
    """Runs compared image by image must hold the same test images in the same order."""
    if method.image_ids != baseline.image_ids:
        raise ResultsError(
            f"{method.path} and {baseline.path}: different test images (seed {method.seed}); "
            "paired runs need the same split (same dataset and split_seed)"
        )


# ---------------------------------------------------------------------------------------------
# per cell


def _stacked(runs: Sequence[RunRecords], protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """The runs' per-image features as one (n, N, F) array (zero rows pad shorter runs: they weigh
    nothing) and each image's position in the union of the runs' image ids (n, N)."""
    union = {image: k for k, image in enumerate(sorted({i for r in runs for i in r.image_ids}))}
    width = max(len(r.image_ids) for r in runs)
    features = np.zeros((len(runs), width, runs[0].features[protocol].shape[1]))
    index = np.full((len(runs), width), len(union))  # padding: one position no real image has
    for u, run in enumerate(runs):
        features[u, : len(run.image_ids)] = run.features[protocol]
        index[u, : len(run.image_ids)] = [union[i] for i in run.image_ids]
    return features, index


def cell_interval(runs: Sequence[RunRecords], protocol: str) -> UnitInterval:
    """The interval of a cell's mean metric (fractions) over its units."""
    features, index = _stacked(runs, protocol)
    values, influence = linearise(features, PROTOCOLS[protocol])
    return unit_interval(values, influence, index)


def _cell_row(runs: list[RunRecords] | None, protocol: str) -> dict[str, object]:
    """The 95 % CI (%) of one cell's mean, or the note why there is none."""
    if runs is None:
        return {"ci_low": math.nan, "ci_high": math.nan, "note": NO_RECORDS}
    if len(runs) < 2:
        return {"ci_low": math.nan, "ci_high": math.nan, "note": TOO_FEW_UNITS}
    result = cell_interval(runs, protocol)
    return {"ci_low": 100 * float(result.low), "ci_high": 100 * float(result.high), "note": ""}


COMPARISON_COLUMNS = ("diff", "diff_ci_low", "diff_ci_high", "se", "df", "p_value", "p_holm", "mde", "p_improvement", "units",
                      "mark", "note")


@dataclass(frozen=True)
class Contrast:
    """A signed sum of runs' metrics taken unit by unit (``contrast``): the units (seeds) every side ran, each
    side's metric on them (fractions, seed order) and the interval of the sum; no interval below ``MIN_UNITS``."""

    seeds: list[int]
    side_values: list[np.ndarray]
    interval: UnitInterval | None


def contrast(sides: Sequence[tuple[float, Sequence[RunRecords]]], protocol: str) -> Contrast:
    """sum_k weight_k metric_k per unit over the units that every side ran, e.g. [(1, method), (-1, baseline)] for a
    paired difference; all runs of a unit must hold the same test images (``check_paired``), so the shared test-image
    noise enters through the summed per-image influences (module doc)."""
    by_seed = [{r.seed: r for r in runs} for _, runs in sides]
    seeds = sorted(set.intersection(*(set(runs) for runs in by_seed)))
    for other in by_seed[1:]:
        for seed in seeds:
            check_paired(by_seed[0][seed], other[seed])
    if not seeds:
        return Contrast([], [], None)
    spec, side_values = PROTOCOLS[protocol], []
    values, influence, index = 0.0, 0.0, None
    for (weight, _), runs in zip(sides, by_seed):
        features, index = _stacked([runs[seed] for seed in seeds], protocol)
        side, side_influence = linearise(features, spec)
        side_values.append(side)
        values, influence = values + weight * side, influence + weight * side_influence
    interval = unit_interval(values, influence, index) if len(seeds) >= MIN_UNITS else None
    return Contrast(seeds, side_values, interval)


def compare(method: list[RunRecords] | None, baseline: list[RunRecords] | None, protocol: str) -> dict[str, object]:
    """Paired difference (points) over the units both ran, its unadjusted 95 % CI, standard error, degrees of
    freedom, p-value, P(improvement), the number of units and the unadjusted mark (``holm`` decides the
    table's marks); or the note why there is no test."""
    empty = {column: math.nan for column in COMPARISON_COLUMNS} | {"units": 0, "mark": "", "note": ""}
    if method is None or baseline is None:
        return {**empty, "note": NO_RECORDS}
    paired = contrast([(1.0, method), (-1.0, baseline)], protocol)
    if paired.interval is None:
        return {**empty, "units": len(paired.seeds), "note": TOO_FEW_UNITS}
    result, (ours, theirs) = paired.interval, paired.side_values
    return {
        **empty,
        "diff": 100 * float(result.estimate), "diff_ci_low": 100 * float(result.low), "diff_ci_high": 100 * float(result.high),
        "se": 100 * float(result.se), "df": float(result.df), "p_value": float(result.p_value),
        "p_improvement": probability_of_improvement(ours, theirs), "units": len(paired.seeds),
        "mark": mark(float(result.estimate), float(result.p_value)),
    }


def baselines_for(extra: Sequence[str] = ()) -> list[str]:
    """``supervised`` and the methods named with ``--baseline``, without repeats."""
    return list(dict.fromkeys([BASELINE, *extra]))


def primary_baseline(extra: Sequence[str] = ()) -> str:
    """The baseline the main tables and figures mark against: the first ``--baseline``, else supervised."""
    return extra[0] if extra else BASELINE


@dataclass(frozen=True)
class CellStatistics:
    """``cells``: one row per (profile, dataset, ratio, method, protocol) with ``ci_low``,
    ``ci_high`` (%) and ``note``; ``comparisons``: one row per such cell and baseline with the
    ``COMPARISON_COLUMNS`` (marks after Holm over each profile, protocol and baseline)."""

    cells: pd.DataFrame
    comparisons: pd.DataFrame


FAMILY = ("profile", "protocol", "baseline")  # the comparisons of one table: Holm's family


def cell_statistics(runs: pd.DataFrame, baselines: Sequence[str] = (BASELINE,),
                    run_set: Callable[[Iterable[str]], list[RunRecords] | None] = run_set_records) -> CellStatistics:
    """Intervals of every cell of ``runs`` (collect_runs rows) and its comparisons with ``baselines``; ``run_set``
    loads a cell's records (``run_set_records``, or a cache of them such as ``ResultsView.run_set_records``)."""
    records: dict[tuple, list[RunRecords] | None] = {}
    for key, group in runs.groupby(CELL_KEYS, sort=True):
        records[key] = run_set(group["path"])
    cells, comparisons = [], []
    for key, cell_runs in records.items():
        for protocol in PROTOCOLS:
            labels = {**dict(zip(CELL_KEYS, key)), "protocol": protocol}
            cells.append({**labels, **_cell_row(cell_runs, protocol)})
            for baseline in baselines:
                baseline_key = (*key[:3], baseline)
                if baseline == key[3] or baseline_key not in records:
                    continue
                comparisons.append({**labels, "baseline": baseline, **compare(cell_runs, records[baseline_key], protocol)})
    cell_columns = [*CELL_KEYS, "protocol", "ci_low", "ci_high", "note"]
    frame = pd.DataFrame(comparisons, columns=[*CELL_KEYS, "protocol", "baseline", *COMPARISON_COLUMNS])
    return CellStatistics(pd.DataFrame(cells, columns=cell_columns), holm(frame, FAMILY))


def completed_seed_runs(folder: Path) -> list[Path]:
    """The completed runs (``run_state.completed_run_metrics``) among the ``seed<k>`` folders of one method folder."""
    runs = [d for d in Path(folder).glob("seed*") if d.is_dir() and completed_run_metrics(d) is not None]
    if not runs:
        raise ResultsError(f"{folder}: no completed run (expected seed<k>/{layout.METRICS} below a method folder, "
                           "e.g. results/runs/<profile>/<dataset>/<ratio>/<method>)")
    return runs


def compare_run_folders(method: Path, baseline: Path) -> pd.DataFrame:
    """The paired comparison of two method folders' runs, unit by unit, whatever profile or results
    tree they lie in (e.g. one method run on two machines or at two precisions): one row per protocol
    with each side's per-unit metrics (%) and the ``compare`` columns (difference method - baseline;
    one comparison per protocol, so Holm changes nothing)."""
    sides = {}
    for name, folder in (("method", method), ("baseline", baseline)):
        runs = completed_seed_runs(folder)
        check_one_configuration(sorted(runs))  # as the tables: one experiment per side
        records = run_set_records(runs)
        if records is None:
            raise ResultsError(f"{folder}: a run without {layout.PER_IMAGE}; the comparison needs per-image records")
        sides[name] = records
    rows = []
    for protocol, spec in PROTOCOLS.items():
        values = {f"{name}_by_seed": {r.seed: 100 * run_metric(r.features[protocol], spec) for r in records}
                  for name, records in sides.items()}
        rows.append({"protocol": protocol, **values, **compare(sides["method"], sides["baseline"], protocol)})
    return holm(pd.DataFrame(rows), ["protocol"])


# ---------------------------------------------------------------------------------------------
# across cells: ranks, Friedman (permutation p-value), Nemenyi


@dataclass(frozen=True)
class RankAnalysis:
    """Ranks of k methods over N complete cells (blocks); the Friedman statistic with its permutation
    p-value where defined (``friedman_p_error``: its Monte-Carlo standard error), and Nemenyi where the
    blocks are independent (no two share a dataset)."""

    average_ranks: pd.Series  # by method, 1 = best, ascending
    blocks: list[tuple]
    excluded: list[tuple]  # cells left out because some method has no run there
    friedman_statistic: float = math.nan
    friedman_p: float = math.nan
    friedman_p_error: float = math.nan
    critical_difference: float = math.nan
    nemenyi_p: pd.DataFrame | None = None
    note: str = ""

    @property
    def testable(self) -> bool:
        """Whether the Nemenyi comparison of pairs is given."""
        return self.nemenyi_p is not None


def nemenyi_critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """CD = q_alpha sqrt(k (k + 1) / (6 n)), q_alpha = studentized range quantile (k, inf) / sqrt 2."""
    q_alpha = scipy.stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q_alpha * math.sqrt(k * (k + 1) / (6 * n)))


def _ranks(scores: np.ndarray) -> np.ndarray:
    """Each row's ranks, 1 = highest score, ties averaged."""
    return scipy.stats.rankdata(-scores, axis=-1, method="average")


def average_ranks(scores: pd.DataFrame) -> pd.Series:
    """Mean over rows (blocks) of each column's rank, 1 = highest score, ties averaged."""
    ranks = _ranks(scores.to_numpy(dtype=np.float64))
    return pd.Series(ranks.mean(0), index=scores.columns).sort_values(kind="stable")


def _friedman_uncorrected(ranks: np.ndarray) -> np.ndarray:
    """Friedman's chi-square without the tie correction, of ranks (..., N blocks, k methods)."""
    n, k = ranks.shape[-2:]
    return 12 / (n * k * (k + 1)) * (ranks.sum(-2) ** 2).sum(-1) - 3 * n * (k + 1)


def friedman_permutation_p(scores: np.ndarray, groups: Sequence[object], permutations: int = N_PERMUTATIONS,
                           seed: int = RNG_SEED) -> tuple[float, float, float]:
    """(statistic, p-value, its Monte-Carlo standard error) of the Friedman test of ``scores`` (N blocks, k
    methods). Under the null the methods' labels are exchangeable within a block; blocks of one group (one
    dataset: one test set) are permuted together. p = (1 + #{T* >= T}) / (1 + permutations). Permuting
    labels keeps each block's ranks, so the tie correction is one factor for all T* and is left out of the
    comparison; the statistic reported is scipy's (tie-corrected)."""
    ranks = _ranks(scores)
    labels = np.unique(np.asarray(groups, dtype=str), return_inverse=True)[1]
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((permutations, labels.max() + 1, ranks.shape[1])), axis=-1)[:, labels, :]
    null = _friedman_uncorrected(np.take_along_axis(np.broadcast_to(ranks, order.shape), order, axis=-1))
    p = (1 + int((null >= _friedman_uncorrected(ranks) - 1e-9).sum())) / (1 + permutations)
    statistic = scipy.stats.friedmanchisquare(*scores.T).statistic
    return float(statistic), p, math.sqrt(p * (1 - p) / permutations)


def cell_scores(runs: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean of ``column`` over seeds, rows the (dataset, ratio) cells that have runs, columns methods (NaN: no run)."""
    means = aggregate(runs, ["dataset", "ratio", "method"], [column])
    return means.set_index(["dataset", "ratio", "method"])[f"{column}_mean"].unstack("method")


def rank_analysis(scores: pd.DataFrame, alpha: float = ALPHA) -> RankAnalysis:
    """Ranks, Friedman and (for independent blocks) Nemenyi of ``scores`` (rows: (dataset, ratio) cells,
    columns: methods; NaN: no run). Blocks sharing a dataset are permuted together."""
    complete = scores.notna().all(axis=1)
    blocks, excluded = list(scores.index[complete]), list(scores.index[~complete])
    matrix = scores[complete]
    k, n = matrix.shape[1], matrix.shape[0]
    if n == 0:
        return RankAnalysis(pd.Series(dtype=float), blocks, excluded, note="no cell in which every method ran")
    ranks = average_ranks(matrix)
    if k < 3 or n < 2:
        return RankAnalysis(ranks, blocks, excluded, note=f"the Friedman test needs at least 3 methods and 2 cells (have {k} and {n})")
    groups = [block[0] if isinstance(block, tuple) else block for block in blocks]
    statistic, p, error = friedman_permutation_p(matrix.to_numpy(dtype=np.float64), groups)
    if len(set(groups)) < n:
        return RankAnalysis(ranks, blocks, excluded, statistic, p, error,
                            note="no Nemenyi test: some cells share a dataset's test set, so the blocks are not independent")
    nemenyi = scikit_posthocs.posthoc_nemenyi_friedman(matrix.reset_index(drop=True))
    return RankAnalysis(ranks, blocks, excluded, statistic, p, error, nemenyi_critical_difference(k, n, alpha),
                        nemenyi.loc[ranks.index, ranks.index])
