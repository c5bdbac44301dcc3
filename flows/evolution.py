"""The evolution loop: one ``evolution-cycle`` flow run = one cycle on one repository.

::

    prepare_loop_repository → sync_with_remote (fast-forward only)
    → unchanged (tip unmoved, nothing pending)? → record "unchanged", end (cheap: no measuring)
    → check-pull-requests (what earlier cycles opened: merged? closed?)
    → maintenance-mission (subflow; prepares its branch only)
    → the watch: tests that passed at the previous tip and fail now → git bisect run
         → a mendflow commit: revert (a PR; directly under full autonomy) → a human's: report
    → approval (the paused run of a semi-autonomous cycle comes before any PR)
    → deliver-pull-requests (push, open, dedupe, close stale, within the limits)
    → record: evolution_history.json, table + markdown artifacts, events, notifications
    → back off after a plateau; ask for a restart when the loop's own code changed

Served by ``mendflow evolve serve`` (:mod:`mendflow.deployments.evolve`).
"""

from __future__ import annotations

import hashlib
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from prefect import flow, get_run_logger, runtime

from mendflow.core.config import Interpreter, MendflowConfig, load_config
from mendflow.core.config_sources import effective_config
from mendflow.core.errors import DeliveryError, MendflowError
from mendflow.core.evolution import CycleRecord, LoopState, Regression
from mendflow.core.learning import post_merge_outcomes
from mendflow.core.models import MissionResult, Sandbox
from mendflow.flows.approval import approve_patches, approved_ids
from mendflow.flows.mission import maintenance_mission
from mendflow.infra.evolution_store import (
    append_record,
    is_git_url,
    loop_dir,
    loop_key,
    read_history,
    read_state,
    write_state,
)
from mendflow.infra.layout import StateLayout
from mendflow.tasks.approve import check_autonomy, notify_once
from mendflow.tasks.deliver import (
    PullDelivery,
    check_pulls,
    deliver_pulls,
    deliver_revert,
    sync_with_remote,
    update_dashboard,
)
from mendflow.tasks.evolve import (
    cycle_metrics,
    detected,
    emit_cycle_events,
    find_regressions,
    generated,
    head_branch,
    prepare_loop_repository,
    publish_cycle,
    render_dashboard,
    thresholds_missed,
)
from mendflow.tasks.evolve.deployment import apply_interval, find_skipped
from mendflow.tasks.evolve.watch import landed_commits, with_trailers
from mendflow.tasks.learn.record import record_post_merge

DASHBOARD_TITLE = "mendflow dashboard"


class Cycle:
    """What one cycle accumulates (flow-local)."""

    def __init__(self, target: str, config: MendflowConfig, config_file: str | None):
        self.t0 = time.monotonic()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.target, self.config, self.config_file = target, config, config_file
        self.layout = StateLayout.resolve(config.mission.state_dir)
        self.folder = loop_dir(self.layout, target)
        self.state = read_state(self.folder)
        self.fields: dict = {}
        self.regressions: list[Regression] = []
        self.root: Path | None = None
        self.tip: str | None = None
        self.delivery = PullDelivery()

    def record(self, status: str, head_after: str | None, **fields) -> CycleRecord:
        data = {**self.fields, **fields}
        return CycleRecord(cycle=1, started_at=self.started_at, status=status,
                           duration_s=round(time.monotonic() - self.t0, 3),
                           head_before=self.state.last_tip, head_after=head_after,
                           regressions=tuple(self.regressions),
                           flow_run_id=str(runtime.flow_run.id or "") or None, **data)


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
        record = cycle.record("failed", cycle.tip or cycle.state.last_tip,
                              error=str(err).splitlines()[0])
        cycle.state = cycle.state.model_copy(update={"pending": True})
    except Exception as err:  # a bug: recorded too, and the flow run fails
        cycle.state = cycle.state.model_copy(update={"pending": True})
        _finish(cycle, cycle.record("failed", cycle.tip or cycle.state.last_tip,
                                    error=f"unexpected {type(err).__name__}: {err}"[:300]))
        raise
    return _finish(cycle, record)


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
    known = set(cycle.state.skipped_runs)
    for run_id, when in skipped:
        if run_id in known:
            continue
        append_record(cycle.folder, CycleRecord(
            cycle=1, started_at=when, duration_s=0.0, status="skipped", flow_run_id=run_id,
            head_before=cycle.state.last_tip, head_after=cycle.state.last_tip,
            note="skipped: the previous cycle was still running (deployment concurrency 1)"))
        known.add(run_id)
    cycle.state = cycle.state.model_copy(update={"skipped_runs": tuple(sorted(known))[-100:]})


def _run_cycle(cycle: Cycle) -> CycleRecord:
    config, logger = cycle.config, get_run_logger()
    root = cycle.root = prepare_loop_repository(cycle.target, cycle.folder,
                                                config.approval.target_branch)
    branch = config.approval.target_branch or head_branch(root)
    if not branch:
        raise DeliveryError("HEAD is detached: no target branch", reason="no-target",
                            subject=str(root), hint="set approval.target_branch")
    tip = sync_with_remote(root, config.delivery, branch)
    cycle.tip = tip
    state = cycle.state
    if tip == state.last_tip and not state.pending:
        logger.info("evolution: %s unchanged at %s and nothing pending: nothing measured",
                    branch, tip[:10])
        return cycle.record("unchanged", tip, note="target branch unmoved")
    _watch_pulls(cycle, root)
    # one mission per tip: a cycle killed half-way, or one whose delivery failed, is
    # resumed by the next cycle on the same tip from the mission's cached steps
    mission_id = f"evo-{tip[:12]}-{hashlib.sha256(cycle.folder.name.encode()).hexdigest()[:8]}"
    result = maintenance_mission(path=str(root), config_file=_mission_config(cycle),
                                 fixer=config.evolution.provider, mission_id=mission_id)
    cycle.fields.update({k: v for k, v in cycle_metrics(result).items()})
    cycle.fields["mission_id"] = result.mission_id
    _count_detected(cycle, result)
    if config.evolution.watch and state.last_tip and state.last_tip != tip:
        _watch_regressions(cycle, root, result, branch, tip)
        _record_post_merge(cycle, root, result, tip)
    delivery = cycle.delivery = _approve_and_deliver(cycle, result, branch)
    cycle.fields.update(_delivery_fields(delivery, cycle.fields.get("error")))
    tests = result.baseline_tests
    cycle.state = cycle.state.model_copy(update={
        "failing_tests": tests.failing if tests else (),
        "passing_tests": tests.passing if tests else (),
        "pending": bool(delivery.error or delivery.held or cycle.fields.get("error"))})
    return cycle.record("completed", tip)


def _mission_config(cycle: Cycle) -> str:
    """The mission's config: the loop's, without delivery (the cycle delivers) and with the
    detect switches applied (``evolution.detect.todos`` → ``tools.todo.enabled``)."""
    data = cycle.config.model_dump(mode="json")
    data["approval"]["autonomy"] = None
    data["tools"]["todo"]["enabled"] = data["tools"]["todo"]["enabled"] and \
        cycle.config.evolution.detect.todos
    path = cycle.folder / "mission-config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


def _count_detected(cycle: Cycle, result: MissionResult) -> None:
    kept = [f for f in result.findings if detected(cycle.config.evolution, f.source, f.category)]
    cycle.fields["findings"] = len(kept)
    missed = thresholds_missed(cycle.config.evolution, cycle.fields.get("coverage"), len(kept))
    cycle.fields["below_thresholds"] = missed


def _watch_pulls(cycle: Cycle, root: Path) -> None:
    """What became of the PRs earlier cycles opened (merged, closed by a human)."""
    numbers = list(cycle.state.open_prs)
    if not numbers:
        return
    try:
        states = check_pulls(root, cycle.config.delivery, numbers)
    except MendflowError as err:  # the watch of PRs is retried next cycle
        get_run_logger().warning("could not read earlier PRs: %s", err)
        cycle.fields["error"] = str(err).splitlines()[0]
        return
    merged = [n for n, s in states.items() if s == "merged"]
    cycle.fields["prs_merged"] = len(merged)
    cycle.state = cycle.state.model_copy(update={
        "open_prs": tuple(n for n in numbers if states.get(n, "open") == "open")})
    if merged:
        get_run_logger().info("merged since the last cycle: %s", ", ".join(f"#{n}" for n in merged))


def _watch_regressions(cycle: Cycle, root: Path, result: MissionResult, branch: str,
                       tip: str) -> None:
    """Tests that passed at the previous tip and fail now: bisect, revert mendflow's culprit."""
    tests = result.baseline_tests
    if tests is None:
        return
    before = set(cycle.state.failing_tests)
    new = [t for t in tests.failing if t not in before]
    if not new:
        return
    logger = get_run_logger()
    work = cycle.layout.root / "evolution-work"
    found = find_regressions(root, cycle.state.last_tip or "", tip, new,
                             str(_target_python(result, cycle.config)),
                             cycle.config.evolution.bisect_timeout_s, work)
    direct = cycle.config.evolution.autonomy == "full_autonomous"
    reverted: set[str] = set()
    for regression in found:
        logger.warning("regression: %s fails since %s (%s)", regression.test,
                       (regression.commit or "?")[:10],
                       "mendflow's commit" if regression.delivered_by_mendflow else
                       regression.author or "unknown")
        if not (regression.delivered_by_mendflow and regression.commit):
            cycle.regressions.append(regression)
            continue
        action = "reverted" if direct else "revert-proposed"
        if regression.commit not in reverted:
            try:
                commit, url = deliver_revert(root, cycle.config.delivery, branch, tip,
                                             regression.commit, f"{regression.test} fails",
                                             work, direct)
                reverted.add(regression.commit)
                detail = url or commit
            except MendflowError as err:
                action, detail = "revert-failed", str(err).splitlines()[0]
        else:
            detail = "reverted with an earlier test's regression"
        cycle.regressions.append(regression.model_copy(update={"action": action,
                                                               "detail": detail}))
    cycle.fields["reverts"] = len(reverted)
    _notify(cycle, "mendflow: regression found", "\n".join(
        f"- {r.test}: first bad commit {(r.commit or '?')[:10]} "
        f"({'mendflow' if r.delivered_by_mendflow else r.author}): {r.action} {r.detail}"
        for r in cycle.regressions))


def _record_post_merge(cycle: Cycle, root: Path, result: MissionResult, tip: str) -> None:
    """mendflow's commits that landed since the previous tip: ``kept`` when the watch found
    no regression of theirs (and nothing reverts them), ``reverted`` when a revert landed or
    the watch reverted them now; written to the outcome store (insights' revert rate)."""
    try:
        landed = landed_commits(root, cycle.state.last_tip or "", tip)
    except MendflowError as err:
        get_run_logger().warning("post-merge outcomes not recorded: %s", err)
        return
    culprits = {r.commit for r in cycle.regressions if r.delivered_by_mendflow and r.commit}
    reverted = {r.commit for r in cycle.regressions if r.action == "reverted" and r.commit}
    outcomes = post_merge_outcomes(landed, culprits, reverted, result.baseline_tests is not None)
    outcomes = outcomes.model_copy(update={"reverted": tuple(with_trailers(root, outcomes.reverted))})
    if outcomes.kept or outcomes.reverted:
        rows = record_post_merge(cycle.config.learning, cycle.layout.root, result.repository,
                                 outcomes)
        get_run_logger().info("post-merge: %d of mendflow's commits kept, %d reverted "
                              "(%d attempts marked)", len(outcomes.kept),
                              len(outcomes.reverted), rows)


def _target_python(result: MissionResult, config: MendflowConfig) -> Path:
    """The interpreter the mission tested with (the same cached environment)."""
    if isinstance(config.environment, Interpreter):
        return Path(config.environment.python)
    from mendflow.tasks.environment import prepare_target_env

    sandbox = Sandbox(mission_id=result.mission_id, path=Path(result.worktree or
                                                              result.repository),
                      branch=result.branch, base_commit=result.base_commit,
                      repo_root=Path(result.repository))
    try:
        return prepare_target_env(sandbox, config.environment, config.mission.state_dir).python
    except MendflowError:
        return Path(sys.executable)


def _approve_and_deliver(cycle: Cycle, result: MissionResult, branch: str) -> PullDelivery:
    config = cycle.config
    level = check_autonomy(config.evolution.autonomy) or "autonomous"
    needs, decision, _ = approve_patches(result, config, level, branch)
    categories = {f.id: f.category for f in result.findings}
    approved = [p for p in approved_ids(needs, decision)
                if all(generated(config.evolution, categories.get(f, "lint"))
                       for f in next((x.finding_ids for x in result.patches if x.id == p), ()))]
    approver = (decision.approver if decision and decision.approved_ids else None) \
        or f"mendflow ({level})"
    if not config.delivery.remote and not config.delivery.forge:
        return PullDelivery()
    return deliver_pulls(result, approved, needs, approver, config.delivery, branch,
                         cycle.state.opened_at, cycle.layout.root / "evolution-work",
                         merge=level == "full_autonomous")


def _delivery_fields(delivery: PullDelivery, earlier_error: str | None) -> dict:
    return {"prs_opened": len(delivery.opened), "prs_closed": len(delivery.closed),
            "pull_requests": tuple(p.url for p in delivery.opened), "limit": delivery.limit,
            "held": delivery.held, "error": delivery.error or earlier_error}


def _finish(cycle: Cycle, record: CycleRecord) -> CycleRecord:
    """Back off or come back, save the state, append the record, publish, emit, notify."""
    config, logger = cycle.config, get_run_logger()
    delivery = cycle.delivery
    before = cycle.state.interval_s or config.evolution.interval_s
    record = _apply_backoff(cycle, record, delivery)
    if runtime.deployment.id and record.interval_s and record.interval_s != before:
        logger.info("interval %g s → %g s", before, record.interval_s)
        apply_interval(str(runtime.deployment.id), record.interval_s)
    record = append_record(cycle.folder, record)
    history = read_history(cycle.folder)
    dashboard = render_dashboard(record, delivery.open_pulls)
    key = "evolution-" + loop_key(cycle.target).lower().replace("_", "-").replace(".", "-")
    publish_cycle(key, history, dashboard)
    if record.status != "unchanged" and config.delivery.dashboard and cycle.root:
        try:
            update_dashboard(cycle.root, config.delivery, DASHBOARD_TITLE, dashboard)
        except MendflowError as err:
            logger.warning("dashboard not updated: %s", err)
    emit_cycle_events(cycle.target, record)
    if record.limit:
        logger.warning("cycle %d opened nothing more: %s", record.cycle, record.limit)
    if record.below_thresholds:
        _notify(cycle, f"mendflow: {cycle.target} below thresholds",
                "; ".join(record.below_thresholds))
    logger.info("evolution cycle %d: %s in %.2f s (findings %d, accepted %d, PRs +%d -%d)",
                record.cycle, record.status, record.duration_s, record.findings,
                record.patches_accepted, record.prs_opened, record.prs_closed)
    return record


def _apply_backoff(cycle: Cycle, record: CycleRecord, delivery: PullDelivery) -> CycleRecord:
    """Plateau counting and the interval (doubling up to max_interval_s; reset on a move)."""
    evo, state = cycle.config.evolution, cycle.state
    moved = record.head_after != record.head_before and record.status == "completed"
    plateau = 0 if record.patches_accepted else state.plateau + 1
    interval = state.interval_s or evo.interval_s
    if moved and record.head_before is not None:
        interval = evo.interval_s
    elif plateau >= evo.plateau_cycles:
        interval = min(evo.max_interval_s, interval * 2)
    now = datetime.now(timezone.utc)
    opened = [t for t in state.opened_at
              if (now - datetime.fromisoformat(t)).total_seconds() < 86400]
    opened += [now.isoformat()] * len(delivery.opened)
    open_prs = tuple(dict.fromkeys([*state.open_prs, *(p.number for p in delivery.opened)]))
    closed = {p.number for p in delivery.closed}
    restart = bool(moved and record.head_before and cycle.root
                   and (evo.auto_restart or runs_own_code(cycle.root)))
    if restart:
        get_run_logger().warning("the loop's own code changed (%s → %s): restart requested",
                                 (record.head_before or "?")[:10], (record.head_after or "?")[:10])
    cycle.state = state.model_copy(update={
        "restart_requested": restart or state.restart_requested,
        "last_tip": record.head_after or state.last_tip, "plateau": plateau,
        "interval_s": interval, "opened_at": tuple(opened),
        "open_prs": tuple(n for n in open_prs if n not in closed)})
    write_state(cycle.folder, cycle.state)
    return record.model_copy(update={"interval_s": interval, "restarted": restart})


def runs_own_code(root: Path) -> bool:
    """Does the loop maintain the checkout its own code (the ``mendflow`` package) runs from?"""
    import mendflow

    code = Path(mendflow.__file__).resolve().parent
    return code.is_relative_to(Path(root).resolve())


def _notify(cycle: Cycle, subject: str, body: str) -> None:
    block = cycle.config.evolution.notify_block or cycle.config.approval.notify_block
    if not block:
        return
    state = notify_once(block, subject, body, None, None, return_state=True)
    if state.is_failed():
        get_run_logger().warning("notification through %s failed: %s", block, state.message)


__all__ = ["LoopState", "evolution_cycle"]
