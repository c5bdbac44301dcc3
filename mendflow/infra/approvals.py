"""Answering approvals through the Prefect API: list waiting runs, approve, reject, expire.

Prefect has no CLI command to resume a paused run with input, so mendflow has
its own, on top of the Prefect client (the same API the UI's Resume dialog uses)::

    mendflow approvals                                # what waits
    mendflow approve RUN_ID [--only PATCH_ID ...] [--comment TEXT] [--approver NAME]
    mendflow reject RUN_ID --comment TEXT [--approver NAME]

:func:`register` adds these commands to a typer app (``mendflow.cli`` calls it).
:func:`expire_overdue` resumes suspended runs whose request is past its
deadline, as a timeout (the served deployment runs it periodically).
"""

from __future__ import annotations

import getpass
import os
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ValidationError

from mendflow.core.approval import REQUEST_KEY, TIMEOUT_APPROVER, ApprovalInput, ApprovalRequest
from mendflow.core.errors import ApprovalError

FLOW_NAME = "maintenance-mission"
FLOW_NAMES = (FLOW_NAME, "evolution-cycle")
"""The flows whose runs wait for approval: a mission, and an evolution cycle (whose
paused-run approval comes before its pull requests)."""


class WaitingRun(BaseModel):
    """A mission flow run paused or suspended until a human answers."""

    run_id: str
    run_name: str
    state: str
    mission_id: str | None
    repository: str | None
    patches_waiting: int | None
    deadline: str | None
    age_s: float
    ui_url: str | None = None


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _request_of(run_id: UUID) -> dict[str, Any] | None:
    from prefect.input import read_flow_run_input


    value = read_flow_run_input(REQUEST_KEY, flow_run_id=run_id)
    return value if isinstance(value, dict) else None


def list_waiting() -> list[WaitingRun]:
    """List the mission and evolution-cycle flow runs that wait for approval (Paused or Suspended).

    Returns:
        One :class:`WaitingRun` per run, oldest first: the mission id (from the
        run's parameters or its approval request), the repository, how many
        patches wait (from the request stored with the run), the deadline and
        the age of the wait in seconds.
    """
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    with _client() as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOW_NAMES))),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.PAUSED]))),
            sort=FlowRunSort.START_TIME_ASC, limit=200, offset=0)
    now = datetime.now(timezone.utc)
    waiting = []
    for run in runs:
        request = _request_of(run.id) or {}
        since = run.state.timestamp if run.state else now
        waiting.append(WaitingRun(
            run_id=str(run.id), run_name=run.name, state=run.state.name if run.state else "?",
            mission_id=request.get("mission_id") or run.parameters.get("mission_id"),
            repository=request.get("repository") or run.parameters.get("path"),
            patches_waiting=len(request["patch_ids"]) if "patch_ids" in request else None,
            deadline=request.get("deadline"), ui_url=request.get("ui_url"),
            age_s=max(0.0, (now - since).total_seconds())))
    return sorted(waiting, key=lambda w: -w.age_s)


def resume(run_id: str, run_input: dict[str, Any]) -> None:
    """Resume a waiting mission run with ``run_input`` (``POST /flow_runs/{id}/resume``).

    Args:
        run_id: the flow run id.
        run_input: the answer, an :class:`~mendflow.tasks.approve.request.ApprovalInput` as a dict.

    Raises:
        ApprovalError: the id is not a flow run id or names no run; the run is
            not paused (``run X is COMPLETED, not waiting for approval``);
            ``--only`` names a patch that is not waiting; or the API refused the
            input (its answer was REJECT: the run stays paused).
    """
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.exceptions import ObjectNotFound

    try:
        uuid = UUID(run_id)
    except ValueError:
        raise ApprovalError("not a flow run id", subject=repr(run_id),
                            hint="copy the id from `mendflow approvals`") from None
    with _client() as client:
        try:
            run = client.read_flow_run(uuid)
        except ObjectNotFound:
            raise ApprovalError(f"no flow run {run_id}", subject=run_id,
                                hint="list waiting runs with `mendflow approvals`; check "
                                     "PREFECT_API_URL points at the right server") from None
        if run.state is None or run.state.type != StateType.PAUSED:
            name = run.state.type.value if run.state else "without a state"
            raise ApprovalError(f"run {run_id} is {name}, not waiting for approval",
                                subject=run_id, hint="list waiting runs with `mendflow approvals`")
        _check_patch_ids(uuid, run_input.get("patch_ids"))
        response = client.resume_flow_run(uuid, run_input=run_input)
    if response.status != SetStateStatus.ACCEPT:
        reason = getattr(response.details, "reason", None) or response.status.value
        raise ApprovalError(f"the API refused to resume run {run_id}: {reason}", subject=run_id,
                            hint="the run still waits; fix the input and try again")


def _check_patch_ids(run_id: UUID, patch_ids: Any) -> None:
    if not patch_ids or not isinstance(patch_ids, list):
        return
    request = _request_of(run_id)
    if request is None:
        return
    unknown = sorted(set(map(str, patch_ids)) - set(request.get("patch_ids", ())))
    if unknown:
        raise ApprovalError(f"not waiting for approval in this run: {', '.join(unknown)}",
                            subject=str(run_id),
                            hint=f"waiting: {', '.join(request.get('patch_ids', ())) or 'none'}")


def default_approver() -> str:
    """Who approves by default: ``$MENDFLOW_APPROVER``, else the login name."""
    if os.environ.get("MENDFLOW_APPROVER"):
        return os.environ["MENDFLOW_APPROVER"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "anonymous"


def approve(run_id: str, *, only: list[str] | None = None, comment: str = "",
            approver: str | None = None) -> dict[str, Any]:
    """Approve a waiting mission's patches (all, or only ``only``).

    Returns:
        The input sent.

    Raises:
        ApprovalError: see :func:`resume`.
    """
    run_input = _input(True, comment, only or None, approver)
    resume(run_id, run_input)
    return run_input


def reject(run_id: str, *, comment: str, approver: str | None = None) -> dict[str, Any]:
    """Reject every patch a mission waits with.

    Returns:
        The input sent.

    Raises:
        ApprovalError: see :func:`resume`.
    """
    run_input = _input(False, comment, None, approver)
    resume(run_id, run_input)
    return run_input


def _input(approved: bool, comment: str, only: list[str] | None,
           approver: str | None) -> dict[str, Any]:

    try:
        answer = ApprovalInput(approved=approved, comment=comment, patch_ids=only,
                               approver=approver or default_approver())
    except ValidationError as err:
        raise ApprovalError(f"invalid answer: {err.errors()[0]['msg']}", subject="input") from None
    return answer.model_dump(mode="json")


def expire_overdue(now: datetime | None = None) -> list[str]:
    """Resume suspended mission runs whose approval request is past its deadline, as a timeout.

    A suspended (deployed) run has no process that could notice its deadline;
    this answers it with approver :data:`~mendflow.tasks.approve.request.TIMEOUT_APPROVER`,
    which the flow treats as a timeout (``approval.on_timeout``). Paused ad-hoc
    runs time out by themselves and are left alone.

    Args:
        now: the current time (UTC); None = now.

    Returns:
        The ids of the runs resumed.
    """

    expired = []
    for run in list_waiting():
        request = _request_of(UUID(run.run_id))
        if run.state != "Suspended" or request is None:
            continue
        if ApprovalRequest.model_validate(request).overdue(now):
            resume(run.run_id, {"approved": False, "comment": "approval timed out",
                                "approver": TIMEOUT_APPROVER, "patch_ids": None})
            expired.append(run.run_id)
    return expired


# --- the command line --------------------------------------------------------------------


