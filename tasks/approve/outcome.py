"""Folding the approval step into the mission's result (pure functions, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence

from mendflow.core.errors import DeliveryError
from mendflow.core.models import ApprovalNeed, ApprovalRecord, MissionResult, PatchOutcome
from mendflow.tasks.approve.build import ApprovedCommit
from mendflow.tasks.approve.merge import Delivery
from mendflow.tasks.approve.request import ApprovalRequest, Decision, rejection_reason

UNASKED_REASON = ("not in the approval request: the resumed run produced a different patch "
                  "than the one shown for approval; not delivered")


def deliverable(result: MissionResult) -> list[PatchOutcome]:
    """The accepted patches that have a commit on the mission branch, in commit order."""
    return [p for p in result.patches if p.status == "accepted" and p.commit]


def approved_commits(result: MissionResult, patch_ids: Sequence[str]) -> list[ApprovedCommit]:
    """The mission commits of ``patch_ids``, in mission-branch order."""
    wanted = set(patch_ids)
    return [ApprovedCommit(patch_id=p.id, mission_commit=p.commit or "")
            for p in deliverable(result) if p.id in wanted]


def awaiting(result: MissionResult, request: ApprovalRequest) -> MissionResult:
    """The result while the request waits: status ``awaiting_approval``, patches ``pending_approval``."""
    waiting = set(request.patch_ids)
    patches = tuple(p.model_copy(update={"status": "pending_approval"}) if p.id in waiting else p
                    for p in result.patches)
    record = ApprovalRecord(autonomy=request.autonomy, required=True, decision="none",
                            pending_patch_ids=request.patch_ids,
                            target_branch=request.target_branch,
                            requested_at=request.requested_at)
    return result.model_copy(update={"status": "awaiting_approval", "patches": patches,
                                     "approval": record})


def finalize(result: MissionResult, *, autonomy: str, target_branch: str | None,
             needs: Sequence[ApprovalNeed], decision: Decision | None,
             delivery: Delivery | None, error: DeliveryError | None,
             request: ApprovalRequest | None = None) -> MissionResult:
    """Return the result after the decision and the delivery.

    Args:
        result: the mission's result before the approval step.
        autonomy: the autonomy level in force.
        target_branch: the target branch (None if it could not be resolved).
        needs: why each candidate needs approval (empty reasons = automatic).
        decision: the human's decision, or None when nobody was asked.
        delivery: what was delivered, or None when delivery failed or did not run.
        error: the delivery failure, if any.
        request: the approval request, if one was made.

    Returns:
        The result with status ``completed``: rejected patches ``rejected`` with
        the approver's reason, delivered ones ``accepted`` with their
        ``delivered_commit``, approved-but-undelivered ones ``accepted`` with a
        reason; the :class:`ApprovalRecord`; exit code 2 if a patch was
        rejected, 1 if delivery failed.
    """
    rejected = set(decision.rejected_ids) if decision else set()
    unasked = set(decision.unasked_ids) if decision else set()
    delivered = {c.patch_id: c.commit for c in (delivery.commits if delivery else ())}
    failure = error.message if error else None
    patches = []
    for patch in result.patches:
        update: dict = {}
        if patch.id in unasked:
            update = {"status": "rejected", "reason": UNASKED_REASON}
        elif patch.id in rejected:
            update = {"status": "rejected", "reason": rejection_reason(decision)}  # type: ignore[arg-type]
        elif patch.id in delivered:
            update = {"status": "accepted", "delivered_commit": delivered[patch.id]}
        elif failure and patch.status in ("accepted", "pending_approval") and patch.commit:
            update = {"status": "accepted", "reason": f"approved but not delivered: {failure}"}
        elif patch.status == "pending_approval":
            update = {"status": "accepted"}
        patches.append(patch.model_copy(update=update) if update else patch)
    record = _record(autonomy, target_branch, needs, decision, delivery, error, request)
    exit_code = result.exit_code
    if error is not None:
        exit_code = 1
    elif (rejected or unasked) and exit_code == 0:
        exit_code = 2
    return result.model_copy(update={"status": "completed", "patches": tuple(patches),
                                     "approval": record, "exit_code": exit_code})


def _record(autonomy: str, target_branch: str | None, needs: Sequence[ApprovalNeed],
            decision: Decision | None, delivery: Delivery | None, error: DeliveryError | None,
            request: ApprovalRequest | None) -> ApprovalRecord:
    auto = tuple(n.patch_id for n in needs if not n.reasons)
    approved = auto + (decision.approved_ids if decision else ())
    mode = delivery.mode if delivery else "none"
    if error is not None:
        mode = "conflict" if error.reason in ("conflict", "target-moved") else \
            "refused" if error.reason in ("dirty-checkout", "no-target") else "failed"
    error_text = error.message if error else (delivery.push_error if delivery else None)
    return ApprovalRecord(
        autonomy=autonomy, required=decision is not None,
        decision=decision.decision if decision else ("auto" if approved else "none"),
        approver=decision.approver if decision else None,
        comment=decision.comment if decision else "",
        patch_ids=approved, pending_patch_ids=request.patch_ids if request else (),
        delivered_commits=tuple(c.commit or "" for c in delivery.commits) if delivery else (),
        target_branch=target_branch, timed_out=bool(decision and decision.timed_out),
        delivery=mode, error=error_text, pushed_to=delivery.pushed_to if delivery else None,
        needs=tuple(needs), requested_at=request.requested_at if request else None,
        decided_at=decision.decided_at if decision else None)
