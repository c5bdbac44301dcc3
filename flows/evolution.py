"""The evolution loop: one ``evolution-cycle`` flow run = one cycle on one repository.

::

    prepare_loop_repository → sync_with_remote (fast-forward only)
    → unchanged (tip unmoved, nothing pending)? → record "unchanged", end (cheap: no measuring)
    → check-pull-requests (what earlier cycles opened: merged? closed?)
    → maintenance-mission (subflow; prepares its branch only; its fixer is given only
      the finding categories ``evolution.generate`` switches on)
    → the watch: tests that passed at the previous tip and fail now → git bisect run
      (each step's tests in the sandbox) → a mendflow commit: revert (a PR; a revert
      commit pushed to the target branch under full autonomy) → a human's: report
    → approval (a semi-autonomous cycle pauses before any push or PR; the dashboard
      shows the wait)
    → deliver-pull-requests (push, open, dedupe, close stale, within the limits;
      full autonomy merges)
    → record: evolution_history.json, table + markdown artifacts, dashboard, events,
      notifications; back off after a plateau; ask for a restart when the loop's own
      code changed

The steps live in :mod:`mendflow.flows.evolution_steps` and
:mod:`mendflow.flows.evolution_record`. Served by ``mendflow evolve serve``
(:mod:`mendflow.deployments.evolve`).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from prefect import flow, get_run_logger, runtime

from mendflow.core.config import MendflowConfig, load_config
from mendflow.core.config_sources import effective_config
from mendflow.core.errors import DeliveryError, MendflowError
from mendflow.core.evolution import CycleRecord, LoopMemory
from mendflow.core.models import MissionResult
from mendflow.flows.evolution_record import finish, publish_dashboard
from mendflow.flows.evolution_steps import (
    Cycle,
    approve_and_deliver,
    record_post_merge_outcomes,
    watch_pulls,
    watch_regressions,
)
from mendflow.flows.mission import maintenance_mission
from mendflow.infra.evolution_store import append_record, is_git_url, read_history
from mendflow.tasks.approve import assess_patches, check_autonomy, deliverable
from mendflow.tasks.deliver import PullDelivery, sync_with_remote
from mendflow.tasks.evolve import (
    cycle_metrics,
    detected,
    fix_categories,
    head_branch,
    prepare_loop_repository,
    thresholds_missed,
)
from mendflow.tasks.evolve.dashboard import waiting_request
from mendflow.tasks.evolve.deployment import find_skipped


@flow(name="evolution-cycle", log_prints=False)
def evolution_cycle(path: str = ".", config_file: str | None = None) -> CycleRecord:
    """Run one cycle of the evolution loop on the repository at ``path`` (or a git URL).

    Args:
        path: a repository (or a path inside one), or a git URL (cloned once into
            the loop's state directory).
        config_file: a YAML config (``evolution`` and ``delivery`` sections); None = defaults.

    Returns:
        The :class:`CycleRecord` appended to ``evolution_history.json`` (status
        completed | unchanged | failed).

    Raises:
        ConfigError: the config file is invalid (nothing is recorded then).
    """
    config = _load(path, config_file)
    cycle = Cycle(path, config, config_file)
    logger = get_run_logger()
    if runtime.deployment.id:
        _record_skipped(cycle, str(runtime.deployment.id))
    try:
        record = _run_cycle(cycle)
    except MendflowError as err:  # typed: recorded, resumable by the next cycle
        logger.error("evolution cycle failed: %s", err)
        record = cycle.record("failed", cycle.tip or cycle.memory.last_tip,
                              error=str(err).splitlines()[0])
        cycle.memory = cycle.memory.model_copy(update={"pending": True})
    except Exception as err:  # a bug: recorded too, and the flow run fails
        cycle.memory = cycle.memory.model_copy(update={"pending": True})
        finish(cycle, cycle.record("failed", cycle.tip or cycle.memory.last_tip,
                                    error=f"unexpected {type(err).__name__}: {err}"[:300]))
        raise
    return finish(cycle, record)


def _load(path: str, config_file: str | None) -> MendflowConfig:
    """The config: ``config_file`` over the repository's own (.mendflow.yaml, pyproject)."""
    if is_git_url(path):
        return load_config(config_file)
    target = Path(path).expanduser().resolve()
    root = next((p for p in (target, *target.parents) if (p / ".git").exists()), None)
    return effective_config(config_file, root).config


def _record_skipped(cycle: Cycle, deployment_id: str) -> None:
    """Append a ``skipped`` record for each overlapping run Prefect cancelled (limit 1)."""
    history = read_history(cycle.folder)
    since = datetime.fromisoformat(history[-1].started_at) if history else \
        datetime.now(timezone.utc) - timedelta(days=1)
    try:
        skipped = find_skipped(deployment_id, since - timedelta(seconds=1))
    except Exception as err:  # the API is down: the next cycle looks again
        get_run_logger().warning("could not read skipped cycles: %s", err)
        return
    known = set(cycle.memory.skipped_runs)
    for run_id, when in skipped:
        if run_id in known:
            continue
        append_record(cycle.folder, CycleRecord(
            cycle=1, started_at=when, duration_s=0.0, status="skipped", flow_run_id=run_id,
            head_before=cycle.memory.last_tip, head_after=cycle.memory.last_tip,
            note="skipped: the previous cycle was still running (deployment concurrency 1)"))
        known.add(run_id)
    cycle.memory = cycle.memory.model_copy(update={"skipped_runs": tuple(sorted(known))[-100:]})


def _run_cycle(cycle: Cycle) -> CycleRecord:
    config, logger = cycle.config, get_run_logger()
    root = cycle.root = prepare_loop_repository(cycle.target, cycle.folder,
                                                config.approval.target_branch)
    branch = config.approval.target_branch or head_branch(root)
    if not branch:
        raise DeliveryError("HEAD is detached: no target branch", reason="no-target",
                            subject=str(root), hint="set approval.target_branch")
    tip = cycle.tip = sync_with_remote(root, config.delivery, branch)
    memory = cycle.memory
    if tip == memory.last_tip and not memory.pending:
        logger.info("evolution: %s unchanged at %s and nothing pending: nothing measured",
                    branch, tip[:10])
        return cycle.record("unchanged", tip, note="target branch unmoved")
    watch_pulls(cycle, root)
    # one mission per tip: a cycle killed half-way, or one whose delivery failed, is
    # resumed by the next cycle on the same tip from the mission's cached steps
    mission_id = f"evo-{tip[:12]}-{hashlib.sha256(cycle.folder.name.encode()).hexdigest()[:8]}"
    result = maintenance_mission(path=str(root), config_file=_mission_config(cycle),
                                 fixer=config.evolution.provider, mission_id=mission_id)
    cycle.fields.update(cycle_metrics(result))
    cycle.fields["mission_id"] = result.mission_id
    _count_detected(cycle, result)
    if config.evolution.watch and memory.last_tip and memory.last_tip != tip:
        watch_regressions(cycle, root, result, branch, tip)
        record_post_merge_outcomes(cycle, root, result, tip)
    # the request and the pause belong to this cycle's run (`mendflow approve RUN_ID`)
    result = result.model_copy(update={"flow_run_id": str(runtime.flow_run.id or "") or
                                       result.flow_run_id})
    _show_wait(cycle, result, tip)
    delivery = cycle.delivery = approve_and_deliver(cycle, result, branch)
    cycle.fields.update(_delivery_fields(delivery, cycle.fields))
    tests = result.baseline_tests
    cycle.memory = cycle.memory.model_copy(update={
        "failing_tests": tests.failing if tests else (),
        "passing_tests": tests.passing if tests else (),
        "pending": bool(delivery.error or delivery.held or cycle.fields.get("error"))})
    return cycle.record("completed", tip)


def _mission_config(cycle: Cycle) -> str:
    """The mission's config: the loop's, without delivery (the cycle delivers), with the
    detect switches applied (``evolution.detect.todos`` → ``tools.todo.enabled``, ``logs``
    → ``tools.logs.enabled``) and the fixer given only the categories ``evolution.generate``
    switches on (``mission.fix_categories``): a disabled kind costs no fixer call."""
    evolution = cycle.config.evolution
    data = cycle.config.model_dump(mode="json")
    data["approval"]["autonomy"] = None
    data["tools"]["todo"]["enabled"] = data["tools"]["todo"]["enabled"] and evolution.detect.todos
    data["tools"]["logs"]["enabled"] = data["tools"]["logs"]["enabled"] and evolution.detect.logs
    wanted = fix_categories(evolution)
    configured = data["mission"].get("fix_categories")
    data["mission"]["fix_categories"] = [c for c in wanted if configured is None
                                         or c in configured]
    path = cycle.folder / "mission-config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


def _count_detected(cycle: Cycle, result: MissionResult) -> None:
    kept = [f for f in result.findings if detected(cycle.config.evolution, f.source, f.category)]
    cycle.fields["findings"] = len(kept)
    missed = thresholds_missed(cycle.config.evolution, cycle.fields.get("coverage"), len(kept))
    cycle.fields["below_thresholds"] = missed


def _show_wait(cycle: Cycle, result: MissionResult, tip: str) -> None:
    """Before a semi-autonomous cycle pauses: the dashboard shows the pending approval."""
    level = check_autonomy(cycle.config.evolution.autonomy) or "autonomous"
    if not deliverable(result):
        return
    asked = [n for n in assess_patches(result, level, cycle.config) if n.reasons]
    if not asked:
        return
    cycle.waiting = [waiting_request(result.flow_run_id, str(runtime.flow_run.name or ""),
                                     result, len(asked))]
    publish_dashboard(cycle, cycle.record("completed", tip), before_wait=True)


def _delivery_fields(delivery: PullDelivery, earlier: dict) -> dict:
    return {"prs_opened": len(delivery.opened), "prs_closed": len(delivery.closed),
            "prs_merged": earlier.get("prs_merged", 0) + len(delivery.merged),
            "pull_requests": tuple(p.url for p in delivery.opened), "limit": delivery.limit,
            "held": delivery.held, "error": delivery.error or earlier.get("error")}


__all__ = ["LoopMemory", "evolution_cycle"]
