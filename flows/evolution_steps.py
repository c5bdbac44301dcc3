"""The steps of one evolution cycle between its mission and its record.

Composed by :func:`mendflow.flows.evolution.evolution_cycle`:

- :func:`watch_pulls`: what became of the PRs earlier cycles opened;
- :func:`watch_regressions`: tests that passed at the previous tip and fail now →
  ``git bisect run`` (each step's tests run in the sandbox) → revert mendflow's culprit
  (a PR, or a revert commit pushed to the target branch under full autonomy) or
  report a human's;
- :func:`approve_and_deliver`: the paused-run approval (semi-autonomous), then the PRs.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from prefect import get_run_logger, runtime

from mendflow.core.config import MendflowConfig
from mendflow.core.errors import MendflowError
from mendflow.core.evolution import CycleRecord, Regression
from mendflow.core.learning import post_merge_outcomes
from mendflow.core.models import MissionResult, Sandbox, TargetEnv
from mendflow.flows.approval import approve_patches, approved_ids
from mendflow.infra.evolution_store import loop_dir, read_memory
from mendflow.infra.layout import StateLayout
from mendflow.tasks.approve import check_autonomy, notify_once
from mendflow.tasks.deliver import PullDelivery, check_pulls, deliver_pulls, deliver_revert
from mendflow.tasks.evolve import find_regressions, generated
from mendflow.tasks.evolve.dashboard import PendingApproval
from mendflow.tasks.evolve.watch import landed_commits, with_trailers
from mendflow.tasks.learn.record import record_post_merge
from mendflow.tasks.sandbox.isolation import decide_sandbox_isolation

__all__ = ["Cycle", "approve_and_deliver", "notify", "watch_pulls", "watch_regressions"]


class Cycle:
    """What one cycle accumulates (flow-local)."""

    def __init__(self, target: str, config: MendflowConfig, config_file: str | None):
        self.t0 = time.monotonic()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.target, self.config, self.config_file = target, config, config_file
        self.layout = StateLayout.resolve(config.mission.state_dir)
        self.folder = loop_dir(self.layout, target)
        self.memory = read_memory(self.folder)
        self.fields: dict = {}
        self.regressions: list[Regression] = []
        self.root: Path | None = None
        self.tip: str | None = None
        self.delivery = PullDelivery()
        self.waiting: list[PendingApproval] = []  # this cycle's own request, while it waits

    def record(self, status: str, head_after: str | None, **fields) -> CycleRecord:
        data = {**self.fields, **fields}
        return CycleRecord(cycle=1, started_at=self.started_at, status=status,
                           duration_s=round(time.monotonic() - self.t0, 3),
                           head_before=self.memory.last_tip, head_after=head_after,
                           regressions=tuple(self.regressions),
                           flow_run_id=str(runtime.flow_run.id or "") or None, **data)


def watch_pulls(cycle: Cycle, root: Path) -> None:
    """What became of the PRs earlier cycles opened (merged, closed by a human)."""
    numbers = list(cycle.memory.open_prs)
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
    cycle.memory = cycle.memory.model_copy(update={
        "open_prs": tuple(n for n in numbers if states.get(n, "open") == "open")})
    if merged:
        get_run_logger().info("merged since the last cycle: %s", ", ".join(f"#{n}" for n in merged))


def watch_regressions(cycle: Cycle, root: Path, result: MissionResult, branch: str,
                      tip: str) -> None:
    """Tests that passed at the previous tip and fail now: bisect, revert mendflow's culprit."""
    tests = result.baseline_tests
    if tests is None:
        return
    before = set(cycle.memory.failing_tests)
    new = [t for t in tests.failing if t not in before]
    if not new:
        return
    work = cycle.layout.root / "evolution-work"
    found = find_regressions(root, cycle.memory.last_tip or "", tip, new,
                             watch_env(result, cycle.config),
                             cycle.config.evolution.bisect_timeout_s, work)
    direct = cycle.config.evolution.autonomy == "full_autonomous"
    reverted: set[str] = set()
    for regression in found:
        get_run_logger().warning(
            "regression: %s fails since %s (%s)", regression.test,
            (regression.commit or "?")[:10], "mendflow's commit"
            if regression.delivered_by_mendflow else regression.author or "unknown")
        if regression.delivered_by_mendflow and regression.commit:
            regression = _revert(cycle, root, regression, branch, tip, direct, reverted, work)
        cycle.regressions.append(regression)
    cycle.fields["reverts"] = len(reverted)
    notify(cycle, "mendflow: regression found", "\n".join(
        f"- {r.test}: first bad commit {(r.commit or '?')[:10]} "
        f"({'mendflow' if r.delivered_by_mendflow else r.author}): {r.action} {r.detail or ''}"
        for r in cycle.regressions))


def record_post_merge_outcomes(cycle: Cycle, root: Path, result: MissionResult,
                               tip: str) -> None:
    """mendflow's commits that landed since the previous tip: ``kept`` when the watch found
    no regression of theirs (and nothing reverts them), ``reverted`` when a revert landed or
    the watch reverted them now; written to the outcome store (insights' revert rate)."""
    try:
        landed = landed_commits(root, cycle.memory.last_tip or "", tip)
    except MendflowError as err:
        get_run_logger().warning("post-merge outcomes not recorded: %s", err)
        return
    culprits = {r.commit for r in cycle.regressions if r.delivered_by_mendflow and r.commit}
    reverted = {r.commit for r in cycle.regressions if r.action == "reverted" and r.commit}
    outcomes = post_merge_outcomes(landed, culprits, reverted, result.baseline_tests is not None)
    outcomes = outcomes.model_copy(update={"reverted": tuple(with_trailers(root,
                                                                           outcomes.reverted))})
    if outcomes.kept or outcomes.reverted:
        rows = record_post_merge(cycle.config.learning, cycle.layout.root, result.repository,
                                 outcomes)
        get_run_logger().info("post-merge: %d of mendflow's commits kept, %d reverted "
                              "(%d attempts marked)", len(outcomes.kept),
                              len(outcomes.reverted), rows)


def _revert(cycle: Cycle, root: Path, regression: Regression, branch: str, tip: str,
            direct: bool, reverted: set[str], work: Path) -> Regression:
    """Revert mendflow's culprit once (a PR, or pushed to ``branch`` when ``direct``)."""
    commit = regression.commit or ""
    action = "reverted" if direct else "revert-proposed"
    if commit in reverted:
        detail = "reverted with an earlier test's regression"
    else:
        try:
            sha, url = deliver_revert(root, cycle.config.delivery, branch, tip, commit,
                                      f"{regression.test} fails", work, direct)
            reverted.add(commit)
            detail = url or sha
        except MendflowError as err:
            action, detail = "revert-failed", str(err).splitlines()[0]
    return regression.model_copy(update={"action": action, "detail": detail})


def watch_env(result: MissionResult, config: MendflowConfig) -> TargetEnv:
    """The environment the bisect's tests run in: the mission's interpreter (its cached
    environment) under the same isolation as every other run of the repository's code."""
    from mendflow.tasks.environment import prepare_target_env

    root = Path(result.repository)
    layout = StateLayout.of(config.mission.state_dir)
    isolation = decide_sandbox_isolation(config.sandbox, config.fixer,
                                         [Path.home(), layout.root, root])
    sandbox = Sandbox(mission_id=result.mission_id, path=Path(result.worktree or root),
                      branch=result.branch, base_commit=result.base_commit, repo_root=root)
    try:
        env = prepare_target_env(sandbox, config.environment, layout)
    except MendflowError:
        env = TargetEnv(python=Path(sys.executable), kind="interpreter", fingerprint="mendflow")
    return env.model_copy(update={"isolation": isolation})


def approve_and_deliver(cycle: Cycle, result: MissionResult, branch: str) -> PullDelivery:
    """Approve (a semi-autonomous cycle pauses here, before any push or PR), then deliver.

    ``result.flow_run_id`` must be this cycle's flow run (not the mission subflow's):
    the approval request is stored with it, and ``mendflow approve RUN_ID`` names it.
    """
    config = cycle.config
    level = check_autonomy(config.evolution.autonomy) or "autonomous"
    needs, decision, _ = approve_patches(result, config, level, branch)
    cycle.waiting = []
    categories = {f.id: f.category for f in result.findings}
    patches = {p.id: p.finding_ids for p in result.patches}
    approved = [p for p in approved_ids(needs, decision)
                if all(generated(config.evolution, categories.get(f, "lint"))
                       for f in patches.get(p, ()))]
    approver = (decision.approver if decision and decision.approved_ids else None) \
        or f"mendflow ({level})"
    if not config.delivery.remote and not config.delivery.forge:
        return PullDelivery()
    return deliver_pulls(result, approved, needs, approver, config.delivery, branch,
                         cycle.memory.opened_at, cycle.layout.root / "evolution-work",
                         merge=level == "full_autonomous")


def notify(cycle: Cycle, subject: str, body: str) -> None:
    """Send a message through the loop's notification block (a failure is only logged)."""
    block = cycle.config.evolution.notify_block or cycle.config.approval.notify_block
    if not block:
        return
    state = notify_once(block, subject, body, None, None, return_state=True)
    if state.is_failed():
        get_run_logger().warning("notification through %s failed: %s", block, state.message)
