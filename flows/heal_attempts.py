"""The attempts of a heal run: reproduce first, then fix and validate (composed tasks only).

Each attempt asks the model once (:func:`mendflow.tasks.heal.ask_heal`); a refusal's
reason is fed back to the next attempt, up to ``heal.max_attempts``:

1. the reply must hold a reproduction test and a fix (else ``no-reproduction``/``no-fix``),
   and pass the edit guards (a denylisted file, a bad path ...);
2. the test alone, on the unfixed tree, must fail with the group's exception raised
   from the group's innermost frame;
3. the test with the fix must pass;
4. the patch (test + fix) must pass every mission gate; the reproduction is the one
   test change the ``test-files`` gate allows.

An ``external`` analysis, a policy decline (not fixable, low confidence, a
category not allowed) or the hourly call cap ends the run without a fix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prefect.utilities.annotations import opaque

from mendflow.core.config import LLMPolicy, MendflowConfig
from mendflow.core.error_groups import ErrorGroup
from mendflow.core.errors import LLMError
from mendflow.core.heal import HealAttempt, HealRecord, judge_reproduction
from mendflow.core.models import (
    Finding,
    LLMUsage,
    Measurement,
    PatchOutcome,
    Sandbox,
    TargetEnv,
    Timings,
    ValidationTiming,
)
from mendflow.flows.measure import measure
from mendflow.infra.heal_records import reserve_slot
from mendflow.infra.layout import StateLayout
from mendflow.tasks.detect.log_scan import repo_files
from mendflow.tasks.heal import HealProposal, ask_heal, run_reproduction
from mendflow.tasks.sandbox import apply_patch, reset_sandbox
from mendflow.tasks.validate import check_patch_syntax, format_feedback, judge_patch
from mendflow.tasks.vcs import commit_accepted_patch


@dataclass
class HealProgress:
    """What a heal run accumulates (flow-local)."""

    record: HealRecord
    group: ErrorGroup
    finding: Finding
    sandbox: Sandbox
    env: TargetEnv
    config: MendflowConfig
    layout: StateLayout
    baseline: Measurement | None = None
    current: Measurement | None = None
    """The measurement of the accepted fix (None until one is accepted)."""
    outcomes: list[PatchOutcome] = field(default_factory=list)
    llm_usage: LLMUsage = field(default_factory=LLMUsage)
    reproduction_test: str | None = None
    baseline_score: float = 0.0
    score: float = 0.0
    environment_s: float = 0.0
    """Wall time of preparing the target's environment, seconds (set by the heal flow)."""
    baseline_s: float = 0.0
    validations: list[ValidationTiming] = field(default_factory=list)
    last_tests_run: int | None = None
    """Test cases the last attempt's measurement of the patched tree ran (None: not measured)."""

    def timings(self) -> Timings:
        """The result's ``timings``, as a mission's: environment, baseline, each validation
        (the reproduction runs and the measurement of the patched tree)."""
        return Timings(environment_s=round(self.environment_s, 3),
                       baseline_s=round(self.baseline_s, 3), validations=tuple(self.validations))


def heal_policy(config: MendflowConfig) -> LLMPolicy:
    """The fixer's policy, with the heal section's confidence, categories and denylist."""
    heal = config.heal
    base = getattr(config.fixer, "policy", None) or LLMPolicy()
    for member in getattr(config.fixer, "fixers", []):  # a chain: its model member's policy
        base = getattr(member, "policy", None) or base
    return base.model_copy(update={
        "min_confidence": heal.min_confidence, "allowed_categories": list(heal.allowed_categories),
        "denied_categories": [], "denylist": [*base.denylist, *heal.denylist],
        "max_attempts": heal.max_attempts})


def attempt_heals(progress: HealProgress) -> HealProgress:
    """Up to ``heal.max_attempts`` attempts; the record says how it ended.

    A model call that fails for good (:class:`LLMError`) ends the run as
    ``failed``, with the attempts made before it.
    """
    config = progress.config
    start = time.monotonic()
    progress.baseline = measure(progress.sandbox, progress.env, config, label="baseline")
    progress.baseline_s = time.monotonic() - start
    progress.baseline_score = progress.score = progress.baseline.score
    policy = heal_policy(config)
    feedback: str | None = None
    attempts: list[HealAttempt] = []
    for number in range(1, config.heal.max_attempts + 1):
        capped = reserve_slot(progress.layout, "calls", config.heal.max_calls_per_hour)
        if capped:
            return _end(progress, attempts, "refused", capped)
        try:
            proposal = ask_heal(config.fixer, progress.sandbox, progress.finding, policy,
                                config.gates, feedback, number)
        except LLMError as err:  # the attempts so far, and why they were refused, stay recorded
            usage = progress.llm_usage
            progress.llm_usage = usage.model_copy(update={
                "calls": usage.calls + 1, "failures": (*usage.failures, err.message)})
            return _end(progress, attempts, "failed", f"the model call failed: {err.message}"
                        + (f"; attempt {number - 1} was refused: {feedback}" if feedback else ""))
        usage = progress.llm_usage  # the result's llm_usage, as a mission's
        progress.llm_usage = usage.model_copy(update={
            "calls": usage.calls + proposal.llm_calls,
            "input_tokens": usage.input_tokens + proposal.input_tokens,
            "output_tokens": usage.output_tokens + proposal.output_tokens})
        if proposal.kind == "external":
            attempts.append(_attempt(number, proposal, proposal.reason))
            return _end(progress, attempts, "external", proposal.reason)
        if proposal.kind in ("declined", "budget"):
            attempts.append(_attempt(number, proposal, proposal.reason))
            return _end(progress, attempts, "refused", proposal.reason)
        reason = proposal.reason if proposal.kind == "refused" else _timed_try(progress, proposal)
        attempts.append(_attempt(number, proposal, reason or ""))
        if not reason:
            commit = commit_accepted_patch(progress.sandbox, proposal.patch,
                                           f"heal {progress.group.fingerprint}: reproduced by "
                                           f"{', '.join(proposal.test_files)}",
                                           progress.layout.root / "heal" / "backups")
            progress.reproduction_test = proposal.test_files[0]
            progress.outcomes[-1] = progress.outcomes[-1].model_copy(update={"commit": commit.commit})
            progress.record = progress.record.model_copy(update={
                "commit": commit.commit, "branch": progress.sandbox.branch})
            return _end(progress, attempts, "fixed", "")
        feedback = reason
    return _end(progress, attempts, "refused", f"no valid reproduction and fix in "
                f"{config.heal.max_attempts} attempt(s); last: {feedback}")


def _timed_try(progress: HealProgress, proposal: HealProposal) -> str | None:
    """:func:`_try`, its wall time and the tests the patched tree's measurement ran recorded
    as a validation timing (0 tests when it was refused before that measurement)."""
    start, progress.last_tests_run = time.monotonic(), None
    try:
        return _try(progress, proposal)
    finally:
        patch_id = proposal.patch.id if proposal.patch else f"attempt-{len(progress.validations) + 1}"
        progress.validations.append(ValidationTiming(
            patch_id=patch_id, duration_s=round(time.monotonic() - start, 3),
            tests_run=progress.last_tests_run or 0, tests_total=_collected(progress.baseline),
            full_run=progress.last_tests_run is not None))


def _collected(measurement: Measurement | None) -> int:
    """Test cases of a measurement's pytest run (0 without one)."""
    result = measurement.result_of("pytest") if measurement is not None else None
    return result.test_run.collected if result is not None and result.test_run else 0


def _try(progress: HealProgress, proposal: HealProposal) -> str | None:
    """Reproduce, fix, validate one proposal; None when accepted (left applied), else why not."""
    assert proposal.test_patch is not None and proposal.patch is not None
    repo = repo_files(progress.sandbox.path)
    tools, tests = progress.config.tools, proposal.test_files
    apply_patch(progress.sandbox, proposal.test_patch)
    try:
        before = run_reproduction(progress.sandbox, progress.env, tools, tests)
    finally:
        reset_sandbox(progress.sandbox, proposal.test_patch)
    verdict = judge_reproduction(before, progress.group, repo, fixed=False)
    if not verdict.ok:
        return f"reproduction-invalid: {verdict.reason}"
    patch = proposal.patch
    apply_patch(progress.sandbox, patch)
    accepted = False
    try:
        after = run_reproduction(progress.sandbox, progress.env, tools, tests)
        verdict = judge_reproduction(after, progress.group, repo, fixed=True)
        if not verdict.ok:
            return f"fix-invalid: {verdict.reason}"
        gates = progress.config.gates.model_copy(update={"allow_test_changes": True})
        syntax = check_patch_syntax(progress.sandbox, patch)
        assert progress.baseline is not None
        measured = measure(progress.sandbox, progress.env, progress.config, label=f"heal {patch.id}") \
            if syntax.passed else progress.baseline
        if syntax.passed:
            progress.last_tests_run = _collected(measured)
        report = judge_patch(opaque(progress.baseline), opaque(measured), patch, gates, syntax)
        progress.outcomes.append(PatchOutcome(
            id=patch.id, finding_ids=patch.finding_ids, fixer=patch.fixer,
            status="accepted" if report.accepted else "rejected", reason=report.reason,
            title=patch.title, files=patch.files, confidence=patch.confidence,
            validation=report.model_copy(update={"after": None})))
        if not report.accepted:
            return f"gates: {report.reason}\n{format_feedback(report)}"
        progress.score, progress.current = measured.score, measured
        accepted = True
        return None
    finally:
        if not accepted:
            reset_sandbox(progress.sandbox, patch)


def _attempt(number: int, proposal: HealProposal, reason: str) -> HealAttempt:
    return HealAttempt(attempt=number, analysis=proposal.analysis, accepted=not reason,
                       reason=reason, patch_id=proposal.patch.id if proposal.patch else None,
                       reproduction_test=proposal.test_files[0] if proposal.test_files else None)


def _end(progress: HealProgress, attempts: list[HealAttempt], status: str, reason: str) -> HealProgress:
    progress.record = progress.record.model_copy(update={
        "status": status, "reason": reason, "attempts": (*progress.record.attempts, *attempts)})
    return progress
