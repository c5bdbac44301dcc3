"""Tasks that write to and read from the outcome store; a store that is down never fails a mission.

Every task here catches the store's errors (:data:`mendflow.infra.outcomes.STORE_ERRORS`),
reports them as one progress line (``learn: outcome store unavailable: ...``) and returns
a neutral value, so the mission goes on. Each waits at most ``learning.connect_timeout_s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mendflow.core.config_learning import LearningConfig
from mendflow.core.learning import AttemptRecord, MissionRecord, PostMergeOutcomes, Prior
from mendflow.core.models import MissionResult
from mendflow.infra.caching import MISSION_STEP
from mendflow.infra.outcomes import STORE_ERRORS, OutcomeStore
from mendflow.infra.progress import report_progress


def _store(learning: LearningConfig, state_root: Path) -> OutcomeStore:
    return OutcomeStore.open(learning.database_url, state_root, learning.connect_timeout_s)


def _unavailable(learning: LearningConfig, state_root: Path, error: BaseException) -> None:
    url = learning.database_url or f"sqlite:///{state_root / 'mendflow.db'}"
    try:
        shown = sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        shown = "(an invalid URL)"
    line = f"outcome store unavailable ({shown}): {type(error).__name__}: " \
           f"{str(error).splitlines()[0][:200] if str(error) else ''}; the mission goes on"
    report_progress("learn", line)
    try:
        get_run_logger().warning(line)
    except Exception:  # noqa: BLE001  (outside a run context: the progress line is enough)
        pass


@task(name="load-priors", cache_policy=MISSION_STEP, persist_result=True, timeout_seconds=120)
def load_priors(learning: LearningConfig, state_root: Path, repository: str,
                mission_id: str) -> dict[tuple[str, str], Prior]:
    """The repository's history per (strategy, category), read once per mission.

    Cached per mission (``mission_id`` is part of the key): a resumed mission sees the
    priors it started with, so it makes the same strategy choices and its cached
    proposals are re-used.

    Args:
        learning: the ``learning`` section.
        state_root: the state directory.
        repository: the repository root (as recorded in attempts).
        mission_id: the mission (a cache-key part).

    Returns:
        ``{(strategy, category): Prior}``; empty when learning is off or the store is down.
    """
    if not learning.enabled:
        return {}
    try:
        return _store(learning, state_root).priors(repository)
    except STORE_ERRORS as error:
        _unavailable(learning, state_root, error)
        return {}


@task(name="record-attempts", cache_policy=NO_CACHE, timeout_seconds=120)
def record_attempts(learning: LearningConfig, state_root: Path,
                    records: Sequence[AttemptRecord]) -> int:
    """Write attempts (a replayed mission's keys are already there and are skipped).

    Returns:
        Rows written; 0 when learning is off or the store is down (reported).
    """
    if not learning.enabled or not records:
        return 0
    try:
        return _store(learning, state_root).record_attempts(list(records))
    except STORE_ERRORS as error:
        _unavailable(learning, state_root, error)
        return 0


@task(name="record-mission", cache_policy=NO_CACHE, timeout_seconds=120)
def record_mission(learning: LearningConfig, state_root: Path, result: MissionResult,
                   started_at: str | None, attempts: int, cost_usd: float) -> bool:
    """Write the mission's row (score before/after, accepted fixes, cost) and its approval.

    Args:
        learning: the ``learning`` section.
        state_root: the state directory.
        result: the mission's result (after approval and delivery).
        started_at: ISO 8601 start time (the mission registry's), or None = now.
        attempts: attempts made by this run.
        cost_usd: their cost, USD.

    Returns:
        True when written; False when learning is off or the store is down (reported).
    """
    if not learning.enabled:
        return False
    now = datetime.now(timezone.utc)
    start = _parse(started_at) or now
    approval = result.approval
    record = MissionRecord(
        mission_id=result.mission_id, repository=result.repository, started_at=start,
        finished_at=now, score_before=result.quality_score.before,
        score_after=result.quality_score.after,
        accepted=sum(p.status == "accepted" for p in result.patches), attempts=attempts,
        cost_usd=round(cost_usd, 6), autonomy=approval.autonomy if approval else None,
        approval_decision=approval.decision if approval else None,
        requested_at=_parse(approval.requested_at) if approval else None,
        decided_at=_parse(approval.decided_at) if approval else None)
    try:
        store = _store(learning, state_root)
        store.record_mission(record)
        if approval is not None and approval.decision != "none":
            asked = set(approval.pending_patch_ids)
            store.record_approval(
                result.mission_id, decision=approval.decision, approved=approval.patch_ids,
                asked=asked, timed_out=approval.timed_out, autonomy=approval.autonomy,
                requested_at=record.requested_at, decided_at=record.decided_at)
        return True
    except STORE_ERRORS as error:
        _unavailable(learning, state_root, error)
        return False


@task(name="record-post-merge", cache_policy=NO_CACHE, timeout_seconds=120)
def record_post_merge(learning: LearningConfig, state_root: Path, repository: str,
                      outcomes: PostMergeOutcomes) -> int:
    """Mark the attempts of mendflow's landed commits ``kept`` or ``reverted`` (the
    evolution loop's post-merge watch; see :func:`mendflow.core.learning.post_merge_outcomes`).

    Args:
        learning: the ``learning`` section.
        state_root: the state directory.
        repository: the repository root (as recorded in attempts).
        outcomes: the commits kept and reverted since the previous cycle.

    Returns:
        Attempt rows updated; 0 when learning is off or the store is down (reported).
    """
    if not learning.enabled or not (outcomes.kept or outcomes.reverted):
        return 0
    try:
        store = _store(learning, state_root)
        total = 0
        for outcome, commits in (("kept", outcomes.kept), ("reverted", outcomes.reverted)):
            total += store.record_post_merge(
                repository, [c.commit for c in commits], outcome,
                [(c.mission_id or "", c.patch_id or "") for c in commits])
        return total
    except STORE_ERRORS as error:
        _unavailable(learning, state_root, error)
        return 0


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
