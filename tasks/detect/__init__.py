"""The Detect stage: measure one tree of the sandbox with pytest+coverage, ruff,
mypy, bandit and a TODO scan, and merge their findings into one ranked queue.

Each tool has a plain helper (``measure_*``/``scan_todos``, testable without
Prefect) in its own module and a thin Prefect task here. The tasks take a
``tree`` argument that the body does not use: it is the content hash of the
measured tree (``git write-tree``), so that a cache policy over the inputs
keys a measurement to exactly that tree.

A tool that is disabled returns ``ToolResult(ok=True)`` with nothing; a tool
that crashes, times out or prints unreadable output returns ``ok=False`` with
``error`` (the output tail) instead of raising, so the mission goes on and the
validation gates notice. A missing executable raises
:class:`~mendflow.core.errors.ToolError`.

The ``timeout_seconds`` on the tasks are a backstop only: every tool run is
bounded by its own configured timeout, which kills the whole process group
(Prefect's task timeout does not kill subprocesses).
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE, TASK_SOURCE

from mendflow.core.config import ToolsConfig
from mendflow.core.findings import merge_cross_tool, rank_findings
from mendflow.core.models import Finding, Sandbox, TargetEnv, TestPlan, ToolResult
from mendflow.infra.caching import MISSION_STEP, HostNeutralInputs
from mendflow.infra.retry import transient_retries
from mendflow.tasks.detect.bandit_run import measure_bandit
from mendflow.tasks.detect.impact import impact_path
from mendflow.tasks.detect.log_scan import measure_logs
from mendflow.tasks.detect.mypy_run import measure_mypy
from mendflow.tasks.detect.parallel import measure_tests_spread
from mendflow.tasks.detect.pytest_run import measure_tests
from mendflow.tasks.detect.ruff_run import measure_ruff, ruff_config_args
from mendflow.tasks.detect.todo_scan import count_python_loc, scan_todos

__all__ = [
    "count_python_loc", "find_todos", "measure_bandit", "measure_logs", "measure_mypy",
    "measure_ruff", "measure_tests", "merge_findings", "read_logs", "ruff_config_args",
    "run_bandit", "run_mypy", "run_pytest", "run_ruff", "run_selected_tests", "scan_todos",
]

# Backstops in seconds; the configured per-tool timeouts fire first.
TEST_TASK_TIMEOUT_S = 4 * 3600
LINT_TASK_TIMEOUT_S = 3600
TODO_TASK_TIMEOUT_S = 600


# the workers are left out of the key: a spread run's result is the serial one's, and a
# resumed mission may decide them differently (from a duration history that grew since)
@task(name="run-pytest",
      timeout_seconds=TEST_TASK_TIMEOUT_S,
      cache_policy=HostNeutralInputs(exclude=["workers"]) + TASK_SOURCE, persist_result=True,
      **transient_retries(1))
def run_pytest(sandbox: Sandbox, env: TargetEnv, tools: ToolsConfig, tree: str,
               plan: TestPlan | None = None, impact: bool = False,
               workers: int = 1) -> ToolResult:
    """Run the target's tests under coverage (see :func:`measure_tests`).

    Args:
        sandbox: the worktree to test.
        env: the target environment.
        tools: the ``tools`` config.
        tree: content hash of the measured tree (cache-key input only).
        plan: per-test timeouts learned from the run this one is compared with
            (None at baseline).
        impact: also record which tests reach which lines, saved as
            :func:`~mendflow.tasks.detect.impact.impact_path` of the tree.
        workers: spread the suite over this many pytest-xdist workers where the
            suite allows it (:func:`~mendflow.tasks.detect.parallel.measure_tests_spread`).

    Returns:
        The ``pytest`` result with its :class:`~mendflow.core.models.TestRun`.

    Raises:
        ToolError: pytest, coverage or the interpreter is missing from the target env.
    """
    return measure_tests_spread(sandbox, env, tools, plan=plan, workers=workers,
                                impact_file=impact_path(sandbox, tree) if impact else None)


@task(name="run-selected-tests", timeout_seconds=TEST_TASK_TIMEOUT_S,
      cache_policy=MISSION_STEP, persist_result=True, **transient_retries(1))
def run_selected_tests(sandbox: Sandbox, env: TargetEnv, tools: ToolsConfig, tree: str,
                       select: tuple[str, ...]) -> ToolResult:
    """Run only the selected tests, without coverage (see :func:`measure_tests`).

    Args:
        sandbox: the worktree to test.
        env: the target environment.
        tools: the ``tools`` config.
        tree: content hash of the measured tree (cache-key input only).
        select: node ids or test files (:func:`~mendflow.tasks.detect.impact.select_tests`).

    Returns:
        The ``pytest`` result of those tests only.

    Raises:
        ToolError: pytest or the interpreter is missing from the target env.
    """
    return measure_tests(sandbox, env, tools, select=select)


@task(name="run-ruff",
      timeout_seconds=LINT_TASK_TIMEOUT_S,
      cache_policy=MISSION_STEP, persist_result=True, **transient_retries(1))
def run_ruff(sandbox: Sandbox, tools: ToolsConfig, tree: str) -> ToolResult:
    """Lint the worktree with ruff (see :func:`measure_ruff`).

    Args:
        sandbox: the worktree to lint.
        tools: the ``tools`` config.
        tree: content hash of the measured tree (cache-key input only).

    Returns:
        The ``ruff`` result.

    Raises:
        ToolError: ruff is not installed.
    """
    return measure_ruff(sandbox, tools)


# share_cache is left out of the key: it changes how fast the result comes, not the result
@task(name="run-mypy",
      timeout_seconds=LINT_TASK_TIMEOUT_S,
      cache_policy=HostNeutralInputs(exclude=["share_cache"]) + TASK_SOURCE,
      persist_result=True, **transient_retries(1))
def run_mypy(sandbox: Sandbox, env: TargetEnv, tools: ToolsConfig, tree: str,
             share_cache: bool = False) -> ToolResult:
    """Type-check the worktree with mypy (see :func:`measure_mypy`).

    Args:
        sandbox: the worktree to check.
        env: the target environment (mypy resolves imports in its site-packages).
        tools: the ``tools`` config.
        tree: content hash of the measured tree (cache-key input only).
        share_cache: a baseline: start from, and update, the repository's shared mypy cache.

    Returns:
        The ``mypy`` result.

    Raises:
        ToolError: mypy is not installed.
    """
    return measure_mypy(sandbox, env, tools, share_cache)


@task(name="run-bandit",
      timeout_seconds=LINT_TASK_TIMEOUT_S,
      cache_policy=MISSION_STEP, persist_result=True, **transient_retries(1))
def run_bandit(sandbox: Sandbox, tools: ToolsConfig, tree: str) -> ToolResult:
    """Scan the worktree for security issues with bandit (see :func:`measure_bandit`).

    Args:
        sandbox: the worktree to scan.
        tools: the ``tools`` config.
        tree: content hash of the measured tree (cache-key input only).

    Returns:
        The ``bandit`` result.
    """
    return measure_bandit(sandbox, tools)


@task(name="find-todos",
      timeout_seconds=TODO_TASK_TIMEOUT_S,
      cache_policy=MISSION_STEP, persist_result=True, **transient_retries(1))
def find_todos(sandbox: Sandbox, tools: ToolsConfig, tree: str) -> ToolResult:
    """Find TODO/FIXME-style comments in tracked Python files (see :func:`scan_todos`).

    Args:
        sandbox: the worktree to scan.
        tools: the ``tools`` config.
        tree: content hash of the measured tree (cache-key input only).

    Returns:
        The ``todo`` result.

    Raises:
        ToolError: the sandbox is not a git worktree.
    """
    return scan_todos(sandbox, tools)


@task(name="read-logs", timeout_seconds=TODO_TASK_TIMEOUT_S, cache_policy=NO_CACHE,
      **transient_retries(1))
def read_logs(sandbox: Sandbox, tools: ToolsConfig, tree: str) -> ToolResult:
    """Group the tracebacks of ``tools.logs.paths`` into findings (see :func:`measure_logs`).

    Not cached: the logs change while the tree does not.

    Args:
        sandbox: the worktree (frames are mapped onto its files).
        tools: the ``tools`` config.
        tree: content hash of the measured tree (for symmetry with the other tools).

    Returns:
        The ``log`` result.
    """
    return measure_logs(sandbox, tools)


@task(name="merge-findings", timeout_seconds=120,
      cache_policy=NO_CACHE, **transient_retries(1, first_delay_s=1))
def merge_findings(results: Sequence[ToolResult]) -> list[Finding]:
    """Merge every tool's findings into one de-duplicated queue, most important first.

    Args:
        results: the tool results of one measurement.

    Returns:
        The findings ranked by :func:`mendflow.core.findings.rank_findings`, the same
        defect reported by two tools merged into one (:func:`~mendflow.core.findings.merge_cross_tool`).
    """
    return rank_findings(merge_cross_tool(f for result in results for f in result.findings))
