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

from mendflow.core.config import FixerConfig
from mendflow.core.errors import PatchRejected
from mendflow.core.models import Finding, OutputRejected, Patched
from mendflow.core.outcomes import suite_state
from mendflow.flows.batch import confirm_batch, validate_candidate
from mendflow.flows.cycle_learning import GroupAttempts, no_patch_result
from mendflow.flows.measure import measure
from mendflow.flows.proposals import ask_fixer, max_attempts, reject_output
from mendflow.flows.selection import file_hashes
from mendflow.flows.state import MissionState
from mendflow.flows.verdict import refuse
from mendflow.infra.progress import report_progress
from mendflow.tasks.bookkeeping import back_up_files
from mendflow.tasks.fix import plan_fixes
from mendflow.tasks.learn.strategy import planning_fixer, rank_queue
from mendflow.tasks.preflight import check_free_disk, disk_paths
from mendflow.tasks.sandbox import apply_patch

__all__ = ["MissionState", "back_up_baseline", "fix_group", "measure", "run_iterations",
           "suite_state"]


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
            confirm_batch(state)
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
    """The repair loop of one group: 1 once a candidate is kept, else 0 after the last attempt."""
    feedback: str | None = None
    for attempt in range(1, max_attempts(fixer) + 1):
        log.begin()
        proposal = ask_fixer(state, fixer, group, feedback, attempt)
        if isinstance(proposal, OutputRejected):  # the fixer's output failed a guard
            reject_output(state, proposal, iteration)
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
            refuse(state, patch, err.reason, iteration)
            log.note(proposal, "rejected", gate=err.reason, reason=str(err))
            feedback = str(err)
            continue
        feedback = validate_candidate(state, patch, before, iteration, log.hold(proposal))
        if feedback is None:  # kept: committed, or pending its batch's full run
            return 1
    return 0


def back_up_baseline(state: MissionState) -> MissionState:
    """``--backup-only``: back up every in-scope Python file; change nothing."""
    state.backups.extend(back_up_files(state.sandbox, state.target, state.backups_dir))
    state.stop_reason = "backup only"
    return state
