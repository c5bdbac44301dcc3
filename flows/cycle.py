"""The composed steps of a mission's M-T-D-V cycle, shared by the mission flows.

Nothing here runs a tool, git or HTTP itself: each step is a task call, and
this module only sequences them and branches on their typed results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from prefect import get_run_logger
from prefect.utilities.annotations import opaque

from mendflow.core.config import FixerConfig, MendflowConfig
from mendflow.core.errors import LLMError, PatchRejected, ValidationUnavailable
from mendflow.core.findings import in_scope
from mendflow.core.hangs import plan_test_timeouts
from mendflow.core.learning import AttemptRecord, Choice, Prior
from mendflow.core.models import (
    BackupEntry,
    CallFailed,
    Declined,
    Finding,
    LLMUsage,
    Measurement,
    OutputRejected,
    Patched,
    PatchOutcome,
    Proposal,
    RepoTarget,
    Sandbox,
    TargetEnv,
    TestPlan,
    ValidationReport,
)
from mendflow.flows.cycle_learning import GroupAttempts, first_failed_gate, no_patch_result
from mendflow.infra.progress import report_progress
from mendflow.tasks.bookkeeping import back_up_files, compute_measurement
from mendflow.tasks.detect import (
    find_todos,
    merge_findings,
    read_logs,
    run_bandit,
    run_mypy,
    run_pytest,
    run_ruff,
)
from mendflow.tasks.fix import plan_fixes, propose_patch
from mendflow.tasks.learn.audit import audit_commit
from mendflow.tasks.learn.strategy import planning_fixer, rank_queue
from mendflow.tasks.preflight import check_free_disk, disk_paths, record_tool_durations
from mendflow.tasks.sandbox import apply_patch, hash_tree, reset_sandbox
from mendflow.tasks.validate import check_patch_syntax, format_feedback, glob_match, judge_patch
from mendflow.tasks.validate_tests import check_test_files
from mendflow.tasks.vcs import commit_accepted_patch


@dataclass
class MissionState:
    """What the flow accumulates while it runs (flow-local, never passed to a task)."""

    mission_id: str
    target: RepoTarget
    sandbox: Sandbox
    env: TargetEnv
    config: MendflowConfig
    baseline: Measurement
    current: Measurement
    backups_dir: Path
    started_at: str | None = None
    state_root: Path | None = None
    priors: dict[tuple[str, str], Prior] = field(default_factory=dict)
    choices: list[Choice] = field(default_factory=list)
    attempt_log: list[AttemptRecord] = field(default_factory=list)
    outcomes: list[PatchOutcome] = field(default_factory=list)
    validations: list[ValidationReport] = field(default_factory=list)
    backups: list[BackupEntry] = field(default_factory=list)
    tried: set[frozenset[str]] = field(default_factory=set)
    rejected_patches: set[str] = field(default_factory=set)
    llm_usage: LLMUsage = field(default_factory=LLMUsage)
    fixer_disabled: str | None = None
    paused: str | None = None
    started: float = field(default_factory=time.monotonic)
    iterations: int = 0
    stop_reason: str = ""

    def scoped(self, findings) -> list[Finding]:
        return [f for f in findings if in_scope(f, self.target)]

    def fixable(self, findings) -> list[Finding]:
        """In-scope findings a fixer may work on.

        Findings located in test files are left out unless the gates allow test
        changes, except failing tests themselves: their fix belongs in the code
        under test (and the ``test-files`` gate still refuses any test edit).
        """
        gates = self.config.gates
        return [f for f in self.scoped(findings)
                if gates.allow_test_changes or f.category == "test-failure"
                or not any(glob_match(f.path, g) for g in gates.test_globs)]

    def exit_code(self) -> int:
        """0 success; 2 a patch was rejected or the target score was not reached;
        3 paused (low disk): validation cannot go on until space is freed."""
        if self.paused:
            return 3
        rejected = any(o.status == "rejected" for o in self.outcomes)
        below = self.current.score < self.config.mission.target_score
        return 2 if rejected or (below and not self.config.mission.backup_only) else 0


def measure(sandbox: Sandbox, env: TargetEnv, config: MendflowConfig, *, label: str,
            compared_with: Measurement | None = None) -> Measurement:
    """Run every detector concurrently on the sandbox's current tree and combine them.

    ``compared_with`` (a candidate's validation: the measurement it is judged
    against) gives each test a timeout learned from its duration there, and
    runs the tests that hung there with a short one (:mod:`mendflow.core.hangs`).

    Raises:
        ValidationUnavailable: the baseline test run could not complete.
    """
    report_progress("detect", f"measuring {label}")
    tree = hash_tree(sandbox)
    tools = config.tools
    futures = [
        run_pytest.submit(sandbox, env, tools, tree, _test_plan(compared_with, tools)),
        run_ruff.submit(sandbox, tools, tree),
        run_mypy.submit(sandbox, env, tools, tree),
        run_bandit.submit(sandbox, tools, tree),
        find_todos.submit(sandbox, tools, tree),
        *([read_logs.submit(sandbox, tools, tree)] if tools.logs.enabled else []),
    ]
    results = [f.result() for f in futures]
    # opaque(): Prefect links the upstream task runs but does not walk through
    # every finding of these large inputs (that walk dominated a cached replay)
    record_tool_durations(sandbox.repo_root, opaque(results), config.mission.state_dir)
    findings = merge_findings(opaque(results))
    measurement = compute_measurement(sandbox, tree, opaque(results), opaque(findings),
                                      config.score)
    pytest_result = measurement.result_of("pytest")
    if label == "baseline" and pytest_result is not None and not pytest_result.ok:
        raise ValidationUnavailable(
            f"the baseline test run failed to complete: {pytest_result.error or 'unknown error'}",
            subject="pytest", hint="raise tools.pytest.run_timeout_s, or fix the test setup")
    report_progress("detect", f"{label}: {len(findings)} findings, score {measurement.score}")
    return measurement


def _test_plan(compared_with: Measurement | None, tools) -> TestPlan | None:
    if compared_with is None:
        return None
    result = compared_with.result_of("pytest")
    run = result.test_run if result is not None and result.ok else None
    return plan_test_timeouts(run, tools.pytest) if run is not None else None


def run_iterations(state: MissionState) -> MissionState:
    """Repeat the M-T-D-V cycle until the target score, max iterations or no progress."""
    mission = state.config.mission
    for iteration in range(1, mission.max_iterations + 1):
        if _must_stop(state):
            break
        if state.current.score >= mission.target_score:
            state.stop_reason = f"target score {mission.target_score} reached"
            break
        state.iterations = iteration
        queue = rank_queue(state.config, opaque(state.fixable(state.current.findings)),
                           opaque(state.priors))
        groups = [g for g in plan_fixes(planning_fixer(state.config), opaque(queue))
                  if frozenset(f.id for f in g) not in state.tried]
        if not groups:
            state.stop_reason = "no fixable findings left"
            break
        accepted = 0
        for group in groups[: mission.max_patches_per_iteration]:
            if state.fixer_disabled or _must_stop(state):
                break
            state.tried.add(frozenset(f.id for f in group))
            present = {f.id for f in state.current.findings}
            live = tuple(f for f in group if f.id in present)
            if live:  # else an earlier patch of this iteration fixed the group already
                accepted += fix_group(state, live, iteration)
        if state.fixer_disabled:
            state.stop_reason = state.fixer_disabled
            break
        if state.stop_reason:
            break
        if accepted == 0:
            state.stop_reason = "no candidate was accepted in the last iteration"
            break
    else:
        state.stop_reason = f"max iterations ({mission.max_iterations}) reached"
    if not state.stop_reason:
        state.stop_reason = "finished"
    return state


def _must_stop(state: MissionState) -> bool:
    """Checkpoint between steps: stop cleanly (resumable) on low disk or the wall-time budget."""
    config = state.config
    low = check_free_disk(disk_paths(state.target.root, config.mission.state_dir), config.health)
    if low is not None:
        state.paused = f"paused: low disk space ({low.found}); free space, then " \
                       f"`mendflow mission resume {state.mission_id}`"
        state.stop_reason = state.paused
        report_progress("health", state.paused)
        return True
    budget = config.mission.max_wall_time_s
    if budget is not None and time.monotonic() - state.started >= budget:
        state.stop_reason = (f"wall-time budget of {budget:g} s reached; "
                             f"`mendflow mission resume {state.mission_id}` continues")
        report_progress("health", state.stop_reason)
        return True
    return False


def fix_group(state: MissionState, group: tuple[Finding, ...], iteration: int) -> int:
    """Choose a strategy, then propose, apply, validate and commit (or roll back); 1 if accepted.

    A rejected candidate's gate output (or the guard that refused the fixer's
    output) is fed back to the fixer for another attempt, at most
    ``max_attempts`` times (1 for a deterministic fixer). Every attempt is noted
    and written to the outcome store when the group is done.
    """
    log = GroupAttempts(state, group, iteration)
    fixer = log.choose()
    if fixer is None:
        return 0  # skipped as hopeless (the plan line says why)
    try:
        return _attempt_group(state, group, iteration, fixer, log)
    finally:
        log.flush()


def _attempt_group(state: MissionState, group: tuple[Finding, ...], iteration: int,
                   fixer: FixerConfig, log: GroupAttempts) -> int:
    feedback: str | None = None
    for attempt in range(1, _max_attempts(fixer) + 1):
        log.begin()
        proposal = _ask_fixer(state, fixer, group, feedback, attempt)
        if isinstance(proposal, OutputRejected):  # the fixer's output failed a guard
            _reject_output(state, proposal, iteration)
            log.note(proposal, "rejected", gate=proposal.guard, reason=proposal.message)
            feedback = proposal.message
            continue
        if not isinstance(proposal, Patched):  # declined or failed
            log.note(proposal, no_patch_result(proposal), reason=getattr(
                proposal, "reason", None) or getattr(proposal, "error", None))
            return 0
        if proposal.patch.id in state.rejected_patches:  # the very diff already refused
            log.note(proposal, "rejected", gate="repeated-diff")
            return 0
        patch = proposal.patch
        report_progress("validate", f"candidate {patch.id}: {patch.title}")
        try:
            apply_patch(state.sandbox, patch)
        except PatchRejected as err:
            _reject(state, patch, err.reason, iteration)
            log.note(proposal, "rejected", gate=err.reason, reason=str(err))
            feedback = str(err)
            continue
        try:
            report = _validate(state, patch)
        except BaseException:
            reset_sandbox.fn(state.sandbox, patch)  # never leave a half-validated tree behind
            raise
        state.validations.append(report)
        if not report.accepted:
            reset_sandbox(state.sandbox, patch)
            _reject(state, patch, report.reason, iteration, report)
            log.note(proposal, "rejected", gate=first_failed_gate(report), reason=report.reason)
            feedback = format_feedback(report)
            continue
        _accept(state, patch, report, iteration)
        log.note(proposal, "accepted", commit=state.outcomes[-1].commit)
        return 1
    return 0


def _ask_fixer(state: MissionState, fixer: FixerConfig, group, feedback: str | None,
               attempt: int) -> Proposal:
    """One proposal (cached by the tree, so a resumed mission never asks again)."""
    logger = get_run_logger()
    ids = tuple(f.id for f in group)
    try:
        proposal = propose_patch(fixer, state.sandbox, group, feedback, attempt,
                                 state.current.tree)
    except LLMError as err:  # permanent, or transient and still failing after every retry
        proposal = CallFailed(fixer=getattr(fixer, "type", "fixer"), finding_ids=ids,
                              attempt=attempt, error=err.message, auth_failed=err.auth,
                              llm_calls=1)
    state.llm_usage = state.llm_usage.add(proposal)
    match proposal:
        case CallFailed(error=error, auth_failed=auth_failed):
            failures = (*state.llm_usage.failures, f"{', '.join(ids)}: {error}")
            state.llm_usage = state.llm_usage.model_copy(update={"failures": failures})
            if auth_failed:
                state.fixer_disabled = f"the model fixer is unusable: {error}"
            logger.warning("fixer failed for %s: %s", ids, error)
        case Declined(budget_exhausted=True, reason=reason):
            if state.llm_usage.budget_exhausted is None:
                state.llm_usage = state.llm_usage.model_copy(update={"budget_exhausted": reason})
                report_progress("fix", f"LLM budget exhausted: {reason}")
        case Declined(reason=reason):
            logger.info("fixer declined %s: %s", ids, reason)
            state.outcomes.append(PatchOutcome(
                id=f"{proposal.fixer}-declined-{'-'.join(ids)[:40]}-{attempt}", finding_ids=ids,
                fixer=proposal.fixer, status="declined", reason=reason,
                iteration=state.iterations))
    return proposal


def _reject_output(state: MissionState, proposal: OutputRejected, iteration: int) -> None:
    state.outcomes.append(PatchOutcome(
        id=f"{proposal.fixer}-output-{'-'.join(proposal.finding_ids)[:40]}-{proposal.attempt}",
        finding_ids=proposal.finding_ids, fixer=proposal.fixer, status="rejected",
        reason=f"{proposal.guard}: {proposal.message}", iteration=iteration))
    report_progress("fix", f"fixer output refused ({proposal.guard}): {proposal.message}")


def _reject(state: MissionState, patch, reason, iteration, report=None) -> None:
    state.rejected_patches.add(patch.id)
    state.outcomes.append(_outcome(patch, "rejected", reason, iteration, report))
    report_progress("validate", f"rejected {patch.id}: {reason}")


def _validate(state: MissionState, patch) -> ValidationReport:
    syntax = check_patch_syntax(state.sandbox, patch)
    pytest_result = state.baseline.result_of("pytest")
    tests = check_test_files(state.sandbox, patch,
                             opaque(pytest_result.test_run if pytest_result else None),
                             state.config.gates)
    if not syntax.passed or not tests.passed:  # no test run for a refused patch
        return judge_patch(opaque(state.current), opaque(state.current), patch,
                           state.config.gates, syntax, tests)
    after = measure(state.sandbox, state.env, state.config, label=f"candidate {patch.id}",
                    compared_with=state.current)
    return judge_patch(opaque(state.current), opaque(after), patch, state.config.gates, syntax,
                       tests)


def _accept(state: MissionState, patch, report: ValidationReport, iteration: int) -> None:
    if state.config.mission.dry_run:
        reset_sandbox(state.sandbox, patch)
        state.outcomes.append(_outcome(patch, "accepted", "dry run: not committed", iteration,
                                       report))
        report_progress("validate", f"accepted {patch.id} (dry run, not committed)")
        return
    record = commit_accepted_patch(state.sandbox, patch, report.summary(), state.backups_dir,
                                   state.started_at)
    state.backups.extend(record.backups)
    state.outcomes.append(_outcome(patch, "accepted", None, iteration, report, record.commit))
    if state.config.learning.audit and state.state_root is not None:
        audit_commit(state.state_root, state.mission_id, str(state.target.root),
                     state.sandbox.branch, state.outcomes[-1])
    if report.after is not None:
        state.current = report.after
    report_progress("commit", f"accepted {patch.id} as {record.commit[:10]}")


def back_up_baseline(state: MissionState) -> MissionState:
    """``--backup-only``: back up every in-scope Python file; change nothing."""
    state.backups.extend(back_up_files(state.sandbox, state.target, state.backups_dir))
    state.stop_reason = "backup only"
    return state


def _max_attempts(fixer: FixerConfig) -> int:
    """The repair-loop bound: the largest ``policy.max_attempts`` of the fixer(s), else 1."""
    fixers = getattr(fixer, "fixers", None) or [fixer]
    return max(int(getattr(getattr(f, "policy", None), "max_attempts", 1)) for f in fixers)


def _outcome(patch, status, reason, iteration, report=None, commit=None) -> PatchOutcome:
    return PatchOutcome(id=patch.id, finding_ids=patch.finding_ids, fixer=patch.fixer,
                        status=status, reason=reason, commit=commit, title=patch.title,
                        confidence=patch.confidence,
                        iteration=iteration, files=patch.files,
                        validation=report.model_copy(update={"after": None}) if report else None)
