"""The learning steps of the cycle: choose a strategy per group, note every attempt, flush.

Composes the tasks of :mod:`mendflow.tasks.learn`; the cycle (:mod:`mendflow.flows.cycle`)
calls these at the points where a proposal is answered and judged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from prefect.utilities.annotations import opaque

from mendflow.core.config import ChainFixerConfig, FixerConfig
from mendflow.core.learning import AttemptRecord, AttemptResult, StrategyInfo, attempt_records
from mendflow.core.models import CallFailed, Declined, Finding, Patched, Proposal
from mendflow.infra.progress import report_progress
from mendflow.tasks.learn.record import record_attempts
from mendflow.tasks.learn.strategy import choose_strategy_for, strategy_info


@dataclass
class GroupAttempts:
    """The attempts at one group, noted as they are judged and written once at the end."""

    ledger: object
    group: tuple[Finding, ...]
    iteration: int
    fixer: FixerConfig | None = None
    info: StrategyInfo | None = None
    records: list[AttemptRecord] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def choose(self) -> FixerConfig | None:
        """The bandit's strategy for the group (None: skipped as hopeless); logs the plan line."""
        ledger = self.ledger
        ids = ",".join(sorted(f.id for f in self.group))
        choice, self.fixer, self.info = choose_strategy_for(
            ledger.config, self.group, opaque(ledger.priors),
            f"{ledger.mission_id}:{self.iteration}:{ids}")
        ledger.choices.append(choice)
        report_progress("plan", f"{ids[:40]}: {choice.describe()}")
        return self.fixer

    def begin(self) -> None:
        """Start the clock of one attempt (the proposal is asked next)."""
        self.started = time.monotonic()

    def note(self, proposal: Proposal, result: AttemptResult, *, gate: str | None = None,
             reason: str | None = None, commit: str | None = None) -> None:
        """Note one attempt's verdict, with the proposal's tokens and the wall time since begin()."""
        if self.info is None or self.fixer is None:
            return
        info = self.info
        if isinstance(self.fixer, ChainFixerConfig):  # the member that answered
            info = strategy_info(self.fixer, None, proposal.fixer)
        ledger = self.ledger
        tokens_in = (proposal.input_tokens + proposal.cache_creation_input_tokens
                     + proposal.cache_read_input_tokens)
        self.records.extend(attempt_records(
            self.group, mission_id=ledger.mission_id, repository=str(ledger.target.root),
            strategy=info, attempt=proposal.attempt, iteration=self.iteration, result=result,
            gate=gate, reason=reason,
            patch_id=proposal.patch.id if isinstance(proposal, Patched) else None,
            commit=commit, tokens_in=tokens_in, tokens_out=proposal.output_tokens,
            wall_s=time.monotonic() - self.started, now=datetime.now(timezone.utc)))

    def hold(self, proposal: Patched) -> Held:
        """The notes of a candidate whose verdict comes later, kept out of this group's flush.

        Noted as accepted; :func:`settle` rewrites them with the verdict (a batch's
        full run may come after the group is done).
        """
        before = len(self.records)
        self.note(proposal, "accepted")
        held = Held(tuple(self.records[before:]), self.started)
        del self.records[before:]
        return held

    def flush(self) -> None:
        """Write the noted attempts to the outcome store (a store that is down is reported)."""
        ledger = self.ledger
        if self.records:
            ledger.attempt_log.extend(self.records)
            record_attempts(ledger.config.learning, ledger.state_root, opaque(self.records))
            self.records = []


@dataclass(frozen=True)
class Held:
    """The learning notes of one candidate, awaiting its verdict."""

    records: tuple[AttemptRecord, ...] = ()
    since: float = field(default_factory=time.monotonic)


def settle(ledger, held: Held, result: AttemptResult, *, gate: str | None = None,
           reason: str | None = None, commit: str | None = None) -> None:
    """Write a candidate's notes with its verdict (and wall time up to now) to the outcome store."""
    if not held.records:
        return
    wall_s = round((time.monotonic() - held.since) / len(held.records), 3)
    records = [r.model_copy(update={"result": result, "gate": gate, "commit": commit,
                                    "reason": (reason or "")[:2000] or None, "wall_s": wall_s})
               for r in held.records]
    ledger.attempt_log.extend(records)
    record_attempts(ledger.config.learning, ledger.state_root, opaque(records))


def no_patch_result(proposal: Proposal) -> AttemptResult:
    """over_budget, failed (a model call failed for good) or declined."""
    match proposal:
        case Declined(budget_exhausted=True):
            return "over_budget"
        case CallFailed():
            return "failed"
    return "declined"


def first_failed_gate(report) -> str | None:
    """The name of the first gate that refused a candidate."""
    return next((g.gate for g in report.gates if not g.passed), None)
