"""The approval stage: decide what needs a human, ask, and deliver to the target branch.

Helpers (testable without Prefect): :mod:`mendflow.tasks.approve.policy` (which patch
needs approval), :mod:`mendflow.tasks.approve.request` (the request, the answer, the
decision), :mod:`mendflow.tasks.approve.merge` and :mod:`mendflow.tasks.approve.build` (delivery
with git), :mod:`mendflow.tasks.approve.outcome` (the result after the decision).
This module holds the thin Prefect tasks the mission flow composes
(:func:`mendflow.flows.approval.approve_and_deliver`).

Every task is idempotent, because a suspended deployed run re-runs the flow
from the top after it is resumed: the request and the "waiting" message are
recorded with the flow run (flow run inputs) and not repeated, and delivery
recognizes commits it already delivered by their trailers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from uuid import UUID

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.input import create_flow_run_input, read_flow_run_input
from prefect.states import Running

from mendflow.blocks.notify import notify
from mendflow.core.config import MendflowConfig
from mendflow.core.errors import NotificationFailed
from mendflow.core.models import ApprovalNeed, MissionResult
from mendflow.infra.gitops import retry_on_sandbox_error, run_git
from mendflow.infra.layout import StateLayout
from mendflow.infra.retry import transient_retries
from mendflow.tasks.approve.build import ApprovedCommit, changed_lines
from mendflow.tasks.approve.merge import Delivery, deliver, resolve_target_branch
from mendflow.tasks.approve.outcome import approved_commits, awaiting, deliverable, finalize
from mendflow.tasks.approve.policy import LEVELS, check_autonomy, needs_approval, sensitive_kinds
from mendflow.tasks.approve.request import (
    NOTIFIED_KEY,
    PAUSE_KEY,
    REQUEST_KEY,
    TIMEOUT_APPROVER,
    ApprovalInput,
    ApprovalRequest,
    Decision,
    decide,
    new_request,
    render_request,
    utc_now,
)
from mendflow.tasks.report import artifact_key, write_atomic

__all__ = [
    "LEVELS", "NOTIFIED_KEY", "PAUSE_KEY", "REQUEST_KEY", "TIMEOUT_APPROVER", "ApprovalInput",
    "ApprovalRequest", "ApprovedCommit", "Decision", "Delivery", "approved_commits",
    "assess_patches", "awaiting", "check_autonomy", "choose_target_branch", "decide",
    "deliver", "deliver_approved", "deliverable", "finalize", "mark_running", "needs_approval",
    "new_request",
    "notify_once", "publish_approval_request", "render_request", "sensitive_kinds",
]


@task(name="mark-running", timeout_seconds=60, cache_policy=NO_CACHE, **transient_retries(2, first_delay_s=1))
def mark_running(flow_run_id: str, message: str) -> None:
    """Set a flow run back to Running after its approval pause timed out.

    Prefect leaves a run whose ``pause_flow_run`` timed out in a state where
    its remaining tasks cannot start; the mission still has to finish
    (reject the patches, write the reports).

    Args:
        flow_run_id: the paused flow run.
        message: the state's message (shown in the UI).
    """
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(flow_run_id), Running(message=message), force=True)


@task(name="choose-target-branch", retries=0, timeout_seconds=60, cache_policy=NO_CACHE)
def choose_target_branch(root: Path, configured: str | None, head_branch: str | None) -> str:
    """Prefect task around :func:`mendflow.tasks.approve.merge.resolve_target_branch`."""
    return resolve_target_branch(root, configured, head_branch)


@task(name="assess-patches", timeout_seconds=300,  cache_policy=NO_CACHE,
      **transient_retries(1, condition=retry_on_sandbox_error))
def assess_patches(result: MissionResult, level: str,
                   config: MendflowConfig) -> tuple[ApprovalNeed, ...]:
    """Decide, per accepted and committed patch, whether it needs approval at ``level``.

    Args:
        result: the mission's result (patches, baseline and final findings).
        level: the autonomy level.
        config: the config (``approval.max_changed_lines``, ``gates.test_globs``).

    Returns:
        One :class:`ApprovalNeed` per deliverable patch, in commit order; the
        changed lines come from ``git diff --numstat`` of its commit.
    """
    root = Path(result.repository)
    findings = {f.id: f for f in (*result.findings, *result.final_findings)}
    return tuple(needs_approval(
        check_autonomy(level) or "full_autonomous", patch,
        changed_lines=changed_lines(root, patch.commit or ""), findings=findings,
        test_globs=config.gates.test_globs, max_changed_lines=config.approval.max_changed_lines)
        for patch in deliverable(result))


@task(name="publish-approval-request",
      timeout_seconds=120, cache_policy=NO_CACHE, **transient_retries(2))
def publish_approval_request(result: MissionResult, needs: Sequence[ApprovalNeed],
                             request: ApprovalRequest) -> ApprovalRequest:
    """Publish the request: a markdown artifact, a record with the flow run, a pending report.

    Idempotent: when the flow run already holds a request (a suspended run that
    re-runs after it was resumed) that one is returned, with its deadline.

    Args:
        result: the mission's result.
        needs: why each patch needs approval.
        request: the request to publish (made by :func:`new_request`).

    Returns:
        The stored request. Creates the markdown artifact
        ``mendflow-approval-<mission-id>`` (each patch's diff from ``git show``,
        findings, validation summary, score) and the flow run input
        :data:`REQUEST_KEY`, and writes ``session_data.json`` with status
        ``awaiting_approval`` and the waiting patches ``pending_approval``.
    """
    run_id = result.flow_run_id
    stored = read_flow_run_input(REQUEST_KEY, flow_run_id=UUID(run_id)) if run_id else None
    if stored:
        return ApprovalRequest.model_validate(stored)
    root = Path(result.repository)
    commits = {p.id: p.commit for p in result.patches if p.commit}
    diffs = {pid: run_git(root, "show", "--stat", "--patch", "--format=fuller", commits[pid])
             for pid in request.patch_ids if pid in commits}
    findings = {f.id: f for f in (*result.findings, *result.final_findings)}
    markdown = render_request(result, request, {n.patch_id: n for n in needs}, diffs, findings)
    create_markdown_artifact(
        key=artifact_key(f"mendflow-approval-{result.mission_id}"), markdown=markdown,
        description=f"{len(request.patch_ids)} patch(es) of mission {result.mission_id} wait "
                    f"for approval")
    if run_id:
        create_flow_run_input(REQUEST_KEY, request.model_dump(mode="json"),
                              flow_run_id=UUID(run_id))
    report = Path(result.report_dir)
    report.mkdir(parents=True, exist_ok=True)
    write_atomic(report / "session_data.json",
                 json.dumps(awaiting(result, request).model_dump(mode="json"), indent=2) + "\n")
    return request


def _retry_notification(task, task_run, state) -> bool:
    data = state.data if isinstance(state.data, BaseException) else \
        state.result(raise_on_failure=False)
    return isinstance(data, NotificationFailed)


@task(name="notify", timeout_seconds=60,  cache_policy=NO_CACHE,
      **transient_retries(2, first_delay_s=5, condition=_retry_notification))
def notify_once(block_name: str, subject: str, body: str, flow_run_id: str | None = None,
                once_key: str | None = None) -> bool:
    """Send a message through a Prefect notification block (see :func:`mendflow.blocks.notify.notify`).

    Args:
        block_name: the saved block's name.
        subject: the title.
        body: the message (with the flow run's UI link).
        flow_run_id: the flow run the ``once_key`` marker is stored with.
        once_key: when set, a flow run input marks the message as sent and a
            second call (a re-run) sends nothing.

    Returns:
        True if a message was sent, False if it had been sent before.

    Raises:
        ConfigError: the block is missing or cannot notify.
        NotificationFailed: delivery failed (retried twice).
    """
    if once_key and flow_run_id and read_flow_run_input(once_key,
                                                         flow_run_id=UUID(flow_run_id)):
        return False
    notify(block_name, subject, body)
    if once_key and flow_run_id:
        create_flow_run_input(once_key, utc_now(), flow_run_id=UUID(flow_run_id))
    return True


@task(name="deliver-approved", timeout_seconds=900,  cache_policy=NO_CACHE,
      **transient_retries(1, first_delay_s=5, condition=retry_on_sandbox_error))
def deliver_approved(result: MissionResult, commits: Sequence[ApprovedCommit], target_branch: str,
                     approver: str, comment: str, config: MendflowConfig) -> Delivery:
    """Prefect task around :func:`mendflow.tasks.approve.merge.deliver` (idempotent).

    Args:
        result: the mission's result (repository, mission id, base commit).
        commits: the approved patches' mission commits, in order.
        target_branch: the branch that receives them.
        approver: the ``Approved-by`` value.
        comment: the ``Approval-comment`` value.
        config: the config (``approval.push_remote``, ``mission.state_dir``: the state
            directory resolved by :func:`mendflow.tasks.bookkeeping.load_mission_config`).

    Returns:
        The :class:`Delivery`.

    Raises:
        DeliveryError: conflict, dirty checkout, target moved ...; nothing was changed.
    """
    work = StateLayout.of(config.mission.state_dir).delivery
    return deliver(Path(result.repository), result.mission_id, result.base_commit, commits,
                   target_branch, approver=approver, comment=comment, work_parent=work,
                   push_remote=config.approval.push_remote)
