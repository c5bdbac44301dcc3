"""The approval request and the decision: what a human is asked, what they answer, what it means.

* :class:`ApprovalInput` is the Prefect ``RunInput`` a paused or suspended
  mission waits for; the Prefect UI renders it as the form of the "Resume"
  dialog, and ``mendflow approve|reject`` sends it with ``resume_flow_run``.
* :class:`ApprovalRequest` is stored with the flow run (a flow run input under
  :data:`REQUEST_KEY`), so that ``mendflow approvals`` can list what waits and
  a re-run after a suspend finds the same request (and deadline) again.
* :func:`decide` turns an answer (or a timeout) into a :class:`Decision`.
* :func:`render_request` writes the markdown published as the request artifact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Literal

from mendflow.core.approval import (  # noqa: F401  (re-exported: the request's public names)
    MAX_DIFF_CHARS,
    NOTIFIED_KEY,
    PAUSE_KEY,
    REQUEST_KEY,
    TIMEOUT_APPROVER,
    ApprovalInput,
    ApprovalRequest,
    Decision,
)
from mendflow.core.models import (
    ApprovalDecision,
    ApprovalNeed,
    Finding,
    MissionResult,
    PatchOutcome,
)


def utc_now() -> str:
    """The current time as ISO 8601 in UTC (seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_request(result: MissionResult, needs: Sequence[ApprovalNeed], *, target_branch: str,
                autonomy: str, timeout_s: float, on_timeout: Literal["reject", "approve"],
                ui_url: str | None) -> ApprovalRequest:
    """Build the request for the patches whose :class:`ApprovalNeed` has reasons.

    Args:
        result: the mission's result (its accepted, committed patches are the candidates).
        needs: one :class:`ApprovalNeed` per candidate.
        target_branch: where approved patches go.
        autonomy: the autonomy level in force.
        timeout_s: seconds until the request times out.
        on_timeout: what a timeout means.
        ui_url: the flow run's page in the Prefect UI, or None.

    Returns:
        The :class:`ApprovalRequest` (deadline = now + timeout_s).
    """
    now = datetime.now(timezone.utc)
    return ApprovalRequest(
        mission_id=result.mission_id, flow_run_id=result.flow_run_id,
        repository=result.repository, target_branch=target_branch, autonomy=autonomy,
        patch_ids=tuple(n.patch_id for n in needs if n.reasons),
        auto_patch_ids=tuple(n.patch_id for n in needs if not n.reasons),
        requested_at=now.isoformat(timespec="seconds"),
        deadline=(now + timedelta(seconds=timeout_s)).isoformat(timespec="seconds"),
        on_timeout=on_timeout, ui_url=ui_url)


def decide(pending: Sequence[str], answer: ApprovalInput | None,
           on_timeout: Literal["reject", "approve"]) -> Decision:
    """Turn a human's answer into per-patch verdicts.

    Args:
        pending: the ids of the patches waiting for approval.
        answer: the :class:`ApprovalInput`, or None when the request timed out
            (an answer from :data:`TIMEOUT_APPROVER` counts as a timeout too).
        on_timeout: ``reject`` or ``approve``: what a timeout means.

    Returns:
        The :class:`Decision`. ``approved: false`` rejects every waiting patch;
        ``approved: true`` with ``patch_ids`` approves those (that are waiting)
        and rejects the others (``partial``); ids that are not waiting are
        listed in ``unknown_ids`` and otherwise ignored.
    """
    now = utc_now()
    if answer is None or answer.approver == TIMEOUT_APPROVER:
        approve = on_timeout == "approve"
        return Decision(decision="approved" if approve else "rejected",
                        approved_ids=tuple(pending) if approve else (),
                        rejected_ids=() if approve else tuple(pending),
                        approver="mendflow (timeout)", comment="approval timed out",
                        timed_out=True, decided_at=now)
    selected = set(answer.patch_ids or pending) if answer.approved else set()
    approved = tuple(p for p in pending if p in selected)
    rejected = tuple(p for p in pending if p not in selected)
    unknown = tuple(sorted(set(answer.patch_ids or ()) - set(pending)))
    kind: ApprovalDecision = ("approved" if not rejected else "partial" if approved
                              else "rejected")
    return Decision(decision=kind, approved_ids=approved, rejected_ids=rejected,
                    unknown_ids=unknown, approver=(answer.approver or "").strip() or "anonymous",
                    comment=answer.comment.strip(), decided_at=now)


def rejection_reason(decision: Decision) -> str:
    """The ``reason`` of a patch the decision rejected."""
    if decision.timed_out:
        return "approval timed out"
    text = f"rejected by {decision.approver}"
    if decision.approved_ids and not decision.comment:
        return f"{text}: not selected for approval"
    return f"{text}: {decision.comment}" if decision.comment else text


# --- the request artifact ---------------------------------------------------------------


def render_request(result: MissionResult, request: ApprovalRequest,
                   needs: Mapping[str, ApprovalNeed], diffs: Mapping[str, str],
                   findings: Mapping[str, Finding]) -> str:
    """Render the approval request published as a Prefect markdown artifact.

    Args:
        result: the mission's result.
        request: the request (its waiting and automatic patch ids).
        needs: why each patch needs approval, by patch id.
        diffs: each waiting patch's ``git show`` of its mission commit, by patch id.
        findings: known findings by id (for the claimed findings).

    Returns:
        Markdown: a summary, how to answer, and per waiting patch its reasons,
        findings, validation summary and diff.
    """
    score = result.quality_score
    run = result.flow_run_id or "<flow-run-id>"
    lines = [
        f"# Approval needed: mission {result.mission_id}", "",
        f"{len(request.patch_ids)} patch(es) wait for approval before they reach "
        f"`{request.target_branch}` of `{result.repository}` (autonomy: {request.autonomy}).",
        "", f"- Quality score: {score.before:.1f} → {score.after:.1f}",
        f"- Deadline: {request.deadline} (then: {request.on_timeout})",
        f"- Delivered without approval: {', '.join(f'`{p}`' for p in request.auto_patch_ids)}"
        if request.auto_patch_ids else "- Delivered without approval: none",
        "", "Answer in the Prefect UI (Resume) or with:", "", "```sh",
        f"mendflow approve {run} --comment 'looks good'  # [--only PATCH_ID ...]",
        f"mendflow reject {run} --comment 'why not'", "```",
    ]
    if request.ui_url:
        lines[2:2] = [f"[Open the flow run]({request.ui_url})", ""]
    by_id = {p.id: p for p in result.patches}
    for patch_id in request.patch_ids:
        if patch_id in by_id:
            lines += ["", *_patch_section(by_id[patch_id], needs.get(patch_id),
                                          diffs.get(patch_id, ""), findings)]
    return "\n".join(lines).rstrip() + "\n"


def _patch_section(outcome: PatchOutcome, need: ApprovalNeed | None, diff: str,
                   findings: Mapping[str, Finding]) -> list[str]:
    lines = [f"## `{outcome.id}` {outcome.title}".rstrip(), "",
             f"- Why approval: {'; '.join(need.reasons) if need else 'unknown'}",
             f"- Fixer: {outcome.fixer}, confidence {outcome.confidence or 'unknown'}, "
             f"{need.changed_lines if need else '?'} changed line(s)",
             f"- Commit on the mission branch: `{outcome.commit}`",
             f"- Validation: {outcome.validation.summary() if outcome.validation else 'none'}"]
    claimed = [findings[i] for i in outcome.finding_ids if i in findings]
    lines.append(f"- Findings fixed ({len(outcome.finding_ids)}):")
    lines += [f"  - {f.source} {f.rule} `{f.path}:{f.line or ''}` {' '.join(f.message.split())}"
              for f in claimed[:20]]
    if outcome.validation:
        failed = [g for g in outcome.validation.gates if not g.passed]
        lines.append(f"- Gates: {len(outcome.validation.gates) - len(failed)}/"
                     f"{len(outcome.validation.gates)} passed")
    shown = diff if len(diff) <= MAX_DIFF_CHARS else \
        diff[:MAX_DIFF_CHARS] + f"\n... ({len(diff) - MAX_DIFF_CHARS} more characters)"
    fence = "~~~~" if "```" in shown else "```"
    return [*lines, "", f"{fence}diff", shown.rstrip(), fence]
