"""The contracts of the detect stage: findings, test runs, tool results, a measurement.

Part of :mod:`mendflow.core.models` (which re-exports every name here): frozen
pydantic models, POSIX paths relative to the repository root unless a field says
otherwise.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["critical", "high", "medium", "low", "info"]
SEVERITY_RANK: dict[str, int] = {"critical": 4, "high": 3, "medium": 2, "low": 1, "info": 0}

Source = Literal["pytest", "coverage", "ruff", "mypy", "bandit", "todo", "log", "runtime"]
Category = Literal[
    "test-failure", "coverage", "lint", "style", "type", "security", "syntax", "todo",
    "performance", "runtime",
]
TestOutcome = Literal["passed", "failed", "error", "skipped", "xfailed", "xpassed"]
PatchStatus = Literal["accepted", "rejected", "pending_approval", "proposed", "declined"]
MissionStatus = Literal["completed", "awaiting_approval", "failed", "paused"]


class Contract(BaseModel):
    """Base of every contract: frozen, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Finding(Contract):
    """One problem found by one tool, normalized.

    ``id`` is a fingerprint (hex) over source, rule, path, the enclosing
    symbol and the normalized text of the offending line, so it survives
    line shifts elsewhere in the file.
    """

    id: str
    source: Source
    rule: str
    severity: Severity
    category: Category
    path: str
    line: int | None = None
    column: int | None = None
    end_line: int | None = None
    message: str
    test_id: str | None = None
    symbol: str | None = None
    fixable: bool = False
    url: str | None = None
    detail: str | None = Field(default=None, description="long text: a traceback, missing lines")
    sources: tuple[str, ...] = Field(
        default=(), description="every 'source:rule' that flagged this same defect, when "
        "several tools did (see mendflow.core.findings.merge_cross_tool); empty = only this one")
    root_cause: str | None = Field(
        default=None, description="failing tests: where the defect lives (`path::function` or "
        "`path` in the code under test); tests sharing it are one defect, fixed by one candidate")


class TestCase(Contract):
    """One pytest test result, from pytest's JUnit XML."""

    __test__ = False  # not a pytest test class

    nodeid: str
    outcome: TestOutcome
    path: str | None = None
    line: int | None = None
    duration_s: float = 0.0
    message: str | None = None
    detail: str | None = None
    timed_out: bool = Field(False, description="it hung: no result within its last timeout")


class TestPlan(Contract):
    """Per-test timeouts for one test run (pytest-timeout), learned from an earlier run.

    Attributes:
        default_s: the timeout of a test not listed, seconds.
        timeouts: node id -> timeout in seconds.
        hung: node ids that hung in the earlier run: they run with ``hang_s``,
            apart from the others, and get no second chance.
        hang_s: their timeout, seconds.
    """

    __test__ = False

    default_s: float
    timeouts: dict[str, float] = Field(default_factory=dict)
    hung: tuple[str, ...] = ()
    hang_s: float = 1.0


class FileCoverage(Contract):
    """Line coverage of one file, from coverage.py's JSON report."""

    path: str
    num_statements: int
    covered_lines: int
    percent: float
    missing_lines: tuple[int, ...] = ()


class TestRun(Contract):
    """What one pytest-under-coverage run measured."""

    __test__ = False

    collected: int
    cases: tuple[TestCase, ...] = ()
    coverage_percent: float | None = None
    files: tuple[FileCoverage, ...] = ()
    duration_s: float = 0.0
    timed_out: bool = False
    collection_errors: tuple[str, ...] = ()
    workers: int = Field(1, ge=1, description="pytest-xdist workers the suite was spread "
                         "over (1: one serial process)")

    def outcome_of(self, nodeid: str) -> TestOutcome | None:
        for case in self.cases:
            if case.nodeid == nodeid:
                return case.outcome
        return None


class ToolResult(Contract):
    """The normalized output of one detection tool run."""

    tool: Literal["pytest", "ruff", "mypy", "bandit", "todo", "log"]
    findings: tuple[Finding, ...] = ()
    test_run: TestRun | None = None
    duration_s: float = 0.0
    command: tuple[str, ...] = ()
    exit_code: int | None = None
    ok: bool = True
    error: str | None = None


class Measurement(Contract):
    """Everything measured on one state of the sandbox tree."""

    tree: str = Field(description="content hash of the measured tree (git write-tree)")
    results: tuple[ToolResult, ...]
    findings: tuple[Finding, ...]
    score: float
    loc: int = 0

    @property
    def test_run(self) -> TestRun | None:
        for result in self.results:
            if result.test_run is not None:
                return result.test_run
        return None

    def result_of(self, tool: str) -> ToolResult | None:
        return next((r for r in self.results if r.tool == tool), None)


class ImpactFile(Contract):
    """Which tests reach which lines of one measured file (coverage.py contexts)."""

    sha256: str | None = Field(description="the file's content hash when it was measured "
                               "(a different hash now: the data is stale)")
    lines: dict[int, tuple[int, ...]] = Field(
        default_factory=dict, description="line number -> indexes into ImpactMap.tests")
    import_lines: tuple[int, ...] = Field(
        default=(), description="lines run outside any test (at import or collection time)")


class ImpactMap(Contract):
    """The test-impact map of one measured tree: recorded by a full test run under
    coverage.py with ``dynamic_context = test_function``, read by test selection."""

    tests: tuple[str, ...] = Field(description="pytest node ids, indexed by ImpactFile.lines")
    files: dict[str, ImpactFile] = Field(description="repository-relative POSIX path -> data")
    whole_tree: bool = Field(
        False, description="the run measured every Python file it executed under the worktree "
        "(`coverage run --source=.`; the repository's coverage config does not narrow it): a "
        ".py file missing from `files` ran in no test")
    imported: tuple[str, ...] | None = Field(
        None, description="repository-relative files whose modules the test processes imported "
        "(None: not recorded): with a narrowed coverage source, a .py file missing from `files` "
        "and from this list ran in no test as a module")
