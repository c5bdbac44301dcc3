"""The 0-100 quality score of one measured tree.

The score is a weighted mean of three parts, each a fraction in [0, 1]::

    tests     = passed / (passed + failed + error)          (0 when no test ran)
    coverage  = coverage_percent / 100                      (0 when not measured)
    findings  = 1 / (1 + D / findings_half_density)

    score = 100 * (tests_weight * tests + coverage_weight * coverage
                   + findings_weight * findings)
                / (tests_weight + coverage_weight + findings_weight)

``D`` is the weighted finding density: the sum of the findings' severity
weights (critical 10, high 5, medium 2, low 1, info 0) per 1000 lines of
code, with the line count floored at 100 lines so that a tiny project is not
dominated by one finding. Test failures and errors (category
``test-failure``) are left out of ``D``: the tests part already counts them.
Skipped and xfailed tests count in neither the numerator nor the denominator.

With the default weights (tests 40, coverage 20, findings 40, half density 10)
a project whose tests all pass, with 80 % coverage and 10 weighted findings
per 1000 lines scores 100 * (40 + 16 + 20) / 100 = 76.0. A perfect project
(all tests pass, 100 % coverage, no findings) scores 100. The score is
rounded to one decimal.
"""

from __future__ import annotations

from collections.abc import Sequence

from mendflow.core.config import ScoreConfig
from mendflow.core.models import Contract, Finding, TestRun

SEVERITY_WEIGHTS: dict[str, float] = {"critical": 10, "high": 5, "medium": 2, "low": 1, "info": 0}
"""Weight of one finding of each severity in the finding density."""

MIN_LOC = 100
"""Floor of the line count used for the finding density (lines)."""

_EXCLUDED_CATEGORIES = frozenset({"test-failure"})


class ScoreBreakdown(Contract):
    """The parts of a quality score, as points out of 100 and the inputs behind them.

    ``tests_points + coverage_points + findings_points == total`` (before rounding).
    """

    total: float
    tests_points: float
    coverage_points: float
    findings_points: float
    tests_ratio: float
    tests_counted: int
    coverage_percent: float | None
    weighted_findings: float
    findings_density: float
    loc: int


def score_breakdown(findings: Sequence[Finding], test_run: TestRun | None, loc: int,
                    config: ScoreConfig) -> ScoreBreakdown:
    """Compute each part of the quality score (see the module docstring for the formula).

    Args:
        findings: every finding of the measured tree (from all detectors).
        test_run: the pytest + coverage run of the tree, or None if tests did not run.
        loc: lines of Python code in the tree.
        config: the ``score`` section of the config (weights).

    Returns:
        The parts as points out of 100 (each weighted and normalized), the
        total, and the inputs (test ratio, coverage, weighted density per 1000 lines).
    """
    counted = 0
    ratio = 0.0
    if test_run is not None:
        passed = sum(c.outcome == "passed" for c in test_run.cases)
        counted = sum(c.outcome in ("passed", "failed", "error") for c in test_run.cases)
        ratio = passed / counted if counted else 0.0
    coverage = test_run.coverage_percent if test_run is not None else None
    coverage_ratio = min(max(coverage, 0.0), 100.0) / 100 if coverage is not None else 0.0
    weighted = sum(SEVERITY_WEIGHTS.get(f.severity, 0) for f in findings
                   if f.category not in _EXCLUDED_CATEGORIES)
    density = weighted / (max(loc, MIN_LOC) / 1000)
    findings_ratio = 1 / (1 + density / config.findings_half_density)
    weights = config.tests_weight + config.coverage_weight + config.findings_weight
    scale = 100 / weights if weights > 0 else 0.0
    parts = (config.tests_weight * ratio * scale, config.coverage_weight * coverage_ratio * scale,
             config.findings_weight * findings_ratio * scale)
    return ScoreBreakdown(
        total=round(sum(parts), 1), tests_points=parts[0], coverage_points=parts[1],
        findings_points=parts[2], tests_ratio=ratio, tests_counted=counted,
        coverage_percent=coverage, weighted_findings=weighted, findings_density=density,
        loc=loc,
    )


def quality_score(findings: Sequence[Finding], test_run: TestRun | None, loc: int,
                  config: ScoreConfig) -> float:
    """Return the 0-100 quality score of a measured tree, rounded to one decimal.

    Args:
        findings: every finding of the measured tree (from all detectors).
        test_run: the pytest + coverage run of the tree, or None if tests did not run.
        loc: lines of Python code in the tree.
        config: the ``score`` section of the config (weights).

    Returns:
        The score; 0.0 when every weight is 0.
    """
    return score_breakdown(findings, test_run, loc, config).total
