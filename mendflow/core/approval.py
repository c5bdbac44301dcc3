"""The approval contracts: what a human is asked, what they answer, what it means.

* :class:`ApprovalInput` is the Prefect ``RunInput`` a paused or suspended
  mission waits for; the Prefect UI renders it as the form of the "Resume"
  dialog, and ``mendflow approve|reject`` sends it with ``resume_flow_run``.
* :class:`ApprovalRequest` is stored with the flow run (a flow run input under
  :data:`REQUEST_KEY`), so that ``mendflow approvals`` can list what waits and
  a re-run after a suspend finds the same request (and deadline) again.
* :class:`Decision` is what an answer (or a timeout) means for each patch.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from prefect.input import RunInput
from pydantic import Field

from mendflow.core.models import ApprovalDecision, Contract

REQUEST_KEY = "mendflow-approval-request"
"""Flow run input key of the stored :class:`ApprovalRequest`."""
NOTIFIED_KEY = "mendflow-approval-notified"
"""Flow run input key set once the "waiting for approval" message was sent."""
PAUSE_KEY = "mendflow-approval"
"""The pause key: one approval per flow run, the same across a suspended run's re-runs."""
TIMEOUT_APPROVER = "mendflow-timeout"
"""The approver name the timeout sweeper resumes an overdue suspended run with."""
MAX_DIFF_CHARS = 20_000


class ApprovalInput(RunInput):
    """A human's answer to a mission's approval request."""

    approved: bool = Field(description="true: deliver the patches; false: reject them all")
    comment: str = Field(default="", description="why; recorded in the commits and the report")
    patch_ids: list[str] | None = Field(
        default=None, description="approve only these patch ids (partial approval); "
        "empty = every patch waiting")
    approver: str | None = Field(default=None, description="your name, for the Approved-by trailer")


class ApprovalRequest(Contract):
    """What a mission asks to have approved (stored with its flow run)."""

    mission_id: str
    flow_run_id: str | None = None
    repository: str
    target_branch: str
    autonomy: str
    patch_ids: tuple[str, ...] = Field(description="patches waiting for a decision")
    auto_patch_ids: tuple[str, ...] = Field(default=(), description="delivered without approval")
    requested_at: str = Field(description="ISO 8601, UTC")
    deadline: str = Field(description="ISO 8601, UTC: after this the request times out")
    on_timeout: Literal["reject", "approve"] = "reject"
    ui_url: str | None = Field(default=None, description="the flow run in the Prefect UI")

    def overdue(self, now: datetime | None = None) -> bool:
        """True once the deadline has passed."""
        return (now or datetime.now(timezone.utc)) >= datetime.fromisoformat(self.deadline)


class Decision(Contract):
    """What an answer (or its absence) means for each waiting patch."""

    decision: ApprovalDecision
    approved_ids: tuple[str, ...] = ()
    rejected_ids: tuple[str, ...] = ()
    unknown_ids: tuple[str, ...] = Field(default=(), description="ids in the answer not waiting")
    unasked_ids: tuple[str, ...] = Field(
        default=(), description="patches needing approval that the (earlier) request did not "
        "name: a resumed run that produced a different patch; never delivered")
    approver: str | None = None
    comment: str = ""
    timed_out: bool = False
    decided_at: str = ""
