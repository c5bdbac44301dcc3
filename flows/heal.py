"""The heal flow: from a logged or raised exception to a reproduced, fixed, validated commit.

::

    load_error_group (from the log, or from a mendflow.exception.raised event)
    → notify "detected" → locate (frames → the repository's files)
    → [no model fixer: record, notify, "needs a model fixer"; stop]
    → create_sandbox (mendflow/heal-<fingerprint>) → prepare_target_env → measure baseline
    → up to heal.max_attempts:
          ask_heal (analysis + reproduction test + fix; external → reported, stop)
          → run_reproduction on the unfixed tree: must fail with the same exception
            from the same innermost frame
          → run_reproduction with the fix: must pass
          → every mission gate (the reproduction is the one test change allowed)
          → commit_accepted_patch | reset and feed the reason back
    → approve_and_deliver (the autonomy level) → notify → record + artifact

At most one open run per group (a file lock); a run started by the trigger
while another is open, or within ``heal.repeat_window_s`` of a finished one,
only adds to the group's count.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from prefect import flow, get_run_logger, runtime

from mendflow.blocks.notify import flow_run_url
from mendflow.core.config import MendflowConfig
from mendflow.core.error_groups import ErrorGroup, group_events, group_finding
from mendflow.core.errors import LLMError
from mendflow.core.heal import HealRecord, HealResult, event_from_payload
from mendflow.core.models import LLMUsage, QualityScore, RepoTarget, Timings, ToolFailure
from mendflow.core.outcomes import suite_summary
from mendflow.flows.approval import approve_and_deliver
from mendflow.flows.heal_attempts import HealProgress, attempt_heals
from mendflow.infra.heal_records import group_lock, read_record, reserve_slot, try_lock
from mendflow.infra.layout import StateLayout
from mendflow.tasks.bookkeeping import load_mission_config
from mendflow.tasks.detect.log_scan import repo_files
from mendflow.tasks.environment import prepare_target_env
from mendflow.tasks.heal import (
    load_error_group,
    model_fixer,
    notify_heal,
    publish_heal_artifact,
    save_heal_record,
    source_context,
)
from mendflow.tasks.preflight import lock_repository, unlock_repository
from mendflow.tasks.sandbox import create_sandbox, rewind_sandbox
from mendflow.tasks.vcs import resolve_target, snapshot_user_checkout, verify_user_checkout


@flow(name="heal", log_prints=False)
def heal(repo: str = ".", log_files: list[str] | None = None, fingerprint: str | None = None,
         event: dict[str, Any] | None = None, config_file: str | None = None,
         fixer: str | None = None, autonomy: str | None = None) -> HealResult:
    """Heal one error group of a repository.

    Args:
        repo: the repository (or a path inside it).
        log_files: log files or globs to read the group from.
        fingerprint: the group (default: the largest group of the logs).
        event: instead of logs, the payload of a ``mendflow.exception.raised`` event.
        config_file: a YAML config (``heal``, ``fixer``, ``approval`` ... sections).
        fixer: anthropic | chain | ruff (overrides ``fixer.type``; ruff = no model).
        autonomy: interactive | semi_autonomous | autonomous | full_autonomous.

    Returns:
        The :class:`HealResult` (mission fields plus ``fingerprint`` and ``reproduction_test``).

    Raises:
        MendflowError: bad input (no traceback in the log, unknown fingerprint, bad config).
    """
    config = load_mission_config(config_file, fixer, path=repo)
    layout = StateLayout.of(config.mission.state_dir)  # resolved once by load_mission_config
    flow_run_id = str(runtime.flow_run.id or "") or None
    target = resolve_target(repo, "project")
    if log_files:
        group = load_error_group(log_files, target.root, fingerprint)
    else:
        group = group_events([event_from_payload(event or {})], repo_files(target.root))[0]
    old = read_record(layout, group.fingerprint)
    record = _merge_record(old, group, str(target.root))
    if not log_files:  # started by an event (the trigger): repeats only count
        record = record.model_copy(update={"count": record.count + int((event or {}).get(
            "repeats") or 0)})
        held = _held_back(old, config, layout)
        if held:
            save_heal_record(layout, record)
            return _result(record, target, config, flow_run_id, reason=held)
    lock = group_lock(layout, group.fingerprint)
    if not try_lock(lock):  # another run heals this group: only count the repeat
        save_heal_record(layout, record)
        return _result(record, target, config, flow_run_id, reason="a heal run of this group "
                       "is already open; its count was incremented")
    try:
        return _heal(record.model_copy(update={"flow_run_id": flow_run_id}), group, target,
                     config, layout, autonomy)
    finally:
        lock.release()


def _held_back(old: HealRecord | None, config: MendflowConfig, layout: StateLayout) -> str | None:
    """Why an event-started run must not heal (a recent repeat, or the hourly cap), or None."""
    if old is not None and old.status != "open" and old.updated_at:
        age = (datetime.now(timezone.utc) - datetime.fromisoformat(old.updated_at)).total_seconds()
        if age < config.heal.repeat_window_s:
            return (f"a repeat within heal.repeat_window_s of the last run ({old.status}): "
                    "its count was incremented")
    return reserve_slot(layout, "runs", config.heal.max_runs_per_hour)


def _merge_record(old: HealRecord | None, group: ErrorGroup, repository: str) -> HealRecord:
    """The group's record, with the counts of earlier runs added."""
    new = HealRecord.of_group(group, repository)
    if old is None:
        return new
    first = min(x for x in (old.first_seen, new.first_seen) if x) \
        if (old.first_seen or new.first_seen) else None
    return old.model_copy(update={
        "count": old.count + group.count, "first_seen": first,
        "last_seen": max(x for x in (old.last_seen, new.last_seen) if x)
        if (old.last_seen or new.last_seen) else None,
        "message": new.message, "traceback": new.traceback, "line": new.line})


def _heal(record: HealRecord, group: ErrorGroup, target: RepoTarget, config: MendflowConfig,
          layout: StateLayout, autonomy: str | None) -> HealResult:
    notifier = Notifier(config, record.flow_run_id)
    notifier.send("detected", f"{record.exception_type}: {record.message}",
                  f"Repository: {target.root}\nWhere: {record.path}:{record.line} in "
                  f"{record.function}\nSeen {record.count}x ({record.first_seen} .. "
                  f"{record.last_seen})\n\n{record.traceback[-3000:]}")
    finding = group_finding(group, repo_files(target.root))
    if finding is not None:
        record = record.model_copy(update={"context": (
            f"repository {target.root} at {target.head_commit}\n"
            + source_context(target.root, finding.path, finding.line))})
    if finding is None:
        return _finish(record.model_copy(update={
            "status": "refused", "reason": "not located: no frame of the traceback maps to a "
                                           "file of the repository"}), target, config, layout,
            notifier)
    if model_fixer(config.fixer) is None:
        return _finish(record.model_copy(update={
            "status": "needs_model_fixer", "reason": "needs a model fixer: the error is "
            "recorded and grouped; configure fixer.type anthropic (or openai-compatible) "
            "to heal it"}), target, config, layout, notifier)
    mission_id = f"heal-{record.fingerprint}"
    lock_repository(target.root, mission_id, layout)
    try:
        before = snapshot_user_checkout(target.root)
        sandbox = create_sandbox(target, mission_id, layout)
        rewind_sandbox(sandbox, config.heal.deployed_commit or sandbox.base_commit)
        started = time.monotonic()
        env = prepare_target_env(sandbox, config.environment, layout)
        environment_s = time.monotonic() - started
        measured = config.model_copy(update={"tools": config.tools.model_copy(update={
            "logs": config.tools.logs.model_copy(update={"enabled": False})})})
        progress = HealProgress(record=record, group=group, finding=finding, sandbox=sandbox,
                          env=env, config=measured, layout=layout, environment_s=environment_s)
        notifier.send("analyzing", f"analyzing {record.exception_type}",
                      f"Asking the model for a reproduction and a fix of {record.path}:"
                      f"{record.function} (at most {config.heal.max_attempts} attempts).")
        try:
            progress = attempt_heals(progress)
        except LLMError as err:
            progress.record = progress.record.model_copy(update={
                "status": "failed", "reason": f"the model call failed: {err.message}"})
        verify_user_checkout(target.root, before)
        result = _result(progress.record, target, config, record.flow_run_id, progress=progress)
        if progress.record.status == "fixed":
            notifier.send("fix ready", f"fix ready for {record.exception_type}",
                          f"Reproduced by {progress.reproduction_test} and fixed on "
                          f"{sandbox.branch} ({progress.record.commit}); delivering under "
                          f"autonomy {autonomy or config.approval.autonomy or 'none'}.")
            result = approve_and_deliver(result, config, target, sandbox, autonomy)
            status = "awaiting_approval" if result.status == "awaiting_approval" else "fixed"
            progress.record = progress.record.model_copy(update={"status": status})
            result = result.model_copy(update={"heal_status": status})
    finally:
        unlock_repository(target.root, mission_id)
    _finish(progress.record, target, config, layout, notifier, result)
    return result


def _finish(record: HealRecord, target: RepoTarget, config: MendflowConfig,
            layout: StateLayout, notifier: Notifier,
            result: HealResult | None = None) -> HealResult:
    """Record, publish and send the last message; the result."""
    save_heal_record(layout, record)
    publish_heal_artifact(record)
    done = {"fixed": "delivered", "awaiting_approval": "awaiting approval"}.get(record.status)
    if done:
        approval = result.approval if result else None
        delivered = ", ".join(approval.delivered_commits) if approval else ""
        notifier.send(done, f"{done}: {record.exception_type}",
                      f"Commit {record.commit} on {record.branch}"
                      + (f"; delivered to {approval.target_branch}: {delivered}"
                         if approval and delivered else ""))
    else:
        notifier.send(record.status.replace("_", " "), f"{record.status}: "
                      f"{record.exception_type}", record.reason)
    return result or _result(record, target, config, record.flow_run_id)


def _result(record: HealRecord, target: RepoTarget, config: MendflowConfig,
            flow_run_id: str | None, *, progress: HealProgress | None = None,
            reason: str | None = None) -> HealResult:
    sandbox = progress.sandbox if progress else None
    return HealResult(
        mission_id=f"heal-{record.fingerprint}", flow_run_id=flow_run_id,
        status="completed", repository=str(target.root),
        base_commit=sandbox.base_commit if sandbox else target.head_commit,
        branch=f"mendflow/heal-{record.fingerprint}",
        findings=(progress.finding,) if progress else (),
        patches=tuple(progress.outcomes) if progress else (),
        quality_score=QualityScore(before=progress.baseline_score, after=progress.score)
        if progress else QualityScore(before=0.0, after=0.0),
        report_dir=str(StateLayout.of(config.mission.state_dir).root / "heal"),
        stop_reason=reason or record.reason,
        exit_code=0 if record.status == "fixed" else 2, worktree=str(sandbox.path) if sandbox
        else None, fingerprint=record.fingerprint,
        reproduction_test=progress.reproduction_test if progress else None,
        llm_usage=progress.llm_usage if progress else LLMUsage(),
        tests_before=suite_summary(progress.baseline) if progress and progress.baseline else None,
        tests_after=suite_summary(progress.current or progress.baseline)
        if progress and progress.baseline else None,
        heal_status=record.status, reason=reason or record.reason, attempts=record.attempts,
        commit=record.commit, timings=progress.timings() if progress else Timings(),
        tool_failures=ToolFailure.of(progress.baseline.results)
        if progress and progress.baseline else ())


class Notifier:
    """Sends each stage's message (with the flow run's URL) through the heal notify block."""

    def __init__(self, config: MendflowConfig, flow_run_id: str | None):
        self.block = config.heal.notify_block or config.approval.notify_block
        self.link = flow_run_url(flow_run_id, config.approval.ui_url)

    def send(self, stage: str, subject: str, body: str) -> None:
        if not self.block:
            return
        text = f"[{stage}] {body}\nFlow run: {self.link or '(no Prefect UI)'}"
        failure = notify_heal(self.block, f"mendflow heal: {subject}", text)
        if failure:
            get_run_logger().warning("heal notification (%s) failed: %s", stage, failure)
