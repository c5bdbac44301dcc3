"""Approval requests, answers and the result after a decision (pure functions)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mendflow.core.errors import DeliveryError
from mendflow.core.models import ApprovalNeed, GateResult, MissionResult, PatchOutcome, QualityScore
from mendflow.core.models import ValidationReport as Report
from mendflow.tasks.approve.build import ApprovedCommit
from mendflow.tasks.approve.merge import Delivery
from mendflow.tasks.approve.outcome import UNASKED_REASON, approved_commits, awaiting, finalize
from mendflow.tasks.approve.request import (
    TIMEOUT_APPROVER,
    ApprovalInput,
    decide,
    new_request,
    render_request,
)


def result(exit_code=0) -> MissionResult:
    report = Report(patch_id="p1", accepted=True, gates=(GateResult(gate="syntax", passed=True),))
    patches = tuple(PatchOutcome(id=p, finding_ids=(), fixer="ruff", status="accepted",
                                 commit=c * 40, title=f"fix {p}", validation=report)
                    for p, c in (("p1", "a"), ("p2", "b"), ("p3", "c")))
    rejected = PatchOutcome(id="p0", finding_ids=(), fixer="ruff", status="rejected",
                            reason="regression")
    return MissionResult(mission_id="m-1", flow_run_id="run-1", status="completed",
                         repository="/r", base_commit="0" * 40, branch="mendflow/m-1",
                         findings=(), patches=(rejected, *patches), report_dir="/tmp/x",
                         quality_score=QualityScore(before=50, after=60), exit_code=exit_code)


NEEDS = (ApprovalNeed(patch_id="p1", reasons=("interactive",)),
         ApprovalNeed(patch_id="p2", reasons=("interactive",)),
         ApprovalNeed(patch_id="p3"))


def test_decide_approve_all_partial_reject_and_timeout():
    pending = ("p1", "p2")
    full = decide(pending, ApprovalInput(approved=True, approver="Ada"), "reject")
    assert (full.decision, full.approved_ids, full.rejected_ids) == ("approved", pending, ())
    part = decide(pending, ApprovalInput(approved=True, patch_ids=["p2", "zz"]), "reject")
    assert (part.decision, part.approved_ids, part.rejected_ids) == ("partial", ("p2",), ("p1",))
    assert part.unknown_ids == ("zz",) and part.approver == "anonymous"
    no = decide(pending, ApprovalInput(approved=False, comment=" risky ", patch_ids=["p1"]),
                "approve")
    assert (no.decision, no.approved_ids, no.comment) == ("rejected", (), "risky")
    late = decide(pending, None, "reject")
    assert late.timed_out and late.rejected_ids == pending and late.comment == "approval timed out"
    swept = decide(pending, ApprovalInput(approved=False, approver=TIMEOUT_APPROVER), "approve")
    assert swept.timed_out and swept.approved_ids == pending and swept.decision == "approved"


def test_finalize_after_partial_approval():
    base = result()
    decision = decide(("p1", "p2"), ApprovalInput(approved=True, patch_ids=["p2"],
                                                  approver="Ada", comment="p1 is odd"), "reject")
    delivery = Delivery(mode="fast-forward", target_branch="main", old_tip="0" * 40,
                        new_tip="e" * 40, commits=(
                            ApprovedCommit(patch_id="p2", mission_commit="b" * 40, commit="d" * 40),
                            ApprovedCommit(patch_id="p3", mission_commit="c" * 40, commit="e" * 40)))
    final = finalize(base, autonomy="interactive", target_branch="main", needs=NEEDS,
                     decision=decision, delivery=delivery, error=None)
    by_id = {p.id: p for p in final.patches}
    assert by_id["p1"].status == "rejected" and by_id["p1"].reason == "rejected by Ada: p1 is odd"
    assert by_id["p2"].status == "accepted" and by_id["p2"].delivered_commit == "d" * 40
    assert by_id["p3"].delivered_commit == "e" * 40 and by_id["p0"].reason == "regression"
    record = final.approval
    assert record.decision == "partial" and record.required and record.approver == "Ada"
    assert record.patch_ids == ("p3", "p2") and record.delivered_commits == ("d" * 40, "e" * 40)
    assert final.status == "completed" and final.exit_code == 2


def test_finalize_after_failed_delivery_and_timeout():
    decision = decide(("p1", "p2"), None, "approve")
    error = DeliveryError("conflict in a.py", reason="conflict")
    final = finalize(result(), autonomy="interactive", target_branch="main", needs=NEEDS,
                     decision=decision, delivery=None, error=error)
    assert final.approval.delivery == "conflict" and final.approval.timed_out
    assert final.approval.error == "conflict in a.py" and final.exit_code == 1
    assert all("not delivered: conflict" in (p.reason or "")
               for p in final.patches if p.id != "p0")


def test_awaiting_marks_pending_patches():
    request = new_request(result(), NEEDS, target_branch="main", autonomy="interactive",
                          timeout_s=60, on_timeout="reject", ui_url=None)
    waiting = awaiting(result(), request)
    assert waiting.status == "awaiting_approval"
    assert [p.status for p in waiting.patches] == ["rejected", "pending_approval",
                                                   "pending_approval", "accepted"]
    assert waiting.approval.pending_patch_ids == ("p1", "p2")
    deadline = datetime.fromisoformat(request.deadline)
    assert timedelta(seconds=55) < deadline - datetime.now(timezone.utc) <= timedelta(seconds=60)
    assert not request.overdue() and request.overdue(deadline)
    assert [c.patch_id for c in approved_commits(result(), ["p3", "p1"])] == ["p1", "p3"]


def test_render_request_shows_diff_reasons_and_commands():
    request = new_request(result(), NEEDS, target_branch="main", autonomy="interactive",
                          timeout_s=60, on_timeout="reject", ui_url="http://ui/runs/flow-run/1")
    text = render_request(result(), request, {n.patch_id: n for n in NEEDS},
                          {"p1": "diff --git a/x b/x\n-old\n+new\n"}, {})
    assert "# Approval needed: mission m-1" in text and "[Open the flow run](http://ui/" in text
    assert "mendflow approve run-1" in text and "mendflow reject run-1" in text
    assert "## `p1` fix p1" in text and "## `p2` fix p2" in text and "## `p3`" not in text
    assert "+new" in text and "Why approval: interactive" in text
    assert "gates 1/1 passed" in text and "50.0 → 60.0" in text


def test_approval_input_validates():
    with pytest.raises(ValueError):
        ApprovalInput(approved="maybe")
    assert ApprovalInput(approved=True).patch_ids is None


def test_patches_the_request_did_not_name_are_never_delivered():
    decision = decide(("p1",), ApprovalInput(approved=True, approver="Ada"), "reject")
    decision = decision.model_copy(update={"unasked_ids": ("p2",)})
    final = finalize(result(), autonomy="interactive", target_branch="main", needs=NEEDS,
                     decision=decision, delivery=None, error=None)
    by_id = {p.id: p for p in final.patches}
    assert by_id["p2"].status == "rejected" and by_id["p2"].reason == UNASKED_REASON
    assert by_id["p1"].status == "accepted" and final.exit_code == 2
