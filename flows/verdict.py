"""The one way a judged candidate ends: accepted (committed, audited, noted) or refused.

Every validation path of the cycle ends here: a candidate validated by its own
full run, one confirmed with its batch by one full run, one refused by its
selected tests or by a gate before any run. So the outcome in
``session_data.json``, the audit trail's ``commit`` entry and the learning
store's note are the same whichever path judged it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mendflow.core.models import Patch, ValidationReport
from mendflow.core.outcomes import patch_outcome
from mendflow.flows.cycle_learning import Held, first_failed_gate, settle
from mendflow.flows.ledger import MissionLedger
from mendflow.infra.progress import report_progress
from mendflow.tasks.learn.audit import audit_commit
from mendflow.tasks.vcs import commit_accepted_patch


@dataclass(frozen=True)
class Pending:
    """A candidate applied in the sandbox, not yet committed, awaiting a full run.

    ``report`` is its selective validation (``selected``), or a placeholder with
    its syntax and test-files gates when it waits for a full run of its own.
    """

    patch: Patch
    report: ValidationReport
    iteration: int
    held: Held = Held()
    selected: bool = False


def accept(ledger: MissionLedger, item: Pending, report: ValidationReport) -> None:
    """Commit one confirmed candidate on the mission branch (not in a dry run), then record it.

    The sandbox must hold the branch HEAD plus exactly this candidate (a dry run:
    anything; nothing is committed). Records the outcome, the audit trail's
    ``commit`` entry (``learning.audit``) and the learning notes.

    Args:
        state: the mission state.
        item: the candidate.
        report: the validation that accepted it (its full run's, or its selective one).
    """
    patch = item.patch
    if ledger.config.mission.dry_run:
        ledger.outcomes.append(patch_outcome(patch, "accepted", "dry run: not committed",
                                            item.iteration, report))
        settle(ledger, item.held, "accepted")
        report_progress("validate", f"accepted {patch.id} (dry run, not committed)")
        return
    record = commit_accepted_patch(ledger.sandbox, patch, report.summary(), ledger.backups_dir,
                                   ledger.started_at)
    ledger.backups.extend(record.backups)
    ledger.outcomes.append(patch_outcome(patch, "accepted", None, item.iteration, report,
                                        record.commit))
    if ledger.config.learning.audit and ledger.state_root is not None:
        audit_commit(ledger.state_root, ledger.mission_id, str(ledger.target.root),
                     ledger.sandbox.branch, ledger.outcomes[-1])
    settle(ledger, item.held, "accepted", commit=record.commit)
    report_progress("commit", f"accepted {patch.id} as {record.commit[:10]}")


def refuse(ledger: MissionLedger, patch: Patch, reason: str | None, iteration: int,
           report: ValidationReport | None = None, held: Held | None = None) -> None:
    """Record a refused candidate (the sandbox is reset by the caller).

    Args:
        state: the mission state.
        patch: the candidate.
        reason: the failed gates (``"no-test-regression, coverage"``) or the guard.
        iteration: the cycle it was proposed in.
        report: the validation that refused it, if any.
        held: its learning notes, written now as rejected (None: noted by the caller).
    """
    ledger.rejected_patches.add(patch.id)
    ledger.outcomes.append(patch_outcome(patch, "rejected", reason, iteration, report))
    if held is not None:
        settle(ledger, held, "rejected", reason=reason,
               gate=first_failed_gate(report) if report is not None else None)
    report_progress("validate", f"rejected {patch.id}: {reason}")
