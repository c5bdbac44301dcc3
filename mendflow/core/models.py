"""Typed contracts passed between mendflow's pipeline stages.

All models are frozen pydantic models: a stage never mutates what another
stage produced, it returns a new value. Paths inside these models are POSIX
paths relative to the repository root unless a field says otherwise. The
detect stage's contracts (findings, test runs, measurements) live in
:mod:`mendflow.core.measurements` and are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from mendflow.core.config_sandbox import SandboxLimits
from mendflow.core.measurements import (  # noqa: F401  (re-exported: many callers)
    SEVERITY_RANK,
    Category,
    Contract,
    FileCoverage,
    Finding,
    ImpactFile,
    ImpactMap,
    Measurement,
    MissionStatus,
    PatchStatus,
    Severity,
    Source,
    TestCase,
    TestOutcome,
    TestPlan,
    TestRun,
    ToolResult,
)


class RepoTarget(Contract):
    """The repository a mission works on and the scope it is limited to."""

    root: Path
    head_commit: str
    head_branch: str | None
    scope: Literal["project", "directory", "file"]
    scope_path: str = Field(description="POSIX path relative to root; '.' for the project")


class CheckoutSnapshot(Contract):
    """A snapshot of what a mission must never change in the user's checkout."""

    status_porcelain: str
    refs: dict[str, str]
    head: str


class Sandbox(Contract):
    """An isolated git worktree of the repository on the mission branch."""

    mission_id: str
    path: Path
    branch: str
    base_commit: str
    repo_root: Path


class Isolation(Contract):
    """How the target's code is run: under bubblewrap with limits, or as is.

    Resolved once per mission from the ``sandbox`` config and a probe of bubblewrap
    (see :mod:`mendflow.infra.isolation`).
    """

    backend: Literal["bwrap", "none"] = "none"
    limits: SandboxLimits = SandboxLimits()
    hidden: tuple[Path, ...] = Field(
        default=(), description="absolute directories the target's code must not see")
    process_cgroup: bool = Field(
        default=False, description="enforce max_processes with a pids cgroup (root)")


class TargetEnv(Contract):
    """The Python environment in which the target's tests run."""

    python: Path
    kind: Literal["managed-venv", "interpreter"]
    fingerprint: str = Field(description="hash of interpreter + dependency files; cache key part")
    isolation: Isolation = Field(default_factory=lambda: Isolation(),
                                 description="how every run of the target's code is isolated")


class Patch(Contract):
    """A candidate change: a git-format unified diff and the findings it claims to fix."""

    id: str
    fixer: str
    finding_ids: tuple[str, ...]
    diff: str
    files: tuple[str, ...]
    title: str
    description: str = ""
    confidence: Literal["high", "medium", "low"] = "high"


class GateResult(Contract):
    """The verdict of one validation gate."""

    gate: str
    passed: bool
    detail: str = ""


class ValidationReport(Contract):
    """The verdict on one patch, measured against the current baseline."""

    patch_id: str
    accepted: bool
    gates: tuple[GateResult, ...]
    reason: str | None = None
    after: Measurement | None = None
    fixed_finding_ids: tuple[str, ...] = ()
    new_findings: tuple[Finding, ...] = ()

    def summary(self) -> str:
        passed = sum(g.passed for g in self.gates)
        verdict = "accepted" if self.accepted else f"rejected ({self.reason})"
        return f"{verdict}; gates {passed}/{len(self.gates)} passed"


class BackupEntry(Contract):
    """Per changed file: SHA-256 of its bytes before and after, and the commit."""

    path: str
    sha256_before: str | None
    sha256_after: str | None
    commit: str
    patch_id: str
    backup_path: str | None = Field(default=None, description="copy of the file before, if any")


class CommitRecord(Contract):
    """An accepted patch committed on the mission branch."""

    patch_id: str
    commit: str
    backups: tuple[BackupEntry, ...] = ()


class PatchOutcome(Contract):
    """One patch's fate in the mission, as reported in session_data.json."""

    id: str
    finding_ids: tuple[str, ...]
    fixer: str
    status: PatchStatus
    reason: str | None = None
    commit: str | None = None
    title: str = ""
    iteration: int = 0
    files: tuple[str, ...] = ()
    validation: ValidationReport | None = None
    confidence: Literal["high", "medium", "low"] | None = Field(
        default=None, description="the patch's confidence (Patch.confidence); None = unknown")
    delivered_commit: str | None = Field(
        default=None, description="the commit that brought this patch to the target branch")


class QualityScore(Contract):
    before: float
    after: float


class ProposalBase(Contract):
    """What every answer of a fixer for one group of findings carries.

    Failures are results, not exceptions, so that they are cached and a resumed
    mission never asks the model again. Match on the case (``kind``):
    :class:`Patched`, :class:`Declined`, :class:`OutputRejected`, :class:`CallFailed`.
    """

    fixer: str
    finding_ids: tuple[str, ...]
    attempt: int = 1
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    llm_calls: int = Field(0, description="model calls this proposal cost (0 for offline fixers)")


class Patched(ProposalBase):
    """The fixer proposed a patch, to apply and validate."""

    kind: Literal["patched"] = "patched"
    patch: Patch


class Declined(ProposalBase):
    """The fixer proposed nothing: the model said ``fixable: false``, the tool had nothing
    to change, the policy refused, or a budget ran out."""

    kind: Literal["declined"] = "declined"
    reason: str
    budget_exhausted: bool = Field(False, description="declined because a budget ran out")


class OutputRejected(ProposalBase):
    """The fixer's output failed a guard; ``message`` is fed back to the next attempt."""

    kind: Literal["output-rejected"] = "output-rejected"
    guard: str = Field(description="the PatchRejected reason: malformed-reply, path-escape ...")
    message: str = Field(description="what was wrong, for the report and the next attempt")


class CallFailed(ProposalBase):
    """A model call failed for good (HTTP 400/401, or transient errors past every retry)."""

    kind: Literal["call-failed"] = "call-failed"
    error: str
    auth_failed: bool = Field(False, description="the API refused the credentials")


Proposal = Annotated[Patched | Declined | OutputRejected | CallFailed, Field(discriminator="kind")]
"""What a fixer answered for one group of findings: one of four cases, told by ``kind``."""


class LLMUsage(Contract):
    """What a mission spent on language models (summed from its proposals)."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    budget_exhausted: str | None = Field(None, description="why the mission stopped asking")
    failures: tuple[str, ...] = Field((), description="findings a model call failed for, and why")

    def add(self, proposal: ProposalBase) -> LLMUsage:
        return self.model_copy(update={
            "calls": self.calls + proposal.llm_calls,
            "input_tokens": self.input_tokens + proposal.input_tokens,
            "output_tokens": self.output_tokens + proposal.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens
            + proposal.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens
            + proposal.cache_read_input_tokens,
        })


ApprovalDecision = Literal["auto", "approved", "partial", "rejected", "none"]
DeliveryMode = Literal["fast-forward", "merge", "already-delivered", "none", "conflict",
                       "refused", "failed"]


class ApprovalNeed(Contract):
    """Why one accepted patch does (or does not) need a human's approval."""

    patch_id: str
    reasons: tuple[str, ...] = Field(default=(), description="empty = no approval needed")
    sensitive: tuple[str, ...] = Field(
        default=(), description="sensitive kinds: tests, configuration, dependencies, security")
    changed_lines: int = Field(default=0, description="added + deleted lines (git numstat)")


class ApprovalRecord(Contract):
    """The approval step of a mission: what was asked, decided and delivered."""

    autonomy: str
    required: bool = Field(description="did any patch need a human's approval")
    decision: ApprovalDecision
    approver: str | None = None
    comment: str = ""
    patch_ids: tuple[str, ...] = Field(default=(), description="patches approved for delivery")
    pending_patch_ids: tuple[str, ...] = Field(default=(), description="patches that were asked")
    delivered_commits: tuple[str, ...] = ()
    target_branch: str | None = None
    timed_out: bool = False
    delivery: DeliveryMode = "none"
    error: str | None = Field(default=None, description="why delivery failed, if it did")
    pushed_to: str | None = Field(default=None, description="remote the target was pushed to")
    needs: tuple[ApprovalNeed, ...] = ()
    requested_at: str | None = Field(default=None, description="ISO 8601, UTC")
    decided_at: str | None = Field(default=None, description="ISO 8601, UTC")


class ValidationTiming(Contract):
    """How long one validation of a candidate took, and how many tests it ran."""

    patch_id: str
    duration_s: float = Field(description="wall time of the validation, seconds")
    tests_run: int = Field(description="test cases pytest ran on the patched tree")
    tests_total: int = Field(description="test cases collected at baseline (the full suite)")
    full_run: bool = Field(description="the whole suite with coverage and every linter ran")


class Timings(Contract):
    """Where a mission's wall time went (``timings`` of session_data.json)."""

    baseline_s: float = Field(0.0, description="wall time of the baseline measurement, seconds")
    environment_s: float = Field(
        0.0, description="wall time of preparing the target's environment before the baseline "
                         "(a first venv build; a cached venv takes about a second), seconds")
    validations: tuple[ValidationTiming, ...] = ()


class SuiteSummary(Contract):
    """The test suite at one point of a mission: for the summary table and the report."""

    passed: int = 0
    total: int = Field(0, description="test cases that ran (passed, failed or errored)")
    coverage_percent: float | None = None
    uncollected: int = Field(0, description="test modules pytest could not collect (their tests "
                                            "never ran, so they are not in total)")


class BaselineTests(Contract):
    """The baseline test run of a mission, in brief (for the evolution loop's watch and metrics)."""

    passed: int = 0
    total: int = 0
    coverage_percent: float | None = None
    passing: tuple[str, ...] = Field(default=(), description="node ids that passed")
    failing: tuple[str, ...] = Field(default=(), description="node ids that failed or errored, "
                                     "and the paths of test modules pytest could not collect")

    @classmethod
    def of(cls, run: TestRun | None) -> BaselineTests | None:
        """The summary of a pytest run (None when there was none)."""
        if run is None:
            return None
        passing = tuple(c.nodeid for c in run.cases if c.outcome in ("passed", "xfailed"))
        failing = tuple(c.nodeid for c in run.cases if c.outcome in ("failed", "error")) \
            + tuple(run.collection_errors)  # a module that no longer imports: its path
        return cls(passed=len(passing), total=len(passing) + len(failing),
                   coverage_percent=run.coverage_percent, passing=passing, failing=failing)


class ToolFailure(Contract):
    """A tool that did not complete at baseline: its findings are missing from the mission."""

    tool: str
    error: str = Field(description="why (the first lines of the tool's error), at most 500 chars")

    @classmethod
    def of(cls, results: tuple[ToolResult, ...]) -> tuple[ToolFailure, ...]:
        """The failures among a measurement's tool results (``ok=False``)."""
        return tuple(cls(tool=r.tool, error=(r.error or "failed")[:500])
                     for r in results if not r.ok)


class MissionResult(Contract):
    """The machine-readable result of a mission (``--json`` and session_data.json)."""

    mission_id: str
    flow_run_id: str | None
    status: MissionStatus
    repository: str
    base_commit: str
    branch: str
    findings: tuple[Finding, ...]
    patches: tuple[PatchOutcome, ...]
    quality_score: QualityScore
    report_dir: str
    iterations: int = 0
    stop_reason: str = ""
    exit_code: int = 0
    dry_run: bool = False
    backup_only: bool = False
    worktree: str | None = None
    final_findings: tuple[Finding, ...] = ()
    llm_usage: LLMUsage = Field(default_factory=lambda: LLMUsage())
    approval: ApprovalRecord | None = Field(
        default=None, description="approval and delivery; None = autonomy not set")
    timings: Timings = Field(default_factory=lambda: Timings())
    tool_failures: tuple[ToolFailure, ...] = Field(
        default=(), description="tools that crashed or timed out at baseline (their findings "
                                "are missing, so the score and the queue leave them out)")
    tests_before: SuiteSummary | None = Field(default=None, description="the suite at baseline")
    tests_after: SuiteSummary | None = Field(default=None, description="the suite at the end")
    baseline_tests: BaselineTests | None = Field(
        default=None, description="the baseline pytest run in brief; None = no test run")
