"""The maintenance mission: one Prefect flow run of the M-T-D-V cycle.

The flow only composes tasks and branches on their typed results::

    resolve_target → snapshot_user_checkout → create_sandbox → prepare_target_env
    → measure baseline (pytest+coverage, ruff, mypy, bandit, TODOs: concurrently)
    → repeat up to max_iterations, until the target score:
          plan_fixes → for each group: propose_patch → apply_patch → check_patch_syntax
          → measure → judge_patch → commit_accepted_patch | reset_sandbox
          (a rejected candidate's gate output goes back to the fixer, up to max_attempts)
    → write_mission_reports → publish_report → verify_user_checkout

Every git change happens in the sandbox worktree on ``mendflow/<mission-id>``;
the user's checkout is verified untouched at the end.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, runtime
from prefect.utilities.annotations import opaque

from mendflow.core.config import MendflowConfig
from mendflow.core.models import MissionResult, QualityScore, RepoTarget
from mendflow.flows.approval import approve_and_deliver
from mendflow.flows.cycle import MissionState, back_up_baseline, measure, run_iterations
from mendflow.infra.budget import release_mission_budgets
from mendflow.infra.layout import mission_dir
from mendflow.infra.progress import report_progress
from mendflow.tasks.bookkeeping import (
    close_mission,
    load_mission_config,
    name_flow_run,
    new_mission_id,
    register_mission,
)
from mendflow.tasks.environment import prepare_target_env
from mendflow.tasks.preflight import (
    check_crash_loop,
    check_free_disk,
    disk_paths,
    lock_repository,
    plan_fixer_timeouts,
    plan_timeouts,
    unlock_repository,
)
from mendflow.tasks.report import publish_report, write_mission_reports
from mendflow.tasks.sandbox import create_sandbox, finish_replay, rewind_sandbox
from mendflow.tasks.vcs import resolve_target, snapshot_user_checkout, verify_user_checkout


@flow(name="maintenance-mission", log_prints=False)
def maintenance_mission(
    path: str = ".",
    config_file: str | None = None,
    mission_id: str | None = None,
    scope: str | None = None,
    dry_run: bool | None = None,
    backup_only: bool | None = None,
    max_iterations: int | None = None,
    target_score: float | None = None,
    fixer: str | None = None,
    autonomy: str | None = None,
) -> MissionResult:
    """Run one maintenance mission on the repository that contains ``path``.

    Args:
        path: a repository, a directory inside one, or a file inside one.
        config_file: a YAML config (see README, "Configuration"); None = defaults.
        mission_id: the mission's id (``[a-z0-9-]``); None = derived from the flow run id.
        scope: auto | project | directory | file (overrides ``mission.scope``).
        dry_run: detect and propose, commit nothing.
        backup_only: record the baseline and backups only.
        max_iterations: M-T-D-V cycles at most (overrides the config).
        target_score: stop once the 0-100 quality score reaches this.
        fixer: ruff | anthropic | chain (overrides ``fixer.type``).
        autonomy: interactive | semi_autonomous | autonomous | full_autonomous: deliver
            accepted patches to the target branch under that approval policy
            (default: the config's; none = only the mission branch is prepared).

    Returns:
        The :class:`MissionResult` (also written as session_data.json).

    Raises:
        MendflowError: a typed error for bad input or an unusable environment.
    """
    config = load_mission_config(config_file, fixer, path, scope=scope, dry_run=dry_run,
                                 backup_only=backup_only, max_iterations=max_iterations,
                                 target_score=target_score)
    flow_run_id = str(runtime.flow_run.id or "") or None
    if flow_run_id and runtime.deployment.id:  # served: an auto-resumed run may be looping
        check_crash_loop(flow_run_id, config.deployment.max_auto_resumes)
    mission_id = mission_id or new_mission_id(flow_run_id or "")
    target = resolve_target(path, config.mission.scope)
    if flow_run_id:
        name_flow_run(flow_run_id, mission_id, target.root)
    parameters = {"path": str(path), "config_file": config_file, "scope": scope,
                  "dry_run": dry_run, "backup_only": backup_only,
                  "max_iterations": max_iterations, "target_score": target_score,
                  "fixer": fixer, "autonomy": autonomy}
    record = register_mission(mission_id, str(target.root), parameters, flow_run_id,
                              config.mission.state_dir)
    lock_repository(target.root, mission_id, config.mission.state_dir)
    try:
        low = check_free_disk(disk_paths(target.root, config.mission.state_dir), config.health)
        if low is not None:  # pause before any git operation could fail half-way
            return _paused_at_start(mission_id, flow_run_id, target, config, low.found)
        return _run(mission_id, flow_run_id, target, config, record.started_at, autonomy)
    finally:
        unlock_repository(target.root, mission_id)


def _run(mission_id: str, flow_run_id: str | None, target: RepoTarget, config: MendflowConfig,
         started_at: str, autonomy: str | None) -> MissionResult:
    """Baseline, the M-T-D-V cycles, approval, reports: the locked part of a mission."""
    logger = get_run_logger()
    before = snapshot_user_checkout(target.root)
    sandbox = create_sandbox(target, mission_id, config.mission.state_dir)
    # A resumed mission replays from its base commit: cached steps return at once
    # and every commit is re-created identically (same content, same date).
    rewind_sandbox(sandbox, sandbox.base_commit)
    env = prepare_target_env(sandbox, config.environment, config.mission.state_dir)
    config = config.model_copy(update={"tools": plan_timeouts(mission_id, target.root, config),
                                       "fixer": plan_fixer_timeouts(mission_id, target.root, config)})
    logger.info("mission %s on %s (scope %s: %s), sandbox %s", mission_id, target.root,
                target.scope, target.scope_path, sandbox.path)

    baseline = measure(sandbox, env, config, label="baseline")
    state = MissionState(mission_id=mission_id, target=target, sandbox=sandbox, env=env,
                         config=config, baseline=baseline, current=baseline,
                         backups_dir=mission_dir(mission_id, config.mission.state_dir) / "backups",
                         started_at=started_at)
    if config.mission.backup_only:
        state = back_up_baseline(state)
    else:
        try:
            state = run_iterations(state)
        finally:
            release_mission_budgets(mission_id)  # the in-process LLM budget of this mission
        if not finish_replay(sandbox):
            logger.warning("the replay of %s took another path than before the interruption; "
                           "the earlier commits stay under refs/mendflow/%s/replay",
                           mission_id, mission_id)

    # The mission's own work must have left the checkout alone. (Delivery, after an
    # approval, is the one thing that may move the target branch, and the user may
    # commit during a long approval wait: it is checked by delivery itself.)
    verify_user_checkout(target.root, before)
    result = approve_and_deliver(_result(state, flow_run_id), config, target, sandbox,
                                 autonomy)
    markdown = write_mission_reports(opaque(result), opaque(state.validations), state.backups,
                                     Path(result.report_dir))
    publish_report(opaque(result), markdown)
    close_mission(result, config.mission.state_dir)
    return result


def _paused_at_start(mission_id: str, flow_run_id: str | None, target: RepoTarget,
                     config: MendflowConfig, found: str) -> MissionResult:
    """The result of a mission paused before it started (low disk): resumable, nothing done."""
    reason = (f"paused: low disk space ({found}); free space, then "
              f"`mendflow mission resume {mission_id}`")
    report_progress("health", reason)
    result = MissionResult(
        mission_id=mission_id, flow_run_id=flow_run_id, status="paused",
        repository=str(target.root), base_commit=target.head_commit,
        branch=f"mendflow/{mission_id}", findings=(), patches=(),
        quality_score=QualityScore(before=0.0, after=0.0),
        report_dir=str(mission_dir(mission_id, config.mission.state_dir) / "report"),
        stop_reason=reason, exit_code=3)
    close_mission(result, config.mission.state_dir)
    return result


def _result(state: MissionState, flow_run_id: str | None) -> MissionResult:
    """The machine-readable result of the mission's state."""
    config, sandbox, baseline = state.config, state.sandbox, state.baseline
    report_dir = Path(config.mission.report_dir or
                      mission_dir(state.mission_id, config.mission.state_dir) / "report")
    return MissionResult(
        mission_id=state.mission_id, flow_run_id=flow_run_id,
        status="paused" if state.paused else "completed", repository=str(state.target.root),
        base_commit=sandbox.base_commit, branch=sandbox.branch,
        findings=tuple(state.scoped(baseline.findings)), patches=tuple(state.outcomes),
        quality_score=QualityScore(before=baseline.score, after=state.current.score),
        report_dir=str(report_dir), iterations=state.iterations, stop_reason=state.stop_reason,
        exit_code=state.exit_code(), dry_run=config.mission.dry_run,
        backup_only=config.mission.backup_only, worktree=str(sandbox.path),
        final_findings=tuple(state.scoped(state.current.findings)), llm_usage=state.llm_usage,
    )
