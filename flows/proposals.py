"""Asking the fixer for a candidate, and recording what its answer says (usage, declines).

Composes :func:`mendflow.tasks.fix.propose_patch`; the cycle
(:mod:`mendflow.flows.cycle`) validates what comes back.
"""

from __future__ import annotations

from prefect import get_run_logger

from mendflow.core.config import FixerConfig
from mendflow.core.config_fixers import fixer_members
from mendflow.core.errors import LLMError
from mendflow.core.models import CallFailed, Declined, OutputRejected, PatchOutcome, Proposal
from mendflow.flows.ledger import MissionLedger
from mendflow.infra.progress import report_progress
from mendflow.tasks.fix import propose_patch


def ask_fixer(ledger: MissionLedger, fixer: FixerConfig, group, feedback: str | None,
              attempt: int) -> Proposal:
    """One proposal (cached by the tree, so a resumed mission never asks again).

    A model call that failed for good becomes a :class:`CallFailed` (an
    authentication failure disables the fixer for the rest of the mission).
    """
    logger = get_run_logger()
    ids = tuple(f.id for f in group)
    try:
        proposal = propose_patch(fixer, ledger.sandbox, group, feedback, attempt,
                                 ledger.current.tree)
    except LLMError as err:  # permanent, or transient and still failing after every retry
        proposal = CallFailed(fixer=getattr(fixer, "type", "fixer"), finding_ids=ids,
                              attempt=attempt, error=err.message, auth_failed=err.auth,
                              llm_calls=1)
    ledger.llm_usage = ledger.llm_usage.add(proposal)
    match proposal:
        case CallFailed(error=error, auth_failed=auth_failed):
            failures = (*ledger.llm_usage.failures, f"{', '.join(ids)}: {error}")
            ledger.llm_usage = ledger.llm_usage.model_copy(update={"failures": failures})
            if auth_failed:
                ledger.fixer_disabled = f"the model fixer is unusable: {error}"
            logger.warning("fixer failed for %s: %s", ids, error)
        case Declined(budget_exhausted=True, reason=reason):
            if ledger.llm_usage.budget_exhausted is None:
                ledger.llm_usage = ledger.llm_usage.model_copy(update={"budget_exhausted": reason})
                report_progress("fix", f"LLM budget exhausted: {reason}")
        case Declined(reason=reason):
            logger.info("fixer declined %s: %s", ids, reason)
            ledger.outcomes.append(PatchOutcome(
                id=f"{proposal.fixer}-declined-{'-'.join(ids)[:40]}-{attempt}", finding_ids=ids,
                fixer=proposal.fixer, status="declined", reason=reason,
                iteration=ledger.iterations))
    return proposal


def reject_output(ledger: MissionLedger, proposal: OutputRejected, iteration: int) -> None:
    """Record fixer output that failed a guard (it never reached the sandbox)."""
    ledger.outcomes.append(PatchOutcome(
        id=f"{proposal.fixer}-output-{'-'.join(proposal.finding_ids)[:40]}-{proposal.attempt}",
        finding_ids=proposal.finding_ids, fixer=proposal.fixer, status="rejected",
        reason=f"{proposal.guard}: {proposal.message}", iteration=iteration))
    report_progress("fix", f"fixer output refused ({proposal.guard}): {proposal.message}")


def max_attempts(fixer: FixerConfig) -> int:
    """The repair-loop bound: the largest ``policy.max_attempts`` of the fixer(s), else 1."""
    return max(int(getattr(getattr(f, "policy", None), "max_attempts", 1))
               for f in fixer_members(fixer))
