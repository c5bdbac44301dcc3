"""The composed steps of a mission's M-T-D-V cycle, shared by the mission flows.

Nothing here runs a tool, git or HTTP itself: each step is a task call, and
this module only sequences them and branches on their typed results. The
steps live beside it: :mod:`~mendflow.flows.measure` (every detector on the
sandbox's tree), :mod:`~mendflow.flows.proposals` (asking the fixer),
:mod:`~mendflow.flows.batch` and :mod:`~mendflow.flows.selection` (validation),
:mod:`~mendflow.flows.verdict` (commit or refusal) and
:mod:`~mendflow.flows.cycle_learning` (strategy choice and learning notes).
"""

from __future__ import annotations

import time

from prefect.utilities.annotations import opaque

from mendflow.core.checkpoint import LoopPosition
from mendflow.core.config import FixerConfig
from mendflow.core.errors import PatchRejected
from mendflow.core.models import Finding, OutputRejected, Patched
from mendflow.core.outcomes import suite_summary
from mendflow.flows.batch import confirm_batch, validate_candidate
from mendflow.flows.checkpoint import TRANSIENT_STOPS, checkpoint_ledger
from mendflow.flows.cycle_learning import GroupAttempts, no_patch_result
from mendflow.flows.ledger import MissionLedger
from mendflow.flows.measure import measure
from mendflow.flows.proposals import ask_fixer, max_attempts, reject_output
from mendflow.flows.selection import file_hashes
from mendflow.flows.verdict import refuse
from mendflow.infra.progress import report_progress
from mendflow.tasks.bookkeeping import back_up_files
from mendflow.tasks.fix import plan_fixes
from mendflow.tasks.learn.strategy import planning_fixer, rank_queue
from mendflow.tasks.preflight import check_free_disk, disk_paths
from mendflow.tasks.sandbox import apply_patch

__all__ = ["MissionLedger", "back_up_baseline", "fix_group", "measure", "run_iterations",
           "suite_summary"]


def run_iterations(ledger: MissionLedger, resume: LoopPosition | None = None) -> MissionLedger:
    """Repeat the M-T-D-V cycle until the target score, max iterations or no progress.

    Failing tests are attempted even above the target score (a failing test is
    a defect, not a point of score). Each cycle attempts at most
    ``mission.max_patches_per_iteration`` candidates; a group whose findings an
    earlier patch already fixed (or claimed) is skipped and spends no slot.
    The ledger is checkpointed at every settled point (:mod:`mendflow.flows.checkpoint`).

    Args:
        ledger: the mission's ledger, on its baseline (or restored from a checkpoint).
        resume: where a restored ledger's cycle stood; None = start at iteration 1.
    """
    mission = ledger.config.mission
    if resume is not None and resume.finished:
        ledger.stop_reason = resume.finished
        return ledger
    if resume is None:
        ledger.batch_base = ledger.current
    where = resume or LoopPosition(iteration=1)
    for iteration in range(where.iteration, mission.max_iterations + 1):
        if where.groups is None:
            groups = _plan(ledger, iteration)
            if groups is None:  # stopped: the reason is set
                break
            where = LoopPosition(iteration=iteration, groups=groups)
        where = _attempt_groups(ledger, where)
        if ledger.pending:  # the iteration's last batch: one full run confirms it
            confirm_batch(ledger)
        if ledger.fixer_disabled:
            ledger.stop_reason = ledger.fixer_disabled
            break
        if ledger.stop_reason:
            break
        if where.accepted == 0:
            ledger.stop_reason = "no candidate was accepted in the last iteration"
            break
        where = LoopPosition(iteration=iteration + 1)
        checkpoint_ledger(ledger, where)
    else:
        ledger.stop_reason = f"max iterations ({mission.max_iterations}) reached"
    if not ledger.stop_reason:
        ledger.stop_reason = "finished"
    # a transient stop (low disk, the wall-time budget) resumes where it stood
    final = where if ledger.stop_reason.startswith(TRANSIENT_STOPS) else \
        LoopPosition(iteration=where.iteration, finished=ledger.stop_reason)
    checkpoint_ledger(ledger, final)
    return ledger


def _plan(ledger: MissionLedger, iteration: int) -> tuple[tuple[Finding, ...], ...] | None:
    """The groups iteration ``iteration`` attempts, or None when the cycle stops (the
    ledger's ``stop_reason`` then says why)."""
    mission = ledger.config.mission
    if _must_stop(ledger):
        return None
    queue = rank_queue(ledger.config, opaque(ledger.fixable(ledger.current.findings)),
                       opaque(ledger.priors))
    reached = ledger.current.score >= mission.target_score
    if reached:  # a failing test is a defect whatever the score: it is still attempted
        queue = [f for f in queue if f.category == "test-failure"]
    groups = [tuple(g) for g in plan_fixes(planning_fixer(ledger.config), opaque(queue))
              if frozenset(f.id for f in g) not in ledger.tried] if queue else []
    if reached and not groups:
        ledger.stop_reason = f"target score {mission.target_score} reached"
        left = len(queue)  # failing tests, every group of them already attempted
        if left:
            ledger.stop_reason += f"; {left} failing test(s) left, attempted and not fixed"
        return None
    ledger.iterations = iteration
    if not groups:
        ledger.stop_reason = "no fixable findings left"
        return None
    return tuple(groups)


def _attempt_groups(ledger: MissionLedger, where: LoopPosition) -> LoopPosition:
    """Attempt the planned groups from ``where.next_group`` on; return the position reached.

    Stops at the iteration's cap, when the fixer is disabled, or on a transient stop
    (:func:`_must_stop`); the returned ``next_group`` is then the group not attempted.
    After each group that leaves nothing pending, the ledger is checkpointed.
    """
    cap = ledger.config.mission.max_patches_per_iteration
    groups = where.groups or ()
    index, attempted, accepted = where.next_group, where.attempted, where.accepted
    while index < len(groups) and attempted < cap:
        group = groups[index]
        live = _live(ledger, group)
        if live:  # else an earlier patch of this iteration fixed the group: no slot spent
            if ledger.fixer_disabled or _must_stop(ledger):
                break
            ledger.tried.add(frozenset(f.id for f in group))
            attempted += 1
            accepted += fix_group(ledger, live, where.iteration)
        index += 1
        if live:
            checkpoint_ledger(ledger, where.model_copy(update={
                "next_group": index, "attempted": attempted, "accepted": accepted}))
    return where.model_copy(update={"next_group": index, "attempted": attempted,
                                    "accepted": accepted})


def _live(ledger: MissionLedger, group: tuple[Finding, ...]) -> tuple[Finding, ...]:
    """The findings of a group still present in the current tree and claimed by no
    accepted patch (the cap of a cycle counts candidates really attempted)."""
    present = {f.id for f in ledger.current.findings}
    claimed = {i for o in ledger.outcomes if o.status == "accepted" for i in o.finding_ids}
    claimed.update(i for item in ledger.pending for i in item.patch.finding_ids)
    return tuple(f for f in group if f.id in present and f.id not in claimed)


def _must_stop(ledger: MissionLedger) -> bool:
    """Checkpoint between steps: stop cleanly (resumable) on low disk or the wall-time budget."""
    config = ledger.config
    low = check_free_disk(disk_paths(ledger.target.root, config.mission.state_dir), config.health)
    if low is not None:
        ledger.paused = f"paused: low disk space ({low.found}); free space, then " \
                       f"`mendflow mission resume {ledger.mission_id}`"
        ledger.stop_reason = ledger.paused
        report_progress("health", ledger.paused)
        return True
    budget = config.mission.max_wall_time_s
    if budget is not None and time.monotonic() - ledger.started >= budget:
        ledger.stop_reason = (f"wall-time budget of {budget:g} s reached; "
                             f"`mendflow mission resume {ledger.mission_id}` continues")
        report_progress("health", ledger.stop_reason)
        return True
    return False


def fix_group(ledger: MissionLedger, group: tuple[Finding, ...], iteration: int) -> int:
    """Choose a strategy, then propose, apply, validate and commit (or roll back); 1 if accepted.

    A rejected candidate's gate output (or the guard that refused the fixer's
    output) is fed back to the fixer for another attempt, at most
    ``max_attempts`` times (1 for a deterministic fixer). Every attempt is noted
    and written to the outcome store when the group is done.
    """
    log = GroupAttempts(ledger, group, iteration)
    fixer = log.choose()
    if fixer is None:
        return 0  # skipped as hopeless (the plan line says why)
    try:
        return _attempt_group(ledger, group, iteration, fixer, log)
    finally:
        log.flush()


def _attempt_group(ledger: MissionLedger, group: tuple[Finding, ...], iteration: int,
                   fixer: FixerConfig, log: GroupAttempts) -> int:
    """The repair loop of one group: 1 once a candidate is kept, else 0 after the last attempt."""
    feedback: str | None = None
    for attempt in range(1, max_attempts(fixer) + 1):
        log.begin()
        proposal = ask_fixer(ledger, fixer, group, feedback, attempt)
        if isinstance(proposal, OutputRejected):  # the fixer's output failed a guard
            reject_output(ledger, proposal, iteration)
            log.note(proposal, "rejected", gate=proposal.guard, reason=proposal.message)
            feedback = proposal.message
            continue
        if not isinstance(proposal, Patched):  # declined or failed
            log.note(proposal, no_patch_result(proposal), reason=getattr(
                proposal, "reason", None) or getattr(proposal, "error", None))
            return 0
        if proposal.patch.id in ledger.rejected_patches:  # the very diff already refused
            log.note(proposal, "rejected", gate="repeated-diff")
            return 0
        patch = proposal.patch
        report_progress("validate", f"candidate {patch.id}: {patch.title}")
        before = file_hashes(ledger.sandbox.path, patch.files)
        try:
            apply_patch(ledger.sandbox, patch)
        except PatchRejected as err:
            refuse(ledger, patch, err.reason, iteration)
            log.note(proposal, "rejected", gate=err.reason, reason=str(err))
            feedback = str(err)
            continue
        feedback = validate_candidate(ledger, patch, before, iteration, log.hold(proposal))
        if feedback is None:  # kept: committed, or pending its batch's full run
            return 1
    return 0


def back_up_baseline(ledger: MissionLedger) -> MissionLedger:
    """``--backup-only``: back up every in-scope Python file; change nothing."""
    ledger.backups.extend(back_up_files(ledger.sandbox, ledger.target, ledger.backups_dir))
    ledger.stop_reason = "backup only"
    return ledger
