"""The checkpoint of a mission's ledger: what a resumed mission restores instead of replaying.

A mission writes a :class:`LedgerCheckpoint` whenever its ledger is settled: no
candidate awaits a full run, and the mission branch holds every accepted commit
so far (after each group whose batch was confirmed, at the end of each
iteration, and when the cycle stops). A resumed mission whose checkpoint is
valid (:func:`checkpoint_problem`) moves its sandbox to the checkpoint's commit,
restores the ledger and continues the cycle where it stood, instead of
replaying every step from the base commit.

This module is pure: the file is written and read by
:mod:`mendflow.tasks.checkpoint`, and the ledger is converted by
:mod:`mendflow.flows.checkpoint`.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import Field

from mendflow.core.config import MendflowConfig
from mendflow.core.learning import AttemptRecord, Choice, Prior
from mendflow.core.measurements import Contract, Finding, Measurement
from mendflow.core.models import (
    BackupEntry,
    LLMUsage,
    PatchOutcome,
    ValidationReport,
    ValidationTiming,
)

CHECKPOINT_SCHEMA = 1
"""The version of :class:`LedgerCheckpoint`'s layout; another version is never restored."""

CHECKPOINT_FILE = "checkpoint.json"
"""The checkpoint's file name in the mission's directory (``<state>/missions/<id>/``)."""


class LoopPosition(Contract):
    """Where the M-T-D-V cycle stood when the checkpoint was written.

    ``groups`` None: the iteration ``iteration`` starts from its top (its groups
    are planned again). Otherwise the iteration's planned groups, and the index of
    the next one to attempt with the counts of candidates attempted and kept so far.
    """

    iteration: int = Field(ge=1, description="the iteration to run or continue (1-based)")
    groups: tuple[tuple[Finding, ...], ...] | None = Field(
        None, description="the iteration's planned groups; None = not planned yet")
    next_group: int = Field(0, ge=0, description="index into groups of the next group")
    attempted: int = Field(0, ge=0, description="candidates attempted in this iteration")
    accepted: int = Field(0, ge=0, description="candidates kept in this iteration")
    finished: str | None = Field(
        None, description="the cycle's final stop reason; None = the cycle goes on")


class PriorEntry(Contract):
    """One entry of the ledger's priors (a dict keyed by (strategy, category))."""

    strategy: str
    category: str
    prior: Prior


class LedgerCheckpoint(Contract):
    """Everything a mission's ledger needs to continue, at a settled point of the cycle.

    Identity fields decide whether the checkpoint may be restored
    (:func:`checkpoint_problem`); the rest mirrors
    :class:`mendflow.flows.ledger.MissionLedger`. Transient stops (low disk, the
    wall-time budget) are not kept: a resume goes on from the loop position.
    """

    schema_version: Literal[1] = CHECKPOINT_SCHEMA
    mission_id: str
    base_commit: str = Field(description="the mission's base commit (40 hex)")
    commit: str = Field("", description="the mission branch's HEAD the ledger belongs to "
                        "(40 hex; set when the checkpoint is written)")
    config_hash: str = Field(description="sha256 of the effective config and the environment "
                             "(:func:`config_digest`)")
    position: LoopPosition
    current: Measurement
    batch_base: Measurement
    baseline_s: float = 0.0
    outcomes: tuple[PatchOutcome, ...] = ()
    validations: tuple[ValidationReport, ...] = ()
    validation_timings: tuple[ValidationTiming, ...] = ()
    backups: tuple[BackupEntry, ...] = ()
    tried: tuple[tuple[str, ...], ...] = Field(
        (), description="finding-id groups attempted, each sorted, in sorted order")
    rejected_patches: tuple[str, ...] = Field((), description="sorted patch ids refused")
    priors: tuple[PriorEntry, ...] = ()
    choices: tuple[Choice, ...] = ()
    attempt_log: tuple[AttemptRecord, ...] = ()
    llm_usage: LLMUsage = LLMUsage()
    fixer_disabled: str | None = None
    iterations: int = 0


def config_digest(config: MendflowConfig, env_fingerprint: str) -> str:
    """The sha256 (hex) of the effective config's JSON and the target environment's
    fingerprint: a checkpoint made under another config or environment is stale."""
    digest = hashlib.sha256(config.model_dump_json().encode())
    digest.update(b"\0" + env_fingerprint.encode())
    return digest.hexdigest()


def checkpoint_problem(checkpoint: LedgerCheckpoint, *, mission_id: str, base_commit: str,
                       config_hash: str) -> str | None:
    """Why a checkpoint must not be restored (None: its identity matches).

    Args:
        checkpoint: the checkpoint read from the mission's directory.
        mission_id: the resumed mission's id.
        base_commit: its sandbox's base commit.
        config_hash: :func:`config_digest` of its effective config and environment.

    Returns:
        A reason, such as ``"the config changed since the checkpoint"``, or None.
        Whether ``checkpoint.commit`` is still on the mission branch is a git
        question, answered by :mod:`mendflow.tasks.checkpoint`.
    """
    if checkpoint.mission_id != mission_id:
        return f"it belongs to mission {checkpoint.mission_id}"
    if checkpoint.base_commit != base_commit:
        return f"it was made from base commit {checkpoint.base_commit[:10]}, " \
               f"the mission starts from {base_commit[:10]}"
    if checkpoint.config_hash != config_hash:
        return "the config or the target environment changed since the checkpoint"
    return None
