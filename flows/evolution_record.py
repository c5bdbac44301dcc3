"""The end of one evolution cycle: back-off, memory, history, artifacts, dashboard, events.

Composed by :func:`mendflow.flows.evolution.evolution_cycle` (:func:`finish`), and
:func:`publish_dashboard` also just before a semi-autonomous cycle pauses for approval.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from prefect import get_run_logger, runtime

from mendflow.core.errors import MendflowError
from mendflow.core.evolution import CycleRecord
from mendflow.flows.evolution_steps import Cycle, notify
from mendflow.infra.evolution_store import append_record, loop_key, read_history, write_memory
from mendflow.tasks.deliver import PullDelivery, list_open_pulls, update_dashboard
from mendflow.tasks.evolve import emit_cycle_events, publish_cycle
from mendflow.tasks.evolve.dashboard import find_pending_approvals, render_dashboard
from mendflow.tasks.evolve.deployment import apply_interval

__all__ = ["DASHBOARD_TITLE", "finish", "publish_dashboard", "runs_own_code"]

DASHBOARD_TITLE = "mendflow dashboard"


def artifact_key(target: str) -> str:
    """The key prefix of the loop's artifacts: ``evolution-<repo key>`` (lower case)."""
    return "evolution-" + loop_key(target).lower().replace("_", "-").replace(".", "-")


def finish(cycle: Cycle, record: CycleRecord) -> CycleRecord:
    """Back off or come back, save the memory, append the record, publish, emit, notify."""
    config, logger = cycle.config, get_run_logger()
    before = cycle.memory.interval_s or config.evolution.interval_s
    record = apply_backoff(cycle, record, cycle.delivery)
    if runtime.deployment.id and record.interval_s and record.interval_s != before:
        logger.info("interval %g s → %g s", before, record.interval_s)
        apply_interval(str(runtime.deployment.id), record.interval_s)
    record = append_record(cycle.folder, record)
    publish_dashboard(cycle, record)
    emit_cycle_events(cycle.target, record)
    if record.limit:
        logger.warning("cycle %d opened nothing more: %s", record.cycle, record.limit)
    if record.below_thresholds:
        notify(cycle, f"mendflow: {cycle.target} below thresholds",
               "; ".join(record.below_thresholds))
    logger.info("evolution cycle %d: %s in %.2f s (findings %d, accepted %d, PRs +%d -%d)",
                record.cycle, record.status, record.duration_s, record.findings,
                record.patches_accepted, record.prs_opened, record.prs_closed)
    return record


def publish_dashboard(cycle: Cycle, record: CycleRecord, before_wait: bool = False) -> str:
    """Render the dashboard; update the tracking issue (``delivery.dashboard``) and artifacts.

    Args:
        cycle: the cycle (its repository, config, delivery and own pending approval).
        record: the cycle's record (the one appended, or a provisional one).
        before_wait: the cycle is about to pause for approval: the open PRs are read
            from the forge (this cycle has not delivered yet) and the heading says so.

    Returns:
        The dashboard's markdown (also in the ``evolution-<key>-trend`` artifact).
    """
    logger = get_run_logger()
    pending = list(cycle.waiting)
    open_pulls = list(cycle.delivery.open_pulls)
    live = cycle.root is not None and record.status != "unchanged"
    if live:
        try:
            known = {p.run_id for p in pending}
            pending += [w for w in find_pending_approvals(str(cycle.root))
                        if w.run_id not in known]
        except Exception as err:  # the API is down: the dashboard still goes out
            logger.warning("could not list pending approvals: %s", err)
    if live and before_wait and cycle.config.delivery.forge:
        try:
            open_pulls = list_open_pulls(cycle.root, cycle.config.delivery)
        except MendflowError as err:
            logger.warning("could not list open PRs: %s", err)
    heading = "### mendflow evolution: waiting for approval" if before_wait else None
    dashboard = render_dashboard(record, open_pulls, pending, heading)
    publish_cycle(artifact_key(cycle.target), read_history(cycle.folder), dashboard)
    if live and cycle.config.delivery.dashboard:
        try:
            update_dashboard(cycle.root, cycle.config.delivery, DASHBOARD_TITLE, dashboard)
        except MendflowError as err:
            logger.warning("dashboard not updated: %s", err)
    return dashboard


def apply_backoff(cycle: Cycle, record: CycleRecord, delivery: PullDelivery) -> CycleRecord:
    """Plateau counting and the interval (doubling up to max_interval_s; reset on a move)."""
    evo, memory = cycle.config.evolution, cycle.memory
    moved = record.head_after != record.head_before and record.status == "completed"
    plateau = 0 if record.patches_accepted else memory.plateau + 1
    interval = memory.interval_s or evo.interval_s
    if moved and record.head_before is not None:
        interval = evo.interval_s
    elif plateau >= evo.plateau_cycles:
        interval = min(evo.max_interval_s, interval * 2)
    now = datetime.now(timezone.utc)
    opened = [t for t in memory.opened_at
              if (now - datetime.fromisoformat(t)).total_seconds() < 86400]
    opened += [now.isoformat()] * len(delivery.opened)
    open_prs = tuple(dict.fromkeys([*memory.open_prs, *(p.number for p in delivery.opened)]))
    closed = {p.number for p in delivery.closed} | set(delivery.merged)
    restart = bool(moved and record.head_before and cycle.root
                   and (evo.auto_restart or runs_own_code(cycle.root)))
    if restart:
        get_run_logger().warning("the loop's own code changed (%s → %s): restart requested",
                                 (record.head_before or "?")[:10], (record.head_after or "?")[:10])
    cycle.memory = memory.model_copy(update={
        "restart_requested": restart or memory.restart_requested,
        "last_tip": record.head_after or memory.last_tip, "plateau": plateau,
        "interval_s": interval, "opened_at": tuple(opened),
        "open_prs": tuple(n for n in open_prs if n not in closed)})
    write_memory(cycle.folder, cycle.memory)
    return record.model_copy(update={"interval_s": interval, "restarted": restart})


def runs_own_code(root: Path) -> bool:
    """Does the loop maintain the checkout its own code (the ``mendflow`` package) runs from?"""
    import mendflow

    code = Path(mendflow.__file__).resolve().parent
    return code.is_relative_to(Path(root).resolve())
