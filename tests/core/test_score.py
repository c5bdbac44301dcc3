"""The 0-100 quality score: formula, edge cases, monotonicity."""

from __future__ import annotations

import pytest

from mendflow.core.config import ScoreConfig
from mendflow.core.models import Finding, TestCase, TestRun
from mendflow.core.score import quality_score, score_breakdown

DEFAULT = ScoreConfig()


def finding(i: int, severity: str = "low", category: str = "lint") -> Finding:
    return Finding(id=f"f{i}", source="ruff", rule="F401", severity=severity, category=category,
                   path="a.py", line=i, message="m")


def make_run(*outcomes: str, coverage: float | None = 100.0) -> TestRun:
    return TestRun(collected=len(outcomes), coverage_percent=coverage,
                   cases=tuple(TestCase(nodeid=f"t::{i}", outcome=o)
                               for i, o in enumerate(outcomes)))


def test_perfect_project_scores_100():
    assert quality_score([], make_run("passed", "passed"), 5000, DEFAULT) == 100.0


def test_documented_example_scores_76():
    # all pass, 80 % coverage, 10 weighted findings per 1000 lines (10 low in 1000 lines)
    findings = [finding(i) for i in range(10)]
    assert quality_score(findings, make_run("passed", coverage=80.0), 1000, DEFAULT) == 76.0


def test_no_tests_gives_zero_tests_and_coverage_parts():
    assert quality_score([], None, 1000, DEFAULT) == 40.0
    assert quality_score([], TestRun(collected=0, coverage_percent=None), 1000, DEFAULT) == 40.0
    only_skipped = make_run("skipped", "xfailed", coverage=None)
    assert quality_score([], only_skipped, 1000, DEFAULT) == 40.0


def test_skipped_tests_are_not_counted():
    breakdown = score_breakdown([], make_run("passed", "failed", "skipped", "error"), 1000, DEFAULT)
    assert breakdown.tests_counted == 3
    assert breakdown.tests_ratio == pytest.approx(1 / 3)
    assert breakdown.tests_points == pytest.approx(40 / 3)


def test_lines_of_code_are_floored_at_100():
    one = [finding(1)]  # 1 weighted finding in 100 lines = density 10 = half the findings part
    assert score_breakdown(one, None, 0, DEFAULT).findings_density == 10.0
    assert quality_score(one, None, 0, DEFAULT) == quality_score(one, None, 100, DEFAULT) == 20.0
    assert quality_score(one, None, 1000, DEFAULT) > quality_score(one, None, 50, DEFAULT)


def test_more_findings_or_worse_severity_lower_the_score():
    run = make_run("passed", "passed", coverage=90.0)
    scores = [quality_score([finding(i) for i in range(n)], run, 2000, DEFAULT)
              for n in (0, 1, 2, 5, 20, 100)]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)
    by_severity = [quality_score([finding(1, s)], run, 2000, DEFAULT)
                   for s in ("info", "low", "medium", "high", "critical")]
    assert by_severity == sorted(by_severity, reverse=True)
    assert by_severity[0] == quality_score([], run, 2000, DEFAULT)  # info weighs 0


def test_test_failures_count_only_in_the_tests_part():
    failure = finding(1, "high", category="test-failure")
    run = make_run("passed", "failed")
    assert quality_score([failure], run, 1000, DEFAULT) == quality_score([], run, 1000, DEFAULT)


def test_parts_add_up_and_weights_are_normalized():
    config = ScoreConfig(tests_weight=1, coverage_weight=1, findings_weight=2,
                         findings_half_density=5)
    findings = [finding(1, "medium"), finding(2, "critical")]
    breakdown = score_breakdown(findings, make_run("passed", "failed", coverage=50.0), 4000, config)
    assert breakdown.weighted_findings == 12 and breakdown.findings_density == 3.0
    assert breakdown.tests_points == pytest.approx(12.5)
    assert breakdown.coverage_points == pytest.approx(12.5)
    assert breakdown.findings_points == pytest.approx(50 / (1 + 3 / 5))
    assert breakdown.total == round(12.5 + 12.5 + 31.25, 1) == 56.2


def test_zero_weights_score_zero():
    config = ScoreConfig(tests_weight=0, coverage_weight=0, findings_weight=0)
    assert quality_score([], make_run("passed"), 1000, config) == 0.0
