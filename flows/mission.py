"""The maintenance mission: one Prefect flow run of the M-T-D-V cycle.

The flow only composes tasks and branches on their typed results::

    resolve_target → snapshot_user_checkout → create_sandbox → prepare_target_env
    → measure baseline (pytest+coverage, ruff, mypy, bandit, TODOs: concurrently)
    → repeat up to max_iterations, until the target score:
          plan_fixes (one group per defect) → for each group: propose_patch → apply_patch
          → check_patch_syntax → the tests that reach the change + linters → judge_patch
          → kept pending | reset_sandbox (the gate output goes back to the fixer, up to
          max_attempts); per batch: one full measure → judge_patch → commit_accepted_patch
          each, or bisect and blame (see flows/batch.py)
    → write_mission_reports → publish_report → verify_user_checkout

Every git change happens in the sandbox worktree on ``mendflow/<mission-id>``;
the user's checkout is verified untouched at the end.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, runtime
from prefect.utilities.annotations import opaque

from mendflow.core.checkpoint import LoopPosition, config_digest
from mendflow.core.config import MendflowConfig
from mendflow.core.fleet import repository_key
from mendflow.core.learning import choices_markdown
from mendflow.core.models import (
    BaselineTests,
    Isolation,
    MissionResult,
    QualityScore,
    RepoTarget,
    Sandbox,
    Timings,
    ToolFailure,
)
from mendflow.core.outcomes import suite_summary
from mendflow.flows.approval import approve_and_deliver
from mendflow.flows.checkpoint import restore_ledger
from mendflow.flows.cycle import back_up_baseline, run_iterations
from mendflow.flows.ledger import MissionLedger
from mendflow.flows.measure import measure
from mendflow.infra.budget import release_mission_budgets
from mendflow.infra.charts import preload_chart_library
from mendflow.infra.engine_limits import mission_slots
from mendflow.infra.layout import StateLayout
from mendflow.infra.progress import report_progress
from mendflow.tasks.bookkeeping import (
    close_mission,
    load_mission_config,
    name_flow_run,
    new_mission_id,
    register_mission,
)
from mendflow.tasks.checkpoint import load_checkpoint
from mendflow.tasks.environment import prepare_target_env
from mendflow.tasks.fleet import (
    clone_repository,
    push_mission_branch,
    record_mission_labels,
    record_slot,
)
from mendflow.tasks.learn.audit import audit_config, audit_delivery
from mendflow.tasks.learn.insights import analyze_codebase, append_report_sections, publish_insights
from mendflow.tasks.learn.record import load_priors, record_mission
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
from mendflow.tasks.sandbox import create_sandbox, finish_replay, hash_tree, rewind_sandbox
from mendflow.tasks.sandbox.isolation import decide_sandbox_isolation
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
    url: str | None = None,
    branch: str = "main",
    fleet: str | None = None,
    config_overrides: dict[str, Any] | None = None,
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
        url: a git URL (https, ssh, file://) or a path to clone: the mission runs on this
            host's own clone (``<state>/clones/``), not on ``path``, holds the
            repository's Prefect concurrency slot (and the fleet's), and pushes its
            mission branch back (never forced). None = work on ``path``.
        branch: the branch of ``url`` to maintain.
        fleet: the fleet that submitted the run (its concurrency limit), or None.
        config_overrides: a partial config merged over every config source, field by field.

    Returns:
        The :class:`MissionResult` (also written as session_data.json).

    Raises:
        MendflowError: a typed error for bad input or an unusable environment.
    """
    mission_fields = {"scope": scope, "dry_run": dry_run, "backup_only": backup_only,
                      "max_iterations": max_iterations, "target_score": target_score}
    # a fleet mission's repository is not here yet: its own config is read after the clone
    config = load_mission_config(config_file, fixer, None if url else path,
                                 overrides=config_overrides, **mission_fields)
    flow_run_id = str(runtime.flow_run.id or "") or None
    if flow_run_id and runtime.deployment.id:  # served: an auto-resumed run may be looping
        check_crash_loop(flow_run_id, config.deployment.max_auto_resumes)
    mission_id = mission_id or new_mission_id(flow_run_id or "")
    parameters = {"path": str(path), "config_file": config_file, **mission_fields,
                  "fixer": fixer, "autonomy": autonomy, "url": url, "branch": branch,
                  "fleet": fleet, "config_overrides": config_overrides}
    # the state directory, resolved once by load_mission_config: every step below gets it
    layout = StateLayout.of(config.mission.state_dir)
    if url is None:
        return _on_path(path, mission_id, flow_run_id, config, layout, parameters, autonomy)
    return _on_clone(url, branch, fleet, mission_id, flow_run_id, config, layout, parameters)


def _on_clone(url: str, branch: str, fleet: str | None, mission_id: str,
              flow_run_id: str | None, config: MendflowConfig, layout: StateLayout,
              parameters: dict[str, Any]) -> MissionResult:
    """A fleet mission: this host's clone of ``url``, under the repository's (and fleet's)
    concurrency slot, then its mission branch pushed back."""
    record_mission_labels(flow_run_id, url, branch, mission_id=mission_id)
    # one mission per repository on every worker of the server (and the fleet's limit)
    with mission_slots(repository_key(url), fleet, flow_run_id):
        record_slot(flow_run_id, "acquired")
        clone = clone_repository(url, branch, layout.root)
        mission_fields = {k: parameters[k] for k in
                          ("scope", "dry_run", "backup_only", "max_iterations", "target_score")}
        config = load_mission_config(parameters["config_file"], parameters["fixer"], str(clone),
                                     overrides=parameters["config_overrides"], **mission_fields)
        result = _on_path(str(clone), mission_id, flow_run_id, config,
                          StateLayout.of(config.mission.state_dir),
                          {**parameters, "path": str(clone)}, parameters["autonomy"])
        push_mission_branch(clone, result)
        record_slot(flow_run_id, "released")
    record_mission_labels(flow_run_id, url, branch, result)
    return result


def _on_path(path: str, mission_id: str, flow_run_id: str | None, config: MendflowConfig,
             layout: StateLayout, parameters: dict[str, Any],
             autonomy: str | None) -> MissionResult:
    """The mission on a local repository: this host's lock, then :func:`_run`."""
    target = resolve_target(path, config.mission.scope)
    if flow_run_id:
        name_flow_run(flow_run_id, mission_id, target.root)
    # before anything is created: a model fixer without working isolation refuses to start
    isolation = decide_sandbox_isolation(
        config.sandbox, config.fixer,
        [Path.home(), layout.root, target.root])
    record = register_mission(mission_id, str(target.root), parameters, flow_run_id, layout)
    report_progress("setup", f"mission {mission_id} on branch mendflow/{mission_id}",
                    mission_id=mission_id)
    lock_repository(target.root, mission_id, layout)
    try:
        low = check_free_disk(disk_paths(target.root, layout), config.health)
        if low is not None:  # pause before any git operation could fail half-way
            return _paused_at_start(mission_id, flow_run_id, target, layout, low.found)
        return _run(mission_id, flow_run_id, target, config, layout, record.started_at,
                    autonomy, isolation)
    finally:
        unlock_repository(target.root, mission_id)


def _run(mission_id: str, flow_run_id: str | None, target: RepoTarget, config: MendflowConfig,
         layout: StateLayout, started_at: str, autonomy: str | None,
         isolation: Isolation) -> MissionResult:
    """Baseline, the M-T-D-V cycles, approval, reports: the locked part of a mission."""
    logger = get_run_logger()
    state_root = layout.root
    if config.learning.audit:  # the config as loaded (before the learned timeouts)
        audit_config(state_root, mission_id, str(target.root), config)
    before = snapshot_user_checkout(target.root)
    sandbox = create_sandbox(target, mission_id, layout)
    # A resumed mission starts from its base commit (the baseline comes back from the
    # cache), then moves to its checkpoint's commit (see _restore_checkpoint); the steps
    # after it replay from the cache and every commit is re-created identically (same
    # content, same date).
    rewind_sandbox(sandbox, sandbox.base_commit)
    env_started = time.monotonic()  # a first venv build can take minutes
    env = prepare_target_env(sandbox, config.environment, layout)
    environment_s = round(time.monotonic() - env_started, 3)
    env = env.model_copy(update={"isolation": isolation})  # every run of the target's code
    config = config.model_copy(update={
        "tools": plan_timeouts(mission_id, target.root, config, layout),
        "fixer": plan_fixer_timeouts(mission_id, target.root, config, layout)})
    logger.info("mission %s on %s (scope %s: %s), sandbox %s", mission_id, target.root,
                target.scope, target.scope_path, sandbox.path)

    if config.learning.enabled:  # the chart at the end: its import overlaps the baseline
        preload_chart_library()
    started = time.monotonic()
    baseline = measure(sandbox, env, config, label="baseline")
    ledger = MissionLedger(mission_id=mission_id, target=target, sandbox=sandbox, env=env,
                         config=config, baseline=baseline, current=baseline,
                         backups_dir=layout.mission(mission_id) / "backups",
                         started_at=started_at, state_root=state_root,
                         priors=load_priors(config.learning, state_root, str(target.root),
                                            mission_id),
                         baseline_s=round(time.monotonic() - started, 3),
                         environment_s=environment_s,
                         config_hash=config_digest(config, env.fingerprint))
    if config.mission.backup_only:
        ledger = back_up_baseline(ledger)
    else:
        resume = _restore_checkpoint(ledger, layout)
        try:
            ledger = run_iterations(ledger, resume)
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
    result = approve_and_deliver(_result(ledger, flow_run_id, layout), config, target, sandbox,
                                 autonomy)
    _record_and_report(ledger, result, started_at)
    close_mission(result, layout)
    return result


def _restore_checkpoint(ledger: MissionLedger, layout: StateLayout) -> LoopPosition | None:
    """A resumed mission's checkpoint, restored: the sandbox moves to its commit and the
    ledger takes its state; the position to continue from. None (a replay from the base
    commit) when there is no valid checkpoint; why an existing one is not used is logged."""
    read = load_checkpoint(layout, ledger.sandbox, ledger.config_hash)
    if read.checkpoint is None:
        if read.problem:
            report_progress("setup", f"checkpoint not used ({read.problem}): replaying the "
                            "mission from its base commit", mission_id=ledger.mission_id)
        return None
    checkpoint = read.checkpoint
    rewind_sandbox(ledger.sandbox, checkpoint.commit)
    position = restore_ledger(ledger, checkpoint)
    where = (f"its end ({position.finished})" if position.finished else
             f"iteration {position.iteration}, group {position.next_group + 1}")
    report_progress("setup", f"restored from its checkpoint at {checkpoint.commit[:10]}: "
                    f"{sum(o.status == 'accepted' for o in checkpoint.outcomes)} accepted, "
                    f"continuing at {where}", mission_id=ledger.mission_id)
    return position


def _record_and_report(ledger: MissionLedger, result: MissionResult, started_at: str) -> None:
    """The end of a mission: the audit trail, the outcome store, the reports and artifacts."""
    config, state_root = ledger.config, ledger.state_root
    if config.learning.audit:
        audit_delivery(state_root, opaque(result))
    record_mission(config.learning, state_root, opaque(result), started_at,
                   len(ledger.attempt_log), sum(a.cost_usd for a in ledger.attempt_log))
    markdown = write_mission_reports(opaque(result), opaque(ledger.validations), ledger.backups,
                                     Path(result.report_dir))
    sandbox = ledger.sandbox
    sections = [choices_markdown(ledger.choices),
                publish_insights(config.learning, state_root, opaque(result)),
                _self_analysis(sandbox) if config.learning.analyze else ""]
    markdown = append_report_sections(Path(result.report_dir), markdown, sections)
    publish_report(opaque(result), markdown)


def _self_analysis(sandbox: Sandbox) -> str:
    """The report's self-analysis section; a failed or timed-out analysis is a line in the
    report, never the mission's failure (wcwidth 0.2.13: exit 1 after 600 s of radon)."""
    state = analyze_codebase(sandbox, hash_tree(sandbox), return_state=True)
    if state.is_completed():
        return state.result()
    reason = state.message or state.name
    report_progress("report", f"self-analysis skipped: {reason}")
    return f"## Self-analysis\n\nSkipped: {reason}\n"


def _paused_at_start(mission_id: str, flow_run_id: str | None, target: RepoTarget,
                     layout: StateLayout, found: str) -> MissionResult:
    """The result of a mission paused before it started (low disk): resumable, nothing done."""
    reason = (f"paused: low disk space ({found}); free space, then "
              f"`mendflow mission resume {mission_id}`")
    report_progress("health", reason)
    result = MissionResult(
        mission_id=mission_id, flow_run_id=flow_run_id, status="paused",
        repository=str(target.root), base_commit=target.head_commit,
        branch=f"mendflow/{mission_id}", findings=(), patches=(),
        quality_score=QualityScore(before=0.0, after=0.0),
        report_dir=str(layout.mission(mission_id) / "report"),
        stop_reason=reason, exit_code=3)
    close_mission(result, layout)
    return result


def _result(ledger: MissionLedger, flow_run_id: str | None, layout: StateLayout) -> MissionResult:
    """The machine-readable result of the mission's state."""
    config, sandbox, baseline = ledger.config, ledger.sandbox, ledger.baseline
    report_dir = Path(config.mission.report_dir or
                      layout.mission(ledger.mission_id) / "report")
    return MissionResult(
        mission_id=ledger.mission_id, flow_run_id=flow_run_id,
        status="paused" if ledger.paused else "completed", repository=str(ledger.target.root),
        base_commit=sandbox.base_commit, branch=sandbox.branch,
        findings=tuple(ledger.scoped(baseline.findings)), patches=tuple(ledger.outcomes),
        quality_score=QualityScore(before=baseline.score, after=ledger.current.score),
        report_dir=str(report_dir), iterations=ledger.iterations, stop_reason=ledger.stop_reason,
        exit_code=ledger.exit_code(), dry_run=config.mission.dry_run,
        backup_only=config.mission.backup_only, worktree=str(sandbox.path),
        final_findings=tuple(ledger.scoped(ledger.current.findings)), llm_usage=ledger.llm_usage,
        timings=Timings(baseline_s=ledger.baseline_s, environment_s=ledger.environment_s,
                        validations=tuple(ledger.validation_timings)),
        tool_failures=ToolFailure.of(baseline.results),
        tests_before=suite_summary(baseline), tests_after=suite_summary(ledger.current),
        baseline_tests=BaselineTests.of(baseline.test_run),
    )
