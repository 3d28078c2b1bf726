"""Whether a difference between methods is real: bootstrap intervals, paired tests and ranks.

Per cell (profile, dataset, labelled ratio, method), from the runs' per-image records
(``per_image.npz``, default prediction), for both protocols (``standard``: TP/FP/FN summed over
the images, IoU per defect class, mean over classes; ``paper``: per-image IoU averaged over the
images with defects), in percent:

* **Mean and 95 % CI.** The cell metric is the mean over seeds of each run's metric (as the
  tables' mean). Stratified percentile bootstrap (``N_RESAMPLES`` replicates, fixed ``RNG_SEED``
  so tables are reproducible): draw the seeds with replacement, then, within each drawn seed,
  its test images with replacement; recompute each drawn run's metric on its drawn images
  (standard: IoU of the summed counts; paper: mean per-image IoU of the drawn images with
  defects) and average over the drawn seeds. The CI is the 2.5 and 97.5 percentiles.
* **Paired difference against a baseline** (``supervised`` and any ``--baseline``): over the
  seeds both methods ran (same seed, same split, same test images, checked by id), one
  resampling plan drives both methods, so each replicate is the difference of the two cell
  metrics on the same seeds and the same images; point estimate and 95 % percentile CI.
* **P(improvement)** (rliable's probability of improvement, Agarwal et al., NeurIPS 2021, for one
  task): over every pair (i, j) of a method run i and a baseline run j at those seeds, the
  fraction with metric_i > metric_j, a tie counting 1/2 (the Mann-Whitney U statistic / (n m)).
  It tells how often a run of the method beats a run of the baseline, not how sure the
  difference is.
* **The rule** (``mark``): ▲ *significantly better* when the 95 % CI of the paired difference
  lies entirely above 0, ▼ *significantly worse* when entirely below 0, · *no evidence* otherwise.
  With fewer than ``MIN_SEEDS`` paired seeds there is no test ("too few seeds": no mark, no CI of
  the difference); a cell whose runs lack ``per_image.npz`` (written before the records existed)
  has no interval at all ("no per-image records").

Across cells (the dataset x ratio cells of a profile in which every method ran), from the cell
means: average ranks (1 = best, ties averaged), the Friedman test (``scipy.stats.friedmanchisquare``),
the Nemenyi post-hoc p-values and critical difference CD = q_alpha sqrt(k (k + 1) / (6 N)) with
q_alpha the studentized-range quantile / sqrt 2 (Demšar, JMLR 2006), drawn as a critical-difference
diagram.

Libraries: ``scipy.stats`` for the Friedman test and the studentized range, and
``scikit-posthocs`` for the Nemenyi p-values (``posthoc_nemenyi_friedman``) and the diagram
(``critical_difference_diagram``, drawn on an Axes this module creates, so no pyplot state). scikit-posthocs
was chosen over autorank because it does exactly these two steps on a block matrix built here,
whereas autorank picks its own tests (normality checks, ANOVA or Friedman) and draws its own
figure; the bootstrap is plain numpy (weights matrices times per-image features), so a
9-method x 4-ratio x 2-dataset study aggregates in seconds.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scikit_posthocs
import scipy.stats

from benchmarks.reporting.aggregate import CELL_KEYS, ResultsError, aggregate, run_status
from benchmarks.engine import layout
from benchmarks.engine.per_image import DEFAULT_PREDICTION, PerImageError, PixelCounts, paper_image_iou, read_per_image

BASELINE = "supervised"
N_RESAMPLES = 2000
RNG_SEED = 20_240_613
CONFIDENCE = 0.95
ALPHA = 0.05
MIN_SEEDS = 3
BETTER, WORSE, NO_EVIDENCE = "▲", "▼", "·"
TOO_FEW_SEEDS = "too few seeds"
NO_RECORDS = "no per-image records"
RULE = (
    f"{BETTER} significantly better / {WORSE} significantly worse than the baseline when the 95 % bootstrap CI of the "
    f"paired difference (same seeds, same test images) lies entirely above / below 0, {NO_EVIDENCE} no evidence "
    f"otherwise; no mark with fewer than {MIN_SEEDS} paired seeds ({TOO_FEW_SEEDS}) or without per-image records"
)


# ---------------------------------------------------------------------------------------------
# protocols as ratios of per-image sums


@dataclass(frozen=True)
class Protocol:
    """A metric computed from per-image features summed over (resampled) images.

    ``features`` maps a run's counts to an (N images, F) array; ``metric`` maps sums over images
    (..., F) to the metric (...) as a fraction, NaN where undefined.
    """

    name: str
    features: Callable[[PixelCounts], np.ndarray]
    metric: Callable[[np.ndarray], np.ndarray]


def _standard_features(counts: PixelCounts) -> np.ndarray:
    return np.concatenate([counts.tp, counts.fp, counts.fn], axis=1).astype(np.float64)


def _standard_metric(sums: np.ndarray) -> np.ndarray:
    """Mean IoU over the defect classes with pixels, from TP|FP|FN sums (..., 3C)."""
    tp, fp, fn = np.split(sums, 3, axis=-1)
    union = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)[..., 1:]
        present = ~np.isnan(iou)
        return np.where(present.any(-1), np.where(present, iou, 0.0).sum(-1) / present.sum(-1), np.nan)


def _paper_features(counts: PixelCounts) -> np.ndarray:
    iou = paper_image_iou(counts)
    scored = ~np.isnan(iou)
    return np.stack([np.where(scored, iou, 0.0), scored.astype(np.float64)], axis=1)


def _paper_metric(sums: np.ndarray) -> np.ndarray:
    """Mean per-image IoU of the scored images, from (sum of IoU, number scored) sums (..., 2)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums[..., 1] > 0, sums[..., 0] / sums[..., 1], np.nan)


PROTOCOLS = {
    "standard": Protocol("standard", _standard_features, _standard_metric),
    "paper": Protocol("paper", _paper_features, _paper_metric),
}


# ---------------------------------------------------------------------------------------------
# the stratified bootstrap


@dataclass(frozen=True)
class ResamplingPlan:
    """Which seed each of the S slots of every replicate draws, and the image weights of each draw.

    ``slots[s]``: flat indices into (replicates x S) of the slots that drew seed s;
    ``weights[s]``: (len(slots[s]), N_s) how often each of seed s's images is drawn in that slot.
    """

    n_resamples: int
    n_seeds: int
    slots: tuple[np.ndarray, ...]
    weights: tuple[np.ndarray, ...]


@functools.lru_cache(maxsize=4)
def resampling_plan(image_counts: tuple[int, ...], n_resamples: int = N_RESAMPLES, seed: int = RNG_SEED) -> ResamplingPlan:
    """The plan for runs with ``image_counts[s]`` test images at seed s (same arguments, same plan)."""
    rng = np.random.default_rng(seed)
    n_seeds = len(image_counts)
    chosen = rng.integers(n_seeds, size=n_resamples * n_seeds)
    slots, weights = [], []
    for s, n_images in enumerate(image_counts):
        positions = np.flatnonzero(chosen == s)
        draws = rng.integers(n_images, size=(len(positions), n_images))
        offsets = (np.arange(len(positions)) * n_images)[:, None]
        counts = np.bincount((draws + offsets).ravel(), minlength=len(positions) * n_images)
        slots.append(positions)
        weights.append(counts.reshape(len(positions), n_images).astype(np.float64))
    return ResamplingPlan(n_resamples, n_seeds, tuple(slots), tuple(weights))


def replicates(plan: ResamplingPlan, features: Sequence[np.ndarray], protocol: Protocol) -> np.ndarray:
    """The cell metric (fraction) of every replicate (n_resamples,): seed-slot metrics averaged over slots."""
    values = np.full(plan.n_resamples * plan.n_seeds, np.nan)
    for slots, weights, run_features in zip(plan.slots, plan.weights, features):
        values[slots] = protocol.metric(weights @ run_features)
    values = values.reshape(plan.n_resamples, plan.n_seeds)
    finite = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite.any(1), np.where(finite, values, 0.0).sum(1) / finite.sum(1), np.nan)


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of the finite replicates; NaNs if there are none."""
    finite = values[~np.isnan(values)]
    if not finite.size:
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def run_metric(features: np.ndarray, protocol: Protocol) -> float:
    """One run's metric (fraction) on all its test images."""
    return float(protocol.metric(features.sum(0)))


def probability_of_improvement(method: Sequence[float], baseline: Sequence[float], tie: float = 1e-12) -> float:
    """P(X > Y) over all (method run, baseline run) pairs, ties (closer than ``tie``, float sums) 1/2."""
    x, y = np.asarray(method, dtype=np.float64)[:, None], np.asarray(baseline, dtype=np.float64)[None, :]
    equal = np.abs(x - y) <= tie
    return float(((x > y) & ~equal).mean() + 0.5 * equal.mean())


def mark(low: float, high: float) -> str:
    """▲ when the interval lies above 0, ▼ when below 0, · otherwise (see ``RULE``)."""
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return NO_EVIDENCE


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


def run_set_records(directories: Iterable[str | Path]) -> list[RunRecords] | None:
    """The records of some runs (one per seed) in seed order; None if any of them has none."""
    loaded = [load_run_records(Path(d)) for d in directories]
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


@dataclass
class Bootstrap:
    """Cell-metric replicates of a list of runs (one per seed, in seed order), cached per (run paths,
    protocol) so a baseline's are computed once for all methods. Runs with the same image counts get
    the same resampling plan: that is what pairs two methods' replicates."""

    n_resamples: int = N_RESAMPLES
    seed: int = RNG_SEED
    cache: dict[tuple[tuple[Path, ...], str], np.ndarray] = field(default_factory=dict)

    def __call__(self, runs: Sequence[RunRecords], protocol: str) -> np.ndarray:
        key = (tuple(r.path for r in runs), protocol)
        if key not in self.cache:
            plan = resampling_plan(tuple(len(r.image_ids) for r in runs), self.n_resamples, self.seed)
            self.cache[key] = replicates(plan, [r.features[protocol] for r in runs], PROTOCOLS[protocol])
        return self.cache[key]


def _cell_row(runs: list[RunRecords] | None, protocol: str, bootstrap: Bootstrap) -> dict[str, object]:
    """The 95 % CI (%) of one cell's mean, or the note why there is none."""
    if runs is None:
        return {"ci_low": math.nan, "ci_high": math.nan, "note": NO_RECORDS}
    low, high = percentile_interval(bootstrap(runs, protocol))
    return {"ci_low": 100 * low, "ci_high": 100 * high, "note": ""}


def compare(method: list[RunRecords] | None, baseline: list[RunRecords] | None, protocol: str,
            bootstrap: Bootstrap) -> dict[str, object]:
    """Paired difference (percentage points), its CI, P(improvement), mark and note of one cell."""
    empty = {"diff": math.nan, "diff_ci_low": math.nan, "diff_ci_high": math.nan, "p_improvement": math.nan,
             "paired_seeds": 0, "mark": ""}
    if method is None or baseline is None:
        return {**empty, "note": NO_RECORDS}
    by_seed = {r.seed: r for r in baseline}
    pairs = [(m, by_seed[m.seed]) for m in method if m.seed in by_seed]
    if len(pairs) < MIN_SEEDS:
        return {**empty, "paired_seeds": len(pairs), "note": TOO_FEW_SEEDS}
    for m, b in pairs:
        check_paired(m, b)
    ours, theirs = [m for m, _ in pairs], [b for _, b in pairs]
    low, high = percentile_interval(bootstrap(ours, protocol) - bootstrap(theirs, protocol))
    spec = PROTOCOLS[protocol]
    ours_values = [run_metric(r.features[protocol], spec) for r in ours]
    theirs_values = [run_metric(r.features[protocol], spec) for r in theirs]
    return {
        "diff": 100 * (np.nanmean(ours_values) - np.nanmean(theirs_values)),
        "diff_ci_low": 100 * low, "diff_ci_high": 100 * high,
        "p_improvement": probability_of_improvement(ours_values, theirs_values),
        "paired_seeds": len(pairs), "mark": mark(low, high), "note": "",
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
    ``ci_high`` (%) and ``note``; ``comparisons``: one row per such cell and baseline with
    ``diff``, ``diff_ci_low``, ``diff_ci_high`` (points), ``p_improvement``, ``paired_seeds``,
    ``mark`` and ``note``."""

    cells: pd.DataFrame
    comparisons: pd.DataFrame


def cell_statistics(runs: pd.DataFrame, baselines: Sequence[str] = (BASELINE,), n_resamples: int = N_RESAMPLES,
                    seed: int = RNG_SEED) -> CellStatistics:
    """Bootstrap intervals of every cell of ``runs`` (collect_runs rows) and its comparisons with ``baselines``."""
    bootstrap = Bootstrap(n_resamples, seed)
    records: dict[tuple, list[RunRecords] | None] = {}
    for key, group in runs.groupby(CELL_KEYS, sort=True):
        records[key] = run_set_records(group["path"])
    cells, comparisons = [], []
    for key, cell_runs in records.items():
        for protocol in PROTOCOLS:
            labels = {**dict(zip(CELL_KEYS, key)), "protocol": protocol}
            cells.append({**labels, **_cell_row(cell_runs, protocol, bootstrap)})
            for baseline in baselines:
                baseline_key = (*key[:3], baseline)
                if baseline == key[3] or baseline_key not in records:
                    continue
                comparisons.append({**labels, "baseline": baseline,
                                    **compare(cell_runs, records[baseline_key], protocol, bootstrap)})
    cell_columns = [*CELL_KEYS, "protocol", "ci_low", "ci_high", "note"]
    comparison_columns = [*CELL_KEYS, "protocol", "baseline", "diff", "diff_ci_low", "diff_ci_high", "p_improvement",
                          "paired_seeds", "mark", "note"]
    return CellStatistics(pd.DataFrame(cells, columns=cell_columns), pd.DataFrame(comparisons, columns=comparison_columns))


def completed_seed_runs(folder: Path) -> list[Path]:
    """The completed runs (``aggregate.run_status``) among the ``seed<k>`` folders of one method folder."""
    runs = [d for d in Path(folder).glob("seed*") if d.is_dir() and run_status(d) == "completed"]
    if not runs:
        raise ResultsError(f"{folder}: no completed run (expected seed<k>/{layout.METRICS} below a method folder, "
                           "e.g. results/runs/<profile>/<dataset>/<ratio>/<method>)")
    return runs


def compare_run_folders(method: Path, baseline: Path, n_resamples: int = N_RESAMPLES,
                        seed: int = RNG_SEED) -> pd.DataFrame:
    """The paired comparison of two method folders' runs, seed by seed, whatever profile or results
    tree they lie in (e.g. one method run on two machines or at two precisions): one row per protocol
    with each side's per-seed metrics (%) and the ``compare`` columns (difference method - baseline)."""
    sides = {}
    for name, folder in (("method", method), ("baseline", baseline)):
        records = run_set_records(completed_seed_runs(folder))
        if records is None:
            raise ResultsError(f"{folder}: a run without {layout.PER_IMAGE}; the comparison needs per-image records")
        sides[name] = records
    bootstrap = Bootstrap(n_resamples, seed)
    rows = []
    for protocol, spec in PROTOCOLS.items():
        values = {f"{name}_by_seed": {r.seed: 100 * run_metric(r.features[protocol], spec) for r in records}
                  for name, records in sides.items()}
        rows.append({"protocol": protocol, **values, **compare(sides["method"], sides["baseline"], protocol, bootstrap)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# across cells: ranks, Friedman, Nemenyi


@dataclass(frozen=True)
class RankAnalysis:
    """Ranks of k methods over N complete cells (blocks); Friedman and Nemenyi where defined."""

    average_ranks: pd.Series  # by method, 1 = best, ascending
    blocks: list[tuple]
    excluded: list[tuple]  # cells left out because some method has no run there
    friedman_statistic: float = math.nan
    friedman_p: float = math.nan
    critical_difference: float = math.nan
    nemenyi_p: pd.DataFrame | None = None
    note: str = ""

    @property
    def testable(self) -> bool:
        return self.nemenyi_p is not None


def nemenyi_critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """CD = q_alpha sqrt(k (k + 1) / (6 n)), q_alpha = studentized range quantile (k, inf) / sqrt 2."""
    q_alpha = scipy.stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q_alpha * math.sqrt(k * (k + 1) / (6 * n)))


def average_ranks(scores: pd.DataFrame) -> pd.Series:
    """Mean over rows (blocks) of each column's rank, 1 = highest score, ties averaged."""
    ranks = scipy.stats.rankdata(-scores.to_numpy(dtype=np.float64), axis=1, method="average")
    return pd.Series(ranks.mean(0), index=scores.columns).sort_values(kind="stable")


def cell_scores(runs: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean of ``column`` over seeds, rows the (dataset, ratio) cells that have runs, columns methods (NaN: no run)."""
    means = aggregate(runs, ["dataset", "ratio", "method"], [column])
    return means.set_index(["dataset", "ratio", "method"])[f"{column}_mean"].unstack("method")


def rank_analysis(scores: pd.DataFrame, alpha: float = ALPHA) -> RankAnalysis:
    """Ranks, Friedman and Nemenyi of ``scores`` (rows: cells, columns: methods; NaN: no run)."""
    complete = scores.notna().all(axis=1)
    blocks, excluded = list(scores.index[complete]), list(scores.index[~complete])
    matrix = scores[complete]
    k, n = matrix.shape[1], matrix.shape[0]
    if n == 0:
        return RankAnalysis(pd.Series(dtype=float), blocks, excluded, note="no cell in which every method ran")
    ranks = average_ranks(matrix)
    if k < 3 or n < 2:
        return RankAnalysis(ranks, blocks, excluded, note=f"the Friedman test needs at least 3 methods and 2 cells (have {k} and {n})")
    statistic, p = scipy.stats.friedmanchisquare(*(matrix[c].to_numpy(dtype=np.float64) for c in matrix.columns))
    nemenyi = scikit_posthocs.posthoc_nemenyi_friedman(matrix.reset_index(drop=True))
    return RankAnalysis(ranks, blocks, excluded, float(statistic), float(p), nemenyi_critical_difference(k, n, alpha),
                        nemenyi.loc[ranks.index, ranks.index])

