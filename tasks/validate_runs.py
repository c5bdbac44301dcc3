"""The gates on the test run of a patched tree: no regression, no weakening, coverage.

Part of the validate stage (:mod:`mendflow.tasks.validate`, which re-exports them):
each compares the baseline's :class:`~mendflow.core.models.TestRun` (pytest's JUnit
XML and coverage.py's JSON report, as parsed by the detect stage) with the one after
the patch, and names every test or file that got worse.
"""

from __future__ import annotations

from collections.abc import Sequence

from mendflow.core.models import GateResult, TestRun

_MAX_ITEMS = 15  # items listed in one gate's detail before "... and N more"
_WEAKENED = frozenset({"skipped", "xfailed"})
_RAN = frozenset({"passed", "failed", "error"})


def gate_no_test_regression(before: TestRun | None, after: TestRun | None) -> GateResult:
    """``no-test-regression``: no test that passed at baseline fails, errors or is missing."""
    if before is None:
        return GateResult(gate="no-test-regression", passed=True,
                          detail="no baseline test run: nothing to compare")
    passed_before = [c for c in before.cases if c.outcome == "passed"]
    now = {c.nodeid: c for c in after.cases} if after is not None else {}
    problems = []
    for case in passed_before:
        current = now.get(case.nodeid)
        if current is None:
            problems.append(f"MISSING {case.nodeid}: passed at baseline, not run after the patch")
        elif current.outcome in ("failed", "error"):
            message = clip(current.message or current.detail or "no message", 400)
            problems.append(f"{current.outcome.upper()} {case.nodeid}: {message}")
    if after is not None and after.timed_out:
        problems.insert(0, "the test run timed out after the patch")
    if problems and after is not None:
        problems += [f"collection error: {clip(e, 400)}" for e in after.collection_errors
                     if e not in before.collection_errors]
    if problems:
        return GateResult(gate="no-test-regression", passed=False, detail=listing(problems))
    return GateResult(gate="no-test-regression", passed=True,
                      detail=f"all {len(passed_before)} test(s) that passed still pass")


def gate_tests_not_weakened(before: TestRun | None, after: TestRun | None) -> GateResult:
    """``tests-not-weakened``: no fewer tests collected; none newly skipped or xfailed."""
    if before is None:
        return GateResult(gate="tests-not-weakened", passed=True,
                          detail="no baseline test run: nothing to compare")
    collected_after = after.collected if after is not None else 0
    problems = []
    if collected_after < before.collected:
        problems.append(f"collected tests dropped from {before.collected} to {collected_after}")
    outcome_before = {c.nodeid: c.outcome for c in before.cases}
    for case in after.cases if after is not None else ():
        was = outcome_before.get(case.nodeid)
        if case.outcome in _WEAKENED and was in _RAN:
            reason = f": {clip(case.message, 300)}" if case.message else ""
            problems.append(f"{case.outcome.upper()} {case.nodeid} (was {was}){reason}")
    if problems:
        return GateResult(gate="tests-not-weakened", passed=False, detail=listing(problems))
    return GateResult(gate="tests-not-weakened", passed=True,
                      detail=f"collected {before.collected} → {collected_after}; "
                             "no test newly skipped or xfailed")


def gate_coverage(before: TestRun | None, after: TestRun | None, tolerance: float) -> GateResult:
    """``coverage``: the patch leaves no more code uncovered than before.

    Passes when total line coverage after >= before - ``tolerance`` (percentage
    points), or when the number of uncovered statements did not grow: removing
    covered lines (an unused import, dead code) lowers the percentage without
    leaving anything less tested, and must not be refused for it.
    """
    was = before.coverage_percent if before is not None else None
    now = after.coverage_percent if after is not None else None
    if was is None:
        return GateResult(gate="coverage", passed=True,
                          detail="coverage was not measured at baseline: skipped")
    if now is None:
        return GateResult(gate="coverage", passed=False,
                          detail=f"coverage was {was:.2f}% at baseline but could not be "
                                 "measured after the patch")
    text = f"coverage {was:.2f}% → {now:.2f}% (tolerance {tolerance:g} points)"
    missing_was, missing_now = _uncovered(before), _uncovered(after)
    if now < was - tolerance and missing_now is not None and missing_was is not None \
            and missing_now <= missing_was:
        return GateResult(gate="coverage", passed=True,
                          detail=f"{text}; uncovered statements {missing_was} → {missing_now}: "
                                 "only covered code was removed")
    if now < was - tolerance:
        return GateResult(gate="coverage", passed=False, detail=f"{text}: dropped "
                          f"{was - now:.2f} points{_coverage_losers(before, after)}")
    return GateResult(gate="coverage", passed=True, detail=text)


def _uncovered(run: TestRun | None) -> int | None:
    """Statements coverage.py measured but no test executed, summed over files."""
    if run is None or not run.files:
        return None
    return sum(f.num_statements - f.covered_lines for f in run.files)


def _coverage_losers(before: TestRun | None, after: TestRun | None) -> str:
    """Name the files whose coverage dropped most, for the coverage gate's detail."""
    if before is None or after is None:
        return ""
    was = {f.path: f.percent for f in before.files}
    drops = sorted(((was[f.path] - f.percent, f.path, f.percent) for f in after.files
                    if f.path in was and f.percent < was[f.path]), reverse=True)
    listed = [f"{path}: {was[path]:.1f}% → {now:.1f}%" for _, path, now in drops[:5]]
    return ("; files: " + ", ".join(listed)) if listed else ""


def listing(items: Sequence[str]) -> str:
    """The items one per line, at most 15, then "... and N more"."""
    shown = list(items[:_MAX_ITEMS])
    if len(items) > _MAX_ITEMS:
        shown.append(f"... and {len(items) - _MAX_ITEMS} more")
    return "\n".join(shown)


def clip(text: str, limit: int) -> str:
    """``text`` stripped, cut to ``limit`` characters with a "(truncated)" mark."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 16].rstrip() + " ... (truncated)"
