"""Health tasks of a mission: the repository lock, disk space, adaptive timeouts.

Thin Prefect tasks over :mod:`mendflow.infra.lock`, :mod:`mendflow.infra.system_checks`,
:mod:`mendflow.infra.timeouts` and :mod:`mendflow.infra.owned_processes`, so that the mission flow
only composes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from mendflow.core.config import (
    ChainFixerConfig,
    FixerConfig,
    HealthConfig,
    MendflowConfig,
    PytestConfig,
    TimeoutsConfig,
    ToolsConfig,
)
from mendflow.core.config_fixers import LLMFixerSection
from mendflow.core.errors import CrashLoop
from mendflow.core.hangs import plan_from_durations
from mendflow.core.models import Sandbox, TestPlan, ToolResult
from mendflow.core.spread import FIXED_STEP, TESTS_STEP, fixed_s, tests_s
from mendflow.infra.caching import MISSION_STEP
from mendflow.infra.flow_runs import heartbeat_crashes
from mendflow.infra.layout import StateLayout
from mendflow.infra.lock import MissionLock
from mendflow.infra.owned_processes import register_prefect_server
from mendflow.infra.retry import transient_retries
from mendflow.infra.system_checks import Check, check_disk_space
from mendflow.infra.test_durations import load_test_durations, record_test_durations
from mendflow.infra.timeouts import adaptive_timeout, llm_timeout, record_duration

_HELD: dict[tuple[str, str], MissionLock] = {}


@task(name="lock-repository", cache_policy=NO_CACHE, timeout_seconds=60)
def lock_repository(repo_root: Path, mission_id: str, layout: StateLayout) -> str:
    """Take the repository's mission lock (one mission per repository at a time).

    A lock left by a dead process is taken over. Also records the temporary
    Prefect server of this process, so that ``mendflow doctor`` can find it
    if this process is killed.

    Args:
        repo_root: the repository.
        mission_id: the mission taking the lock.
        layout: mendflow's state directory, resolved (the lock goes in ``locks/``).

    Returns:
        A short note: "locked", or "took over a stale lock of mission X".

    Raises:
        MissionLocked: another live mission holds the lock (the message names it).
    """
    lock = MissionLock(repo_root, mission_id, layout)
    lock.acquire()
    _HELD[(str(repo_root), mission_id)] = lock
    register_prefect_server(layout)
    stale = getattr(lock, "stale", None)
    return f"took over a stale lock of mission {stale.mission_id}" if stale else "locked"


@task(name="unlock-repository", cache_policy=NO_CACHE, timeout_seconds=60)
def unlock_repository(repo_root: Path, mission_id: str) -> bool:
    """Release the lock taken by :func:`lock_repository` in this process (True if released)."""
    lock = _HELD.pop((str(repo_root), mission_id), None)
    return bool(lock and lock.release())


@task(name="check-free-disk", cache_policy=NO_CACHE, timeout_seconds=30,
      **transient_retries(1, first_delay_s=1))
def check_free_disk(paths: Sequence[Path], config: HealthConfig) -> Check | None:
    """The first failing free-disk check among ``paths`` (one statvfs call each), or None."""
    for path in paths:
        check = check_disk_space(path, config)
        if check.status == "fail":
            return check
    return None


@task(name="plan-timeouts", cache_policy=MISSION_STEP, persist_result=True, timeout_seconds=30)
def plan_timeouts(mission_id: str, repo_root: Path, config: MendflowConfig,
                  layout: StateLayout) -> ToolsConfig:
    """Each tool's timeout for this mission, from the repository's own history.

    A high percentile of past durations times a factor, between a floor and a
    ceiling (``timeouts`` section; :func:`mendflow.infra.timeouts.adaptive_timeout`).
    Cached per mission: a resumed mission keeps the timeouts it started with,
    so its cached tool runs stay valid.

    Args:
        mission_id: the mission (a cache-key part).
        repo_root: the repository whose history is used.
        config: the mission's config.
        layout: mendflow's state directory, resolved (where the history is).

    Returns:
        The ``tools`` section with ``run_timeout_s`` / ``timeout_s`` replaced.
    """
    tools, limits = config.tools, config.timeouts

    def pick(step: str, default: float) -> float:
        return adaptive_timeout(repo_root, step, default_s=default, config=limits, layout=layout)

    return tools.model_copy(update={
        "pytest": tools.pytest.model_copy(update={
            "run_timeout_s": pick("pytest", tools.pytest.run_timeout_s)}),
        "ruff": tools.ruff.model_copy(update={"timeout_s": pick("ruff", tools.ruff.timeout_s)}),
        "mypy": tools.mypy.model_copy(update={"timeout_s": pick("mypy", tools.mypy.timeout_s)}),
        "bandit": tools.bandit.model_copy(update={
            "timeout_s": pick("bandit", tools.bandit.timeout_s)}),
    })


def adapt_fixer_timeouts(fixer: FixerConfig, repo_root: Path, limits: TimeoutsConfig,
                         layout: StateLayout) -> FixerConfig:
    """The fixer section with each model fixer's ``timeout_s`` learned from the history.

    An ``anthropic`` or ``openai-compatible`` section, and each such section
    inside a ``chain``, gets ``timeout_s = llm_timeout(...)`` (step ``llm``:
    the durations of earlier successful calls on this repository, see
    :func:`mendflow.infra.timeouts.llm_timeout`) and ``state_dir = layout.root``, where its
    calls record their own durations. Offline fixers are returned unchanged.

    Args:
        fixer: the ``fixer`` section.
        repo_root: the repository whose history is used.
        limits: the ``timeouts`` section.
        layout: mendflow's state directory, resolved.

    Returns:
        A copy of the section with the timeouts replaced.
    """
    if isinstance(fixer, ChainFixerConfig):
        return fixer.model_copy(update={"fixers": [
            adapt_fixer_timeouts(item, repo_root, limits, layout) for item in fixer.fixers]})
    if isinstance(fixer, LLMFixerSection):
        return fixer.model_copy(update={
            "timeout_s": llm_timeout(repo_root, default_s=fixer.timeout_s, config=limits,
                                     layout=layout),
            "state_dir": layout.root,
        })
    return fixer


@task(name="plan-fixer-timeouts", cache_policy=MISSION_STEP, persist_result=True,
      timeout_seconds=30)
def plan_fixer_timeouts(mission_id: str, repo_root: Path, config: MendflowConfig,
                        layout: StateLayout) -> FixerConfig:
    """Each model call's timeout for this mission, from the repository's own history.

    See :func:`adapt_fixer_timeouts`. Cached per mission like
    :func:`plan_timeouts`: a resumed mission keeps the timeouts it started
    with, so its cached model calls (whose cache key holds the fixer section) stay valid.

    Args:
        mission_id: the mission (a cache-key part).
        repo_root: the repository whose history is used.
        config: the mission's config.
        layout: mendflow's state directory, resolved (where the history is).

    Returns:
        The ``fixer`` section with each model fixer's ``timeout_s`` (seconds) replaced.
    """
    return adapt_fixer_timeouts(config.fixer, repo_root, config.timeouts, layout)


@task(name="record-tool-durations", cache_policy=MISSION_STEP, persist_result=True,
      timeout_seconds=30)
def record_tool_durations(repo_root: Path, results: Sequence[ToolResult],
                          layout: StateLayout | Path | None) -> None:
    """Add each tool run's wall time (seconds) to the repository's timeout history.

    A test run also adds the sum of its tests' durations and its time outside
    them (:data:`~mendflow.core.spread.TESTS_STEP`, :data:`~mendflow.core.spread.FIXED_STEP`):
    the next baseline decides from them whether to spread the suite over xdist workers;
    and each test's duration (:func:`mendflow.infra.test_durations.record_test_durations`),
    from which the next baseline learns its tests' timeouts (:func:`plan_baseline_tests`).

    Cached by its inputs: a resumed mission replaying cached tool runs finds
    this step Cached too, so no duration is recorded twice.

    Args:
        repo_root: the repository.
        results: the tool runs.
        layout: mendflow's state directory, resolved; or the resolved root
            (``config.mission.state_dir``), see :meth:`StateLayout.of`.
    """
    where = StateLayout.of(layout)
    for result in results:
        if result.ok and result.duration_s > 0:
            record_duration(repo_root, result.tool, result.duration_s, layout=where)
        run = result.test_run
        if not result.ok or run is None or not run.cases:
            continue
        record_test_durations(repo_root, run, where)
        if not run.timed_out:
            # the split that decides whether the next run spreads the suite (core/spread.py)
            record_duration(repo_root, TESTS_STEP, tests_s(run), layout=where)
            record_duration(repo_root, FIXED_STEP, fixed_s(run), layout=where)


@task(name="check-crash-loop", cache_policy=NO_CACHE, timeout_seconds=60,
      **transient_retries(2, first_delay_s=1))
def check_crash_loop(flow_run_id: str, max_auto_resumes: int) -> int:
    """Stop a flow run that the crash automation rescheduled too often.

    Counts, in the flow run's state history on the Prefect API, the Crashed
    states the crash automation set (:func:`mendflow.infra.flow_runs.heartbeat_crashes`):
    each one was followed by an automatic resume of this same flow run.

    Args:
        flow_run_id: this flow run.
        max_auto_resumes: ``deployment.max_auto_resumes``.

    Returns:
        How many automatic resumes this run has had (0 for a first or hand-made run).

    Raises:
        CrashLoop: more than ``max_auto_resumes``; the flow run then fails for
            good, which the resume automation leaves alone.
    """
    crashes = heartbeat_crashes(flow_run_id)
    if crashes > max_auto_resumes:
        raise CrashLoop(
            f"flow run {flow_run_id} was marked Crashed for missing heartbeats {crashes} times "
            f"(deployment.max_auto_resumes: {max_auto_resumes}); not resuming it again",
            subject=flow_run_id,
            hint="read the crashed runs' logs for what kills the process (memory, a hanging "
                 "step), fix it, then `mendflow mission resume MISSION_ID` (a new flow run)")
    return crashes


def disk_paths(repo_root: Path, layout: StateLayout | Path | None) -> list[Path]:
    """Where a mission writes: mendflow's state directory and the repository.

    Args:
        repo_root: the repository.
        layout: mendflow's state directory, resolved; or the resolved root
            (``config.mission.state_dir``), see :meth:`StateLayout.of`.
    """
    return [StateLayout.of(layout).root, repo_root]


@task(name="plan-baseline-tests", cache_policy=MISSION_STEP, persist_result=True,
      timeout_seconds=30)
def plan_baseline_tests(sandbox: Sandbox, tree: str, pytest: PytestConfig,
                        layout: StateLayout | Path | None) -> TestPlan | None:
    """The per-test timeouts of a baseline, learned from the repository's earlier runs.

    Cached by the sandbox (one mission) and its tree: a resumed mission gets the
    plan its baseline ran with, so the cached test run is found again even after
    later runs changed the durations file.

    Args:
        sandbox: the mission's worktree (its ``repo_root`` names the repository).
        tree: the content hash of the tree being measured (a cache-key input).
        pytest: the ``tools.pytest`` config (timeouts in seconds).
        layout: mendflow's state directory, resolved; or its root, see :meth:`StateLayout.of`.

    Returns:
        The :class:`TestPlan` (:func:`mendflow.core.hangs.plan_from_durations`), or
        None: nothing learned yet, every test gets ``first_timeout_s``.
    """
    return plan_from_durations(
        load_test_durations(sandbox.repo_root, StateLayout.of(layout)), pytest)
