"""The report: index.md/html link the figures that exist, list the failure, the environment and the commands."""
import re
from collections import Counter

import pandas as pd
import pytest

import run_all
from defectseg.benchmarks.reporting import results_view
from defectseg.benchmarks.reporting.report import _test_sentence, setup_blocks
from tests.fixtures_results import ENVIRONMENT, FAILED, PROFILE, write_fixture_results


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = write_fixture_results(tmp_path_factory.mktemp("results"))
    assert run_all.main(["report", "--results-dir", str(root)]) == 0
    return root, (root / "report" / "index.md").read_text()


def test_links_point_to_existing_figures(report):
    root, text = report
    links = re.findall(r"\]\(([^)]+)\)", text)
    figures = [link for link in links if link.endswith((".png", ".pdf"))]
    assert any(f"figures/{PROFILE}/ablation_aux_decoders.png" in link for link in figures)
    for link in links:
        assert (root / "report" / link).exists(), link
    assert "figures/other/ablation_losses.png" not in text  # skipped figure, not linked
    html = (root / "report" / "index.html").read_text()
    assert html.count("<img ") == len([f for f in figures if f.endswith(".png")])


def test_lists_failure_environment_and_commands(report):
    root, text = report
    failure = next(line for line in text.splitlines() if FAILED["reason"] in line)
    assert FAILED["method"] in failure and "30%" in failure and "failed" in failure
    assert ENVIRONMENT["git_commit"] in text and ENVIRONMENT["torch"] in text and ENVIRONMENT["cpu"] in text
    # the fixture's profile is not a real one: no command can retrain its runs, and the report says so
    assert f"no command reruns 45 run(s) exactly (e.g. {root}/runs/{PROFILE}/" in text and f"profile {PROFILE!r} not found" in text
    assert f"run_all.py report --results-dir {root}" in text
    assert "72.93" in text and "62.00 ± 2.00 (n=3)" in text  # paper comparison and main table


def test_a_cell_without_evidence_reads_as_such():
    record = pd.Series({"dataset": "neu", "ratio": 0.02, "method": "uaps", "vs_supervised_note": "", "vs_supervised_mark": "·",
                        "vs_supervised_diff": 0.26, "vs_supervised_diff_ci_low": -0.07, "vs_supervised_diff_ci_high": 0.59,
                        "vs_supervised_p_improvement": 0.78, "vs_supervised_p_holm": 0.947, "vs_supervised_mde": 1.0})
    assert _test_sentence(record, "supervised") == ("On NEU-Seg at 2% labels, uaps shows no evidence of a difference from supervised: "
                                                    "+0.26 mIoU [95 % CI -0.07, +0.59], Holm p 0.947, detectable 1.00, "
                                                    "P(improvement) 0.78 ·")


def test_reads_out_the_tests_per_cell(report):
    _, text = report
    assert ("On NEU-Seg at 10% labels, cps beats supervised by +3.00 mIoU [95 % CI +3.00, +3.00], Holm p 0.000, "
            "detectable 0.00, P(improvement) 0.89 ▲" in text)
    assert "On NEU-Seg at 10% labels, uaps against supervised: too few units (2 paired; a test needs 3)" in text
    assert "On DAGM at 30% labels, cps against supervised: no per-image records" in text
    assert "▲ significantly better / ▼ significantly worse" in text  # the rule, stated
    assert f"figures/{PROFILE}/difference_paper.png" in text and "significance_paper" in text


def test_a_profile_of_ablation_variants_only_says_it_has_no_plain_methods():
    runs = pd.DataFrame({"profile": ["abl"] * 2, "dataset": ["neu"] * 2, "ratio": [0.01] * 2, "method": ["uaps_full", "uaps_d0"],
                         "base_method": ["uaps"] * 2, "seed": [0, 0], "iterations": [2000] * 2, "image_size": [64] * 2})
    failures = pd.DataFrame({"profile": pd.Series(dtype=str), "status": pd.Series(dtype=str)})
    (block,) = setup_blocks(runs, failures, "abl")
    assert "methods: none (ablation variants only)" in block.items
    assert "ablation variants: uaps_d0, uaps_full" in block.items


def test_the_report_collects_reads_and_computes_each_thing_once(tmp_path, monkeypatch):
    """Tables, figures and the page share one ResultsView: the runs are collected once, each run's records and
    log read once, and each profile's statistics, ranks, selection records and spread computed once."""
    root = write_fixture_results(tmp_path)
    calls, arguments = Counter(), Counter()

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            arguments[(name, *map(str, args))] += 1
            return function(*args, **kwargs)
        return wrapper

    for name in ("collect_runs", "collect_failures", "cell_statistics", "rank_analysis", "policy_records", "spread_points",
                 "load_run_records", "read_train_log"):
        monkeypatch.setattr(results_view, name, counted(name, getattr(results_view, name)))
    assert run_all.main(["report", "--results-dir", str(root)]) == 0
    profiles, protocols = 2, 2  # fix and other; standard and paper
    assert calls["collect_runs"] == calls["collect_failures"] == 1
    assert calls["cell_statistics"] == calls["policy_records"] == calls["spread_points"] == profiles
    assert calls["rank_analysis"] == profiles * protocols
    assert calls["load_run_records"] > 0 and calls["read_train_log"] > 0
    assert max(arguments.values()) == 1  # no run's records or log read twice, nothing computed twice
