"""Approval and delivery: the last step of a mission.

With an autonomy level (the ``autonomy`` flow parameter, else ``approval.autonomy``)
the mission's accepted patches go to the target branch::

    choose_target_branch → assess_patches (policy per patch)
    → if some need a human: publish_approval_request → notify "waiting"
         → pause (ad-hoc run: the process waits) or suspend (deployed run: the
           process exits; resuming re-runs the flow, which re-enters here)
         → decide (approve all / some / none; a timeout follows on_timeout)
    → deliver_approved (fast-forward or merge; a conflict changes nothing)
    → notify "finished"

Without an autonomy level the mission only prepares its branch (the default).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from prefect import get_run_logger, runtime
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run

from mendflow.blocks.notify import flow_run_url
from mendflow.core.config import ApprovalConfig, MendflowConfig
from mendflow.core.errors import DeliveryError
from mendflow.core.models import ApprovalNeed, MissionResult, RepoTarget, Sandbox
from mendflow.infra.progress import report_progress
from mendflow.tasks.approve import (
    PAUSE_KEY,
    ApprovalInput,
    ApprovalRequest,
    Decision,
    approved_commits,
    assess_patches,
    check_autonomy,
    choose_target_branch,
    decide,
    deliver_approved,
    deliverable,
    finalize,
    mark_running,
    new_request,
    notify_once,
    publish_approval_request,
)
from mendflow.tasks.approve.request import NOTIFIED_KEY

SUSPEND_GRACE_S = 300.0
"""A suspended run fails on the server this long after its deadline if nobody resumed it."""


def approve_and_deliver(result: MissionResult, config: MendflowConfig, target: RepoTarget,
                        sandbox: Sandbox, autonomy: str | None = None) -> MissionResult:
    """Ask for approval as the autonomy level demands, then deliver to the target branch.

    Args:
        result: the mission's result so far (accepted patches are committed on its branch).
        config: the mission's config (the ``approval`` section).
        target: the repository (its ``head_branch`` is the default target branch).
        sandbox: the mission's sandbox (unused: the result's base commit is the
            delivery base; kept for the flow's call).
        autonomy: overrides ``approval.autonomy``; None = use the config.

    Returns:
        The result, with patch statuses, ``approval`` and ``status`` updated
        (unchanged when no autonomy level is set).

    Raises:
        ConfigError: unknown autonomy level.
    """
    level = check_autonomy(autonomy or config.approval.autonomy)
    if level is None:
        _notify_end(result, config)
        return result
    logger = get_run_logger()
    try:
        branch = choose_target_branch(target.root, config.approval.target_branch,
                                      target.head_branch)
    except DeliveryError as err:
        logger.warning("nothing delivered: %s", err)
        final = finalize(result, autonomy=level, target_branch=None, needs=(), decision=None,
                         delivery=None, error=err)
        _notify_end(final, config)
        return final
    needs, decision, request = approve_patches(result, config, level, branch)
    final = _deliver(result, config, level, branch, needs, decision, request)
    _notify_end(final, config)
    return final


def approve_patches(result: MissionResult, config: MendflowConfig, level: str, branch: str,
                    ) -> tuple[tuple[ApprovalNeed, ...], Decision | None, ApprovalRequest | None]:
    """Assess the deliverable patches at ``level`` and, if some need a human, ask and wait.

    Shared by the mission's local delivery and the evolution cycle's pull requests
    (the paused-run approval comes before any PR).

    Args:
        result: the mission's result.
        config: the config (``approval`` section).
        level: the autonomy level.
        branch: the target branch named in the request.

    Returns:
        ``(needs, decision, request)``: the per-patch assessment (a need with no
        reasons is approved by policy), the human's decision (None when nobody was
        asked) and the published request (None likewise).
    """
    logger = get_run_logger()
    needs = assess_patches(result, level, config) if deliverable(result) else ()
    request: ApprovalRequest | None = None
    decision: Decision | None = None
    if any(n.reasons for n in needs):
        request = _ask(result, needs, branch, level, config.approval)
        decision = decide(request.patch_ids, _wait(request, config.approval),
                          config.approval.on_timeout)
        unasked = tuple(n.patch_id for n in needs if n.reasons
                        and n.patch_id not in request.patch_ids)
        if unasked:  # a resumed run that did not reproduce what was shown for approval
            logger.warning("patches %s were not in the approval request: not delivered",
                           list(unasked))
            decision = decision.model_copy(update={"unasked_ids": unasked})
        logger.info("approval of mission %s: %s by %s (%d approved, %d rejected)",
                    result.mission_id, decision.decision, decision.approver,
                    len(decision.approved_ids), len(decision.rejected_ids))
    return needs, decision, request


def approved_ids(needs: tuple[ApprovalNeed, ...], decision: Decision | None) -> list[str]:
    """The patches approved by policy (no reasons) or by the human's decision."""
    approved = [n.patch_id for n in needs if not n.reasons]
    return approved + (list(decision.approved_ids) if decision else [])


def _ask(result: MissionResult, needs: tuple[ApprovalNeed, ...], branch: str, level: str,
         approval: ApprovalConfig) -> ApprovalRequest:
    """Publish the request and send the "waiting for approval" message (once)."""
    link = flow_run_url(result.flow_run_id, approval.ui_url)
    request = publish_approval_request(result, needs, new_request(
        result, needs, target_branch=branch, autonomy=level, timeout_s=approval.timeout_s,
        on_timeout=approval.on_timeout, ui_url=link))
    if approval.notify_block:
        waiting = "\n".join(f"- {p}" for p in request.patch_ids)
        body = (f"{len(request.patch_ids)} patch(es) of mission {result.mission_id} on "
                f"{result.repository} wait for approval before reaching {branch}:\n{waiting}\n"
                f"Review and answer: {link or 'mendflow approvals'}\n"
                f"Deadline: {request.deadline} (then: {request.on_timeout})")
        _send(approval.notify_block, f"mendflow: approval needed for mission "
              f"{result.mission_id}", body, result.flow_run_id, NOTIFIED_KEY)
    return request


def _wait(request: ApprovalRequest, approval: ApprovalConfig) -> ApprovalInput | None:
    """Wait for the answer: pause an ad-hoc run, suspend a deployed one.

    Returns:
        The :class:`ApprovalInput`, or None when an ad-hoc run's pause timed out.
        A deployed run's timeout arrives as an answer from the timeout sweeper
        (:func:`mendflow.cli.approvals.expire_overdue`), which :func:`decide` treats
        as a timeout.
    """
    form = ApprovalInput.with_initial_data(description=_form_description(request))
    run = request.flow_run_id or "RUN_ID"
    report_progress("approve", f"{len(request.patch_ids)} patch(es) wait for approval until "
                    f"{request.deadline}: `mendflow approve {run}` (or --only PATCH_ID), "
                    f"`mendflow reject {run} --comment ...`"
                    + (f", or Resume at {request.ui_url}" if request.ui_url else ""))
    remaining = (datetime.fromisoformat(request.deadline)
                 - datetime.now(timezone.utc)).total_seconds()
    if runtime.deployment.id:
        return suspend_flow_run(wait_for_input=form, key=PAUSE_KEY,
                                timeout=int(max(remaining, 1) + SUSPEND_GRACE_S))
    try:
        return pause_flow_run(wait_for_input=form, key=PAUSE_KEY,
                              timeout=max(1, math.ceil(remaining)),
                              poll_interval=max(1, math.ceil(approval.poll_interval_s)))
    except FlowPauseTimeout:
        # .fn: a plain call, since no task run can start before the flow run is Running again
        mark_running.fn(str(runtime.flow_run.id), "approval timed out")
        return None


def _form_description(request: ApprovalRequest) -> str:
    patches = "\n".join(f"- `{p}`" for p in request.patch_ids)
    return (f"**mendflow mission {request.mission_id}**: {len(request.patch_ids)} patch(es) "
            f"wait for approval before reaching `{request.target_branch}`:\n\n{patches}\n\n"
            "Set *approved* to deliver them (list *patch_ids* to approve only some), or leave "
            "it off to reject them all. The diffs are in the "
            f"`mendflow-approval-{request.mission_id}` artifact. Deadline: {request.deadline} "
            f"(then: {request.on_timeout}).")


def _deliver(result: MissionResult, config: MendflowConfig, level: str, branch: str,
             needs: tuple[ApprovalNeed, ...], decision: Decision | None,
             request: ApprovalRequest | None) -> MissionResult:
    commits = approved_commits(result, approved_ids(needs, decision))
    approver = decision.approver if decision and decision.approved_ids else f"mendflow ({level})"
    delivery = error = None
    if commits:
        try:
            delivery = deliver_approved(result, commits, branch, approver or "anonymous",
                                        decision.comment if decision else "", config)
        except DeliveryError as err:
            get_run_logger().warning("approved patches not delivered: %s", err)
            error = err
    return finalize(result, autonomy=level, target_branch=branch, needs=needs,
                    decision=decision, delivery=delivery, error=error, request=request)


def _notify_end(result: MissionResult, config: MendflowConfig) -> None:
    if not config.approval.notify_block:
        return
    record = result.approval
    delivered = len(record.delivered_commits) if record else 0
    lines = [f"Mission {result.mission_id} on {result.repository}: {result.status} "
             f"(exit code {result.exit_code}), score {result.quality_score.before:.1f} → "
             f"{result.quality_score.after:.1f}."]
    if record:
        lines.append(f"Approval: {record.decision}"
                     + (f" by {record.approver}" if record.approver else "")
                     + f"; {delivered} commit(s) delivered to {record.target_branch} "
                       f"({record.delivery})" + (f"; {record.error}" if record.error else ""))
    link = flow_run_url(result.flow_run_id, config.approval.ui_url)
    lines.append(f"Report: {result.report_dir}" + (f"\nFlow run: {link}" if link else ""))
    _send(config.approval.notify_block, f"mendflow: mission {result.mission_id} finished",
          "\n".join(lines), result.flow_run_id, None)


def _send(block: str, subject: str, body: str, run_id: str | None, once: str | None) -> None:
    """Send a message; a failed notification is logged, it never fails the mission."""
    state = notify_once(block, subject, body, run_id, once, return_state=True)
    if state.is_failed():
        get_run_logger().warning("notification through %s failed: %s", block, state.message)
