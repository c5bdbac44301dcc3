"""The ledger's checkpoints: written at each settled point of the cycle, restored on resume.

A settled point: no candidate awaits its batch's full run (``ledger.pending`` is
empty), so the mission branch's HEAD holds every accepted commit and the
sandbox's tree is that HEAD. :func:`checkpoint_ledger` writes one there
(:func:`mendflow.tasks.checkpoint.save_checkpoint`); :func:`restore_ledger` puts a
valid one back into a new ledger (see :mod:`mendflow.core.checkpoint`).
"""

from __future__ import annotations

from prefect.utilities.annotations import opaque

from mendflow.core.checkpoint import LedgerCheckpoint, LoopPosition, PriorEntry
from mendflow.core.config import FixerConfig, LLMBudget
from mendflow.core.config_fixers import fixer_members
from mendflow.core.models import ValidationReport
from mendflow.flows.ledger import MissionLedger
from mendflow.infra.budget import charge_mission_budget
from mendflow.infra.layout import StateLayout
from mendflow.tasks.checkpoint import save_checkpoint

TRANSIENT_STOPS = ("paused: ", "wall-time budget of ")
"""Stop reasons a resume goes on from (low disk, the wall-time budget): never checkpointed."""


def ledger_checkpoint(ledger: MissionLedger, position: LoopPosition) -> LedgerCheckpoint:
    """The checkpoint of a settled ledger (``ledger.pending`` empty) at ``position``.

    Args:
        ledger: the mission's ledger; its ``config_hash`` must be set.
        position: where the cycle stands.

    Returns:
        The :class:`LedgerCheckpoint`, without its ``commit`` (the task that writes
        it reads the mission branch's HEAD).
    """
    return LedgerCheckpoint(
        mission_id=ledger.mission_id, base_commit=ledger.sandbox.base_commit,
        config_hash=ledger.config_hash, position=position, current=ledger.current,
        batch_base=ledger.batch_base or ledger.current, baseline_s=ledger.baseline_s,
        outcomes=tuple(ledger.outcomes), validations=tuple(_slim(v) for v in ledger.validations),
        validation_timings=tuple(ledger.validation_timings), backups=tuple(ledger.backups),
        tried=tuple(sorted(tuple(sorted(group)) for group in ledger.tried)),
        rejected_patches=tuple(sorted(ledger.rejected_patches)),
        priors=tuple(PriorEntry(strategy=s, category=c, prior=p)
                     for (s, c), p in ledger.priors.items()),
        choices=tuple(ledger.choices), attempt_log=tuple(ledger.attempt_log),
        llm_usage=ledger.llm_usage, fixer_disabled=ledger.fixer_disabled,
        iterations=ledger.iterations)


def _slim(report: ValidationReport) -> ValidationReport:
    """A validation without its measurement's tool results (test cases, coverage files, each
    tool's findings again): only its tree, score, loc and findings reach the report
    (:func:`mendflow.tasks.report.validation_entry`). A checkpoint is rewritten after every
    settled group, so what each validation adds to it must stay small on a long mission."""
    after = report.after
    if after is None or not after.results:
        return report
    return report.model_copy(update={"after": after.model_copy(update={"results": ()})})


def checkpoint_ledger(ledger: MissionLedger, position: LoopPosition) -> None:
    """Write the ledger's checkpoint at ``position`` (nothing when candidates are pending,
    when the ledger has no ``config_hash``, or the position is a transient stop's)."""
    if ledger.pending or not ledger.config_hash:
        return
    if position.finished and position.finished.startswith(TRANSIENT_STOPS):
        return
    save_checkpoint(StateLayout.of(ledger.config.mission.state_dir), ledger.sandbox,
                    opaque(ledger_checkpoint(ledger, position)))


def restore_ledger(ledger: MissionLedger, checkpoint: LedgerCheckpoint) -> LoopPosition:
    """Put a checkpoint's state into a new ledger; return where the cycle continues.

    The mission's LLM budget is charged with what the checkpointed part of the
    mission spent (:func:`mendflow.infra.budget.charge_mission_budget`).

    Args:
        ledger: a ledger just built on the baseline (its sandbox at ``checkpoint.commit``).
        checkpoint: a checkpoint :func:`mendflow.tasks.checkpoint.load_checkpoint` accepted.

    Returns:
        The loop position to continue from.
    """
    ledger.current, ledger.batch_base = checkpoint.current, checkpoint.batch_base
    ledger.outcomes = list(checkpoint.outcomes)
    ledger.validations = list(checkpoint.validations)
    ledger.validation_timings = list(checkpoint.validation_timings)
    ledger.backups = list(checkpoint.backups)
    ledger.tried = {frozenset(group) for group in checkpoint.tried}
    ledger.rejected_patches = set(checkpoint.rejected_patches)
    ledger.priors = {(e.strategy, e.category): e.prior for e in checkpoint.priors}
    ledger.choices = list(checkpoint.choices)
    ledger.attempt_log = list(checkpoint.attempt_log)
    ledger.llm_usage = checkpoint.llm_usage
    ledger.fixer_disabled = checkpoint.fixer_disabled
    ledger.iterations = checkpoint.iterations
    ledger.baseline_s = checkpoint.baseline_s
    usage = checkpoint.llm_usage
    for limits in llm_budgets(ledger.config.fixer):
        charge_mission_budget(ledger.mission_id, limits, calls=usage.calls,
                              input_tokens=usage.input_tokens,
                              output_tokens=usage.output_tokens,
                              cache_creation_input_tokens=usage.cache_creation_input_tokens,
                              cache_read_input_tokens=usage.cache_read_input_tokens)
    return checkpoint.position


def llm_budgets(fixer: FixerConfig) -> list[LLMBudget]:
    """The distinct budget limits of the model fixers in ``fixer`` (a chain's members too)."""
    found: list[LLMBudget] = []
    for member in fixer_members(fixer):
        limits = getattr(member, "budget", None)
        if isinstance(limits, LLMBudget) and limits not in found:
            found.append(limits)
    return found
