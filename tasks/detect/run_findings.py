"""Findings from one test run: failing and erroring tests, collection errors,
slow tests and poorly covered source files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mendflow.core.config import ToolsConfig
from mendflow.core.findings import SourceIndex, disambiguate, make_finding
from mendflow.core.models import Finding, ImpactMap, TestCase, TestRun
from mendflow.tasks.detect.common import is_library_path
from mendflow.tasks.detect.fault_localization import Spectrum
from mendflow.tasks.detect.pytest_reports import CollectionError, line_ranges
from mendflow.tasks.detect.root_cause import RootCauses

MESSAGE_CHARS = 300


def findings_from_test_run(root: Path, run: TestRun,
                           collection_errors: Sequence[CollectionError],
                           tools: ToolsConfig, impact: ImpactMap | None = None) -> list[Finding]:
    """Turn a :class:`TestRun` into findings.

    Args:
        root: the worktree root (for fingerprints).
        run: the parsed test run.
        collection_errors: modules pytest could not collect.
        tools: the ``tools`` config (``pytest.slow_test_s`` seconds,
            ``coverage.min_file_percent`` percent).
        impact: the run's own per-test coverage (recorded by a full run under
            coverage.py contexts), which locates the defect of a failing test whose
            traceback does not (:mod:`mendflow.tasks.detect.fault_localization`).

    Returns:
        The findings, ids made unique with :func:`mendflow.core.findings.disambiguate`.
    """
    index = SourceIndex(root)
    causes = RootCauses(root, _spectrum(run, impact))
    found: list[Finding] = []
    for error in collection_errors:
        found.append(make_finding(
            index, source="pytest", rule="collection-error", path=error.path, line=None,
            key=f"collection:{error.path}", severity="critical", category="test-failure",
            message=_short(f"cannot collect {error.path}: {error.message}"),
            detail=error.detail or None))
    for case in run.cases:
        finding = _case_finding(index, causes, case, tools.pytest.slow_test_s)
        if finding is not None:
            found.append(finding)
    for file in run.files:
        if (file.num_statements > 0 and file.percent < tools.coverage.min_file_percent
                and is_library_path(file.path)):
            missing = line_ranges(file.missing_lines)
            found.append(make_finding(
                index, source="coverage", rule="low-coverage", path=file.path, line=None,
                key=f"low-coverage:{file.path}", severity="low", category="coverage",
                message=(f"{file.percent:.1f}% of {file.num_statements} statements covered "
                         f"(minimum {tools.coverage.min_file_percent:g}%); "
                         f"missing lines {_short(missing)}"),
                detail=f"missing lines: {missing}" if missing else None))
    return disambiguate(found)


def _case_finding(index: SourceIndex, causes: RootCauses, case: TestCase,
                  slow_s: float) -> Finding | None:
    path = case.path or case.nodeid.split("::", 1)[0]
    if case.timed_out:  # a hang is a bug (an infinite loop, a deadlock), not noise
        return make_finding(
            index, source="pytest", rule="hang", path=path, line=case.line, key=case.nodeid,
            test_id=case.nodeid, severity="high", category="test-failure",
            message=_short(f"{case.nodeid} {case.message or 'hangs'}"), detail=case.detail)
    if case.outcome in ("failed", "error"):
        rule = "test-failure" if case.outcome == "failed" else "test-error"
        verb = "fails" if case.outcome == "failed" else "errors"
        reason = (case.message or "").strip().splitlines()
        return make_finding(
            index, source="pytest", rule=rule, path=path, line=case.line, key=case.nodeid,
            test_id=case.nodeid, severity="high", category="test-failure",
            message=_short(f"{case.nodeid} {verb}" + (f": {reason[0]}" if reason else "")),
            detail=case.detail, root_cause=causes.key(case))
    if case.outcome == "passed" and case.duration_s > slow_s:
        return make_finding(
            index, source="pytest", rule="slow-test", path=path, line=case.line,
            key=case.nodeid, test_id=case.nodeid, severity="info", category="performance",
            message=f"{case.nodeid} took {case.duration_s:.1f} s (limit {slow_s:g} s)")
    return None


def _spectrum(run: TestRun, impact: ImpactMap | None) -> Spectrum | None:
    if impact is None:
        return None
    failing = [c.nodeid for c in run.cases if c.outcome in ("failed", "error")]
    if not failing:
        return None
    passing = [c.nodeid for c in run.cases if c.outcome == "passed"]
    return Spectrum(impact, failing, passing, include=is_library_path)


def _short(text: str) -> str:
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."
