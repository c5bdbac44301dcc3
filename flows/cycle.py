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
    Patch,
    Patched,
    PatchOutcome,
    Proposal,
    RepoTarget,
    Sandbox,
    SuiteState,
    TargetEnv,
    TestPlan,
    ValidationReport,
    ValidationTiming,
)
from mendflow.flows.batch import (
    Pending,
    confirm_batch,
    file_hashes,
    restore,
    selection_enabled,
    validate_selected,
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
from mendflow.tasks.detect.parallel import default_workers
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
    validation_timings: list[ValidationTiming] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    batch_base: Measurement | None = None
    baseline_s: float = 0.0
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
        Only the categories of ``mission.fix_categories`` are given to the fixer
        (None = all): the others are measured and never attempted.
        """
        gates, wanted = self.config.gates, self.config.mission.fix_categories
        return [f for f in self.scoped(findings)
                if (wanted is None or f.category in wanted)
                and (gates.allow_test_changes or f.category == "test-failure"
                     or not any(glob_match(f.path, g) for g in gates.test_globs))]

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
    impact = config.validation.select_tests and tools.coverage.enabled
    workers = config.validation.test_workers or default_workers()
    futures = [
        run_pytest.submit(sandbox, env, tools, tree, _test_plan(compared_with, tools), impact,
                          workers),
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
    """Repeat the M-T-D-V cycle until the target score, max iterations or no progress.

    Failing tests are attempted even above the target score (a failing test is
    a defect, not a point of score). Each cycle attempts at most
    ``mission.max_patches_per_iteration`` candidates; a group whose findings an
    earlier patch already fixed (or claimed) is skipped and spends no slot.
    """
    mission = state.config.mission
    state.batch_base = state.current
    for iteration in range(1, mission.max_iterations + 1):
        if _must_stop(state):
            break
        queue = rank_queue(state.config, opaque(state.fixable(state.current.findings)),
                           opaque(state.priors))
        reached = state.current.score >= mission.target_score
        if reached:  # a failing test is a defect whatever the score: it is still attempted
            queue = [f for f in queue if f.category == "test-failure"]
        groups = [g for g in plan_fixes(planning_fixer(state.config), opaque(queue))
                  if frozenset(f.id for f in g) not in state.tried] if queue else []
        if reached and not groups:
            state.stop_reason = f"target score {mission.target_score} reached"
            break
        state.iterations = iteration
        if not groups:
            state.stop_reason = "no fixable findings left"
            break
        accepted = attempted = 0
        for group in groups:
            if attempted >= mission.max_patches_per_iteration:
                break
            live = _live(state, group)
            if not live:  # an earlier patch of this iteration fixed the group: no slot spent
                continue
            if state.fixer_disabled or _must_stop(state):
                break
            state.tried.add(frozenset(f.id for f in group))
            attempted += 1
            accepted += fix_group(state, live, iteration)
        if state.pending:  # the iteration's last batch: one full run confirms it
            confirm_batch(state, _commit_batch)
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


def _live(state: MissionState, group: tuple[Finding, ...]) -> tuple[Finding, ...]:
    """The findings of a group still present in the current tree and claimed by no
    accepted patch (the cap of a cycle counts candidates really attempted)."""
    present = {f.id for f in state.current.findings}
    claimed = {i for o in state.outcomes if o.status == "accepted" for i in o.finding_ids}
    claimed.update(i for item in state.pending for i in item.patch.finding_ids)
    return tuple(f for f in group if f.id in present and f.id not in claimed)


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
        before = file_hashes(state.sandbox.path, patch.files)
        try:
            apply_patch(state.sandbox, patch)
        except PatchRejected as err:
            _reject(state, patch, err.reason, iteration)
            log.note(proposal, "rejected", gate=err.reason, reason=str(err))
            feedback = str(err)
            continue
        if selection_enabled(state):
            verdict = _validate_batched(state, patch, before, iteration)
            if verdict is None:
                log.note(proposal, "accepted")  # passed its selected tests; its batch confirms it
                return 1
            log.note(proposal, "rejected", reason=verdict[:500])
            feedback = verdict
            continue
        started = time.monotonic()
        try:
            report = _validate(state, patch)
            state.validation_timings.append(_timing(state, report, time.monotonic() - started))
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


def _validate_batched(state: MissionState, patch: Patch, before: dict[str, str | None],
                      iteration: int) -> str | None:
    """Validate an applied candidate by selected tests (else a full run with its batch).

    Returns:
        None when the candidate was kept (pending its batch's full run, or
        committed), else the feedback for the fixer's next attempt.
    """
    item = None
    try:
        syntax = check_patch_syntax(state.sandbox, patch)
        tests = _test_files_gate(state, patch)
        gates_ok = syntax.passed and tests.passed  # no test run for a refused patch
        quick = validate_selected(state, patch, before, syntax) if gates_ok else None
        if gates_ok and quick is None:  # no usable impact data: a full run, with its batch
            placeholder = ValidationReport(patch_id=patch.id, accepted=True, gates=(syntax,))
            state.pending.append(Pending(patch, placeholder, iteration))
            confirm_batch(state, _commit_batch)
            accepted = any(o.id == patch.id and o.status == "accepted" for o in state.outcomes)
            refused = next((v for v in reversed(state.validations) if v.patch_id == patch.id), None)
            return None if accepted else format_feedback(refused) if refused else "rejected"
        if quick is None:
            report = judge_patch(opaque(state.current), opaque(state.current), patch,
                                 state.config.gates, syntax, tests)
        else:
            report, timing = quick
            state.validation_timings.append(timing)
        item = Pending(patch, report, iteration)
    except BaseException:
        # never leave a half-validated tree behind: the pending candidates go too (a
        # resumed mission replays them from the cache)
        restore(state, [*state.pending, Pending(patch, None, iteration)], [])  # type: ignore[arg-type]
        state.pending = []
        raise
    state.validations.append(report)
    if not report.accepted:
        restore(state, [*state.pending, item], state.pending)
        _reject(state, patch, report.reason, iteration, report)
        return format_feedback(report)
    state.pending.append(item)
    if report.after is not None:
        state.current = report.after
    report_progress("validate", f"{patch.id} passed its selected tests; "
                    f"{len(state.pending)} candidate(s) await a full run")
    if len(state.pending) >= state.config.validation.batch_size:
        confirm_batch(state, _commit_batch)
    return None


def _commit_batch(state: MissionState, items: list[Pending], after: Measurement) -> None:
    """Commit the candidates a full run confirmed, one commit each, in order."""
    restore(state, items, [])
    for item in items:
        if state.config.mission.dry_run:
            state.outcomes.append(_outcome(item.patch, "accepted", "dry run: not committed",
                                           item.iteration, item.report))
            continue
        apply_patch(state.sandbox, item.patch)
        record = commit_accepted_patch(state.sandbox, item.patch, item.report.summary(),
                                       state.backups_dir, state.started_at)
        state.backups.extend(record.backups)
        state.outcomes.append(_outcome(item.patch, "accepted", None, item.iteration,
                                       item.report, record.commit))
        report_progress("commit", f"accepted {item.patch.id} as {record.commit[:10]}")
    if not state.config.mission.dry_run:
        state.current = state.batch_base = after
    else:
        state.current = state.batch_base


def _timing(state: MissionState, report: ValidationReport, duration_s: float) -> ValidationTiming:
    """The wall time and test count of one validation (``timings.validations``)."""
    baseline = state.baseline.test_run
    after = report.after.test_run if report.after is not None else None
    ran = sum(c.outcome in ("passed", "failed", "error") for c in after.cases) if after else 0
    return ValidationTiming(patch_id=report.patch_id, duration_s=round(duration_s, 3),
                            tests_run=ran, tests_total=baseline.collected if baseline else 0,
                            full_run=report.after is not None)


def suite_state(measurement: Measurement) -> SuiteState | None:
    """Tests passed of those run, and coverage, of one measurement (None: no test run)."""
    run = measurement.test_run
    if run is None:
        return None
    ran = [c for c in run.cases if c.outcome in ("passed", "failed", "error")]
    return SuiteState(passed=sum(c.outcome == "passed" for c in ran), total=len(ran),
                      coverage_percent=run.coverage_percent)


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


def _test_files_gate(state: MissionState, patch):
    """The ``test-files`` gate: the patch leaves the tests and their configuration alone."""
    pytest_result = state.baseline.result_of("pytest")
    return check_test_files(state.sandbox, patch,
                            opaque(pytest_result.test_run if pytest_result else None),
                            state.config.gates)


def _validate(state: MissionState, patch) -> ValidationReport:
    syntax = check_patch_syntax(state.sandbox, patch)
    tests = _test_files_gate(state, patch)
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
