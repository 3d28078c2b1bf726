"""Statistics against hand-computed and library-computed values on small fixed examples."""
import itertools
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from defectseg.benchmarks.engine.io import ResultsError
from defectseg.benchmarks.reporting.aggregate import collect_runs, main_runs
from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.per_image import PixelCounts, paper_image_iou, standard_miou
from defectseg.benchmarks.reporting.statistics import (
    BETTER, NO_EVIDENCE, NO_RECORDS, PROTOCOLS, TOO_FEW_UNITS, WORSE, RunRecords, average_ranks, cell_scores, cell_statistics, compare,
    compare_run_folders, contrast, detectable_effect, friedman_permutation_p, holm, linearise, load_run_records, mark, nemenyi_critical_difference,
    probability_of_improvement, rank_analysis, run_metric, shared_image_variance, unit_interval,
)
from tests.fixtures_results import PROFILE, write_fixture_results

CLASSES = 3  # background + 2 defect classes


def _counts(iou: list[float], pixels: int = 100) -> PixelCounts:
    """One image per value: class 1 with that IoU (TP = iou * pixels, FP + FN the rest), class 2 absent."""
    tp = np.zeros((len(iou), CLASSES), dtype=np.int64)
    fp, fn = tp.copy(), tp.copy()
    tp[:, 0] = 1000
    tp[:, 1] = [round(v * pixels) for v in iou]
    fn[:, 1] = (pixels - tp[:, 1]) // 2
    fp[:, 1] = pixels - tp[:, 1] - fn[:, 1]
    return PixelCounts(tp, fp, fn)


def _runs(per_seed_iou: list[list[float]], name: str = "m") -> list[RunRecords]:
    return [RunRecords.from_counts(seed, f"{name}/seed{seed}/{layout.PER_IMAGE}", [f"img{i}" for i in range(len(iou))], _counts(iou))
            for seed, iou in enumerate(per_seed_iou)]


def _random_counts(rng: np.random.Generator, images: int) -> PixelCounts:
    tp = rng.integers(0, 50, (images, 4))
    tp[:, 3] = 0  # class 3 never present: no IoU
    fp, fn = rng.integers(0, 20, (images, 4)), rng.integers(0, 20, (images, 4))
    fp[:, 3] = fn[:, 3] = 0
    fn[rng.random(images) < 0.3, 1:] = 0  # some images without defects in ground truth
    tp[fn == 0] = 0
    return PixelCounts(tp, fp, fn)


# ---------------------------------------------------------------------------------------------
# the protocols and their linearisation


def test_protocols_match_the_per_image_helpers():
    counts = _random_counts(np.random.default_rng(1), 12)
    standard, paper = PROTOCOLS["standard"], PROTOCOLS["paper"]
    assert run_metric(standard.features(counts), standard) == pytest.approx(standard_miou(counts), abs=1e-12)
    assert run_metric(paper.features(counts), paper) == pytest.approx(np.nanmean(paper_image_iou(counts)), abs=1e-12)


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_influence_is_the_derivative_of_the_metric_in_an_image_weight(name):
    protocol, counts = PROTOCOLS[name], _random_counts(np.random.default_rng(3), 15)
    features = protocol.features(counts)
    metric, influence = linearise(features, protocol)
    assert metric == pytest.approx(run_metric(features, protocol))
    assert influence.sum() == pytest.approx(0.0, abs=1e-12)  # reweighting every image alike changes nothing
    for image in (0, 7, 14):
        weights = np.ones(15)
        weights[image] += 1e-6
        changed = protocol.metric((weights[:, None] * features).sum(0))
        assert (changed - metric) / 1e-6 == pytest.approx(influence[image], rel=1e-4, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# the interval over units


def test_without_shared_images_the_interval_is_the_paired_t_interval():
    values = np.array([0.031, 0.012, 0.045, 0.020])
    index = np.arange(4 * 5).reshape(4, 5)  # every unit its own images: nothing shared
    result = unit_interval(values, np.random.default_rng(0).normal(size=(4, 5)), index)
    low, high = scipy.stats.t.interval(0.95, 3, loc=values.mean(), scale=scipy.stats.sem(values))
    assert (float(result.low), float(result.high)) == pytest.approx((low, high))
    assert float(result.p_value) == pytest.approx(scipy.stats.ttest_1samp(values, 0.0).pvalue)


def test_images_every_unit_shares_add_their_whole_variance():
    influence = np.random.default_rng(1).normal(size=30)
    same = np.tile(influence, (3, 1))  # the same per-image effect in every unit: it does not average out
    assert float(shared_image_variance(same, np.tile(np.arange(30), (3, 1)))) == pytest.approx((influence**2).sum())
    assert float(shared_image_variance(same, np.arange(90).reshape(3, 30))) == 0.0  # other images in each unit


def test_detectable_effect_at_many_degrees_of_freedom():
    z = scipy.stats.norm.ppf(0.975) + scipy.stats.norm.ppf(0.8)
    assert detectable_effect(1.0, 1e7, 1) == pytest.approx(z, rel=1e-5)
    assert detectable_effect(1.0, 1e7, 10) == pytest.approx(scipy.stats.norm.ppf(1 - 0.0025) + scipy.stats.norm.ppf(0.8), rel=1e-5)
    assert detectable_effect(1.0, 2, 1) > detectable_effect(1.0, 9, 1)  # fewer units, larger


def test_holm_by_hand():
    frame = pd.DataFrame({"table": ["a", "a", "a", "b"], "diff": [1.0, -1.0, 1.0, 1.0], "p_value": [0.01, 0.04, 0.03, 0.04],
                          "se": 1.0, "df": 4.0, "mark": ""})
    result = holm(frame, ["table"])
    assert result["p_holm"].tolist() == pytest.approx([0.03, 0.06, 0.06, 0.04])  # 3 x 0.01; max(2 x 0.03, 0.04); alone
    assert result["mark"].tolist() == [BETTER, NO_EVIDENCE, NO_EVIDENCE, BETTER]
    assert result.loc[0, "mde"] == pytest.approx(detectable_effect(1.0, 4.0, 3)) and result.loc[3, "mde"] == pytest.approx(
        detectable_effect(1.0, 4.0, 1))


# ---------------------------------------------------------------------------------------------
# paired differences, P(improvement) and the mark


def test_constant_improvement_on_every_image_gives_that_constant():
    base = [[0.50, 0.62, 0.71, 0.44], [0.55, 0.60, 0.70, 0.40], [0.52, 0.66, 0.73, 0.48]]
    better = [[v + 0.05 for v in seed] for seed in base]
    result = compare(_runs(better, "m"), _runs(base, "b"), "paper")
    assert result["diff"] == pytest.approx(5.0)
    assert result["diff_ci_low"] == pytest.approx(5.0) and result["diff_ci_high"] == pytest.approx(5.0)
    assert result["mark"] == BETTER and result["units"] == 3 and result["note"] == ""
    worse = compare(_runs(base, "b"), _runs(better, "m"), "paper")
    assert worse["diff"] == pytest.approx(-5.0) and worse["mark"] == WORSE
    assert compare(_runs(better, "m"), _runs(base, "b"), "standard")["mark"] == BETTER


def test_no_evidence_when_the_images_only_swap():
    base = [[0.3, 0.5, 0.7, 0.9, 0.4, 0.6], [0.35, 0.55, 0.75, 0.85, 0.45, 0.65], [0.3, 0.6, 0.7, 0.8, 0.5, 0.6]]
    swapped = [seed[::-1] for seed in base]  # same per-image IoUs, other images: same mean
    result = compare(_runs(swapped, "m"), _runs(base, "b"), "paper")
    assert result["diff"] == pytest.approx(0.0, abs=1e-9)
    assert result["diff_ci_low"] < 0 < result["diff_ci_high"] and result["mark"] == NO_EVIDENCE
    assert result["p_improvement"] == pytest.approx(0.5)  # equal run means: every pair a tie


def test_too_few_units_and_no_records():
    two = [[0.5, 0.6], [0.55, 0.65]]
    result = compare(_runs([[v + 0.1 for v in s] for s in two], "m"), _runs(two, "b"), "paper")
    assert result["note"] == TOO_FEW_UNITS and result["units"] == 2
    assert result["mark"] == "" and math.isnan(result["diff_ci_low"]) and math.isnan(result["p_improvement"])
    assert compare(None, _runs(two), "paper")["note"] == NO_RECORDS


def test_paired_runs_must_hold_the_same_images():
    method, baseline = _runs([[0.5, 0.6]] * 3, "m"), _runs([[0.5, 0.6]] * 3, "b")
    method[1] = RunRecords.from_counts(1, "m/seed1/per_image.npz", ["other0", "other1"], _counts([0.5, 0.6]))
    with pytest.raises(ResultsError, match="m/seed1/per_image.npz and b/seed1/per_image.npz"):
        compare(method, baseline, "paper")


def test_a_difference_of_differences_is_the_change_in_gain_unit_by_unit():
    rng = np.random.default_rng(3)
    sides = {name: _runs(rng.uniform(0.3, 0.9, (4, 6)).tolist(), name) for name in ("m_here", "b_here", "m_there", "b_there")}
    sides["m_there"] = sides["m_there"][1:]  # unit 0 not trained at the other size: left out of every side
    change = contrast([(1.0, sides["m_here"]), (-1.0, sides["b_here"]), (-1.0, sides["m_there"]), (1.0, sides["b_there"])], "paper")
    assert change.seeds == [1, 2, 3]
    metric = {name: {r.seed: run_metric(r.features["paper"], PROTOCOLS["paper"]) for r in runs} for name, runs in sides.items()}
    per_unit = [metric["m_here"][u] - metric["b_here"][u] - metric["m_there"][u] + metric["b_there"][u] for u in (1, 2, 3)]
    assert float(change.interval.estimate) == pytest.approx(np.mean(per_unit))
    assert float(change.interval.low) < np.mean(per_unit) < float(change.interval.high)
    same = contrast([(1.0, sides["m_here"]), (-1.0, sides["b_here"]), (-1.0, sides["m_here"]), (1.0, sides["b_here"])], "paper")
    assert float(same.interval.estimate) == 0.0 and float(same.interval.high - same.interval.low) == 0.0  # identical gains
    paired = contrast([(1.0, sides["m_here"]), (-1.0, sides["b_here"])], "paper")
    assert 100 * float(paired.interval.estimate) == compare(sides["m_here"], sides["b_here"], "paper")["diff"]


def test_probability_of_improvement():
    assert probability_of_improvement([3, 5, 7], [4, 4, 4]) == pytest.approx(6 / 9)
    assert probability_of_improvement([4], [4]) == 0.5
    x, y = [0.61, 0.64, 0.60, 0.66], [0.60, 0.62, 0.64]
    u = scipy.stats.mannwhitneyu(x, y).statistic  # U / (n m) is P(X > Y) with ties 1/2
    assert probability_of_improvement(x, y) == pytest.approx(u / (len(x) * len(y)))


@pytest.mark.parametrize("estimate, p, expected", [(1.0, 0.01, BETTER), (-1.0, 0.01, WORSE), (1.0, 0.2, NO_EVIDENCE),
                                                   (1.0, 0.05, NO_EVIDENCE), (0.0, 0.0, NO_EVIDENCE)])
def test_mark_rule(estimate, p, expected):
    assert mark(estimate, p) == expected


# ---------------------------------------------------------------------------------------------
# ranks, Friedman, Nemenyi


def test_average_ranks_and_friedman_match_hand_and_scipy():
    scores = pd.DataFrame({"a": [0.9, 0.6, 0.8, 0.7], "b": [0.8, 0.7, 0.8, 0.6], "c": [0.7, 0.5, 0.6, 0.9]})
    ranks = average_ranks(scores)
    assert ranks.to_dict() == {"a": 1.625, "b": 1.875, "c": 2.5}  # hand: a 1,2,1.5,2; b 2,1,1.5,3; c 3,3,3,1
    analysis = rank_analysis(scores)
    expected = scipy.stats.friedmanchisquare(scores["a"], scores["b"], scores["c"])
    assert analysis.friedman_statistic == pytest.approx(expected.statistic)
    assert 0 < analysis.friedman_p <= 1 and analysis.friedman_p_error < 0.005


def test_friedman_permutation_p_equals_the_exact_enumeration():
    """3 methods, 3 independent blocks: all 6^3 relabellings enumerated by hand."""
    scores = np.array([[0.9, 0.8, 0.7], [0.6, 0.7, 0.5], [0.8, 0.6, 0.7]])
    ranks = scipy.stats.rankdata(-scores, axis=1)
    orders = list(itertools.permutations(range(3)))
    statistic = lambda r: ((r.sum(0)) ** 2).sum()  # noqa: E731 - monotone in Friedman's chi-square for fixed n, k
    observed = statistic(ranks)
    null = [statistic(np.stack([ranks[i, list(order)] for i, order in enumerate(choice)]))
            for choice in itertools.product(orders, repeat=3)]
    exact = np.mean([t >= observed - 1e-9 for t in null])
    _, p, error = friedman_permutation_p(scores, ["x", "y", "z"])
    assert p == pytest.approx(exact, abs=4 * error)


def test_blocks_of_one_dataset_are_not_independent_evidence():
    """Two copies of one block on one test set carry the evidence of one block, not two."""
    scores = np.array([[0.9, 0.8, 0.7, 0.6], [0.9, 0.8, 0.7, 0.6]])
    _, together, _ = friedman_permutation_p(scores, ["neu", "neu"])
    _, apart, _ = friedman_permutation_p(scores, ["neu", "mtiles"])
    assert together == 1.0 and apart < 0.1
    analysis = rank_analysis(pd.DataFrame(scores, index=[("neu", 0.01), ("neu", 0.02)], columns=list("abcd")))
    assert not analysis.testable and "share a dataset" in analysis.note


def test_friedman_statistic_by_the_textbook_formula():
    scores = pd.DataFrame({"a": [3.0, 2.0, 3.0, 1.0, 3.0], "b": [2.0, 3.0, 2.0, 2.0, 2.0], "c": [1.0, 1.0, 1.0, 3.0, 1.0]})
    n, k = scores.shape
    rank_sums = (k + 1 - scores.rank(axis=1)).sum()  # rank 1 = highest
    statistic = 12 / (n * k * (k + 1)) * (rank_sums**2).sum() - 3 * n * (k + 1)
    assert rank_analysis(scores).friedman_statistic == pytest.approx(statistic)


# Demšar (2006), Table 5(a): q_0.05 of the Nemenyi test for k = 2..10 classifiers
DEMSAR_Q05 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}


@pytest.mark.parametrize("k", sorted(DEMSAR_Q05))
def test_nemenyi_critical_difference_uses_the_tabulated_q(k):
    assert nemenyi_critical_difference(k, 8) == pytest.approx(DEMSAR_Q05[k] * math.sqrt(k * (k + 1) / (6 * 8)), abs=2e-3)


def test_nemenyi_p_values_agree_with_the_critical_difference():
    rng = np.random.default_rng(4)
    scores = pd.DataFrame(rng.random((10, 5)) + np.arange(5) * 0.15, columns=list("abcde"))
    analysis = rank_analysis(scores)
    assert analysis.testable and analysis.average_ranks.index[0] == "e"
    for x in scores:
        for y in scores:
            if x != y:
                apart = abs(analysis.average_ranks[x] - analysis.average_ranks[y]) > analysis.critical_difference
                assert apart == (analysis.nemenyi_p.loc[x, y] < 0.05), (x, y)


def test_incomplete_cells_are_left_out_and_small_studies_are_not_tested():
    scores = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [2.0, np.nan, 1.0], "c": [0.0, 1.0, 2.0]}, index=["x", "y", "z"])
    analysis = rank_analysis(scores)
    assert analysis.blocks == ["x", "z"] and analysis.excluded == ["y"]
    two_methods = rank_analysis(scores[["a", "c"]])
    assert not two_methods.testable and "at least 3 methods" in two_methods.note
    assert two_methods.average_ranks.to_dict() == {"a": 1.0, "c": 2.0}


def test_cell_scores_hold_only_cells_that_were_run():
    """Datasets run at different ratios (NEU-Seg 2 %, MTiles 10 %) make two cells, not four."""
    runs = pd.DataFrame([{"dataset": d, "ratio": r, "method": m, "seed": seed, "miou": 50.0 + seed}
                         for d, r in (("neu", 0.02), ("mtiles", 0.1)) for m in ("a", "b") for seed in (0, 1)
                         if not (d == "mtiles" and m == "b")])
    scores = cell_scores(runs, "miou")
    assert sorted(scores.index) == [("mtiles", 0.1), ("neu", 0.02)] and list(scores.columns) == ["a", "b"]
    assert scores.loc[("neu", 0.02), "b"] == 50.5 and np.isnan(scores.loc[("mtiles", 0.1), "b"])
    assert rank_analysis(scores).excluded == [("mtiles", 0.1)]


# ---------------------------------------------------------------------------------------------
# on a results tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_fixture_results(tmp_path_factory.mktemp("results"))


def test_cells_of_the_fixture_tree(tree):
    runs = main_runs(collect_runs(tree, PROFILE))
    statistics = cell_statistics(runs, ["supervised", "mean_teacher"])
    tests = statistics.comparisons.set_index(["dataset", "ratio", "method", "protocol", "baseline"])
    cps = tests.loc[("neu", 0.1, "cps", "paper", "supervised")]
    assert (cps["diff"], cps["diff_ci_low"], cps["diff_ci_high"]) == pytest.approx((3.0, 3.0, 3.0))
    assert cps["mark"] == BETTER and cps["p_improvement"] == pytest.approx(8 / 9)  # runs 63, 65, 67 against 60, 62, 64 (+10)
    assert tests.loc[("neu", 0.1, "uaps", "paper", "supervised"), "note"] == TOO_FEW_UNITS
    assert tests.loc[("neu", 0.1, "cps", "paper", "mean_teacher"), "note"] == TOO_FEW_UNITS
    assert tests.loc[("dagm", 0.3, "cps", "standard", "supervised"), "note"] == NO_RECORDS
    cells = statistics.cells.set_index(["dataset", "ratio", "method", "protocol"])
    low, high = cells.loc[("neu", 0.1, "supervised", "paper"), ["ci_low", "ci_high"]]
    assert low < 72.0 < high  # around the metrics.json mean
    assert cells.loc[("dagm", 0.3, "cps", "paper"), "note"] == NO_RECORDS
    again = cell_statistics(runs, ["supervised", "mean_teacher"])
    pd.testing.assert_frame_equal(statistics.cells, again.cells)  # closed form: reproducible
    pd.testing.assert_frame_equal(statistics.comparisons, again.comparisons)


def test_unreadable_records_are_named(tmp_path):
    (tmp_path / "seed0").mkdir()
    assert load_run_records(tmp_path / "seed0") is None
    (tmp_path / "seed0" / layout.PER_IMAGE).write_bytes(b"not a zip")
    with pytest.raises(ResultsError, match=str(tmp_path / "seed0" / layout.PER_IMAGE)):
        load_run_records(tmp_path / "seed0")


def test_two_method_folders_compared_seed_by_seed(tree, tmp_path):
    """``run_all.py compare``: the same paired test as the tables, between any two folders of runs."""
    cell = tree / "runs" / PROFILE / "neu" / "0.1"
    rows = compare_run_folders(cell / "cps", cell / "supervised").set_index("protocol")
    tables = cell_statistics(main_runs(collect_runs(tree, PROFILE))).comparisons.set_index(
        ["dataset", "ratio", "method", "protocol", "baseline"])
    for protocol in PROTOCOLS:
        expected = tables.loc[("neu", 0.1, "cps", protocol, "supervised")]
        for column in ("diff", "diff_ci_low", "diff_ci_high", "p_improvement"):
            assert rows.loc[protocol, column] == pytest.approx(expected[column])
    assert list(rows.loc["paper", "method_by_seed"]) == [0, 1, 2]
    assert compare_run_folders(cell / "uaps", cell / "supervised").loc[0, "note"] == TOO_FEW_UNITS
    (tmp_path / "seed0").mkdir()  # a run still in progress: no metrics.json
    with pytest.raises(ResultsError, match=f"{tmp_path}: no completed run"):
        compare_run_folders(tmp_path, cell / "supervised")


def test_compare_command_prints_both_protocols(tree, capsys):
    import run_all

    cell = tree / "runs" / PROFILE / "neu" / "0.1"
    assert run_all.main(["compare", str(cell / "cps"), str(cell / "supervised")]) == 0
    out = capsys.readouterr().out
    assert "standard protocol" in out and "paper protocol" in out
    assert "difference (method - baseline, 3 paired units): +3.00 [+3.00, +3.00] ▲" in out
    assert run_all.main(["compare", str(cell / "nope"), str(cell / "supervised")]) == 2
    assert "no completed run" in capsys.readouterr().err
