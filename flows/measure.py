"""One measurement of the sandbox's tree: every detector concurrently, then combined.

Composes the detect tasks (:mod:`mendflow.tasks.detect`) and the bookkeeping
tasks; used for the baseline, every full validation run and the heal flow.
"""

from __future__ import annotations

from prefect.utilities.annotations import opaque

from mendflow.core.config import MendflowConfig
from mendflow.core.errors import ValidationUnavailable
from mendflow.core.hangs import plan_test_timeouts
from mendflow.core.models import Measurement, Sandbox, TargetEnv, TestPlan
from mendflow.core.spread import (
    OTHER_TOOLS,
    SuiteCost,
    cost_from_history,
    cost_of_run,
    plan_workers,
)
from mendflow.infra.layout import StateLayout
from mendflow.infra.progress import report_progress
from mendflow.infra.timeouts import load_history
from mendflow.tasks.bookkeeping import compute_measurement
from mendflow.tasks.detect import (
    find_todos,
    merge_findings,
    read_logs,
    run_bandit,
    run_mypy,
    run_pytest,
    run_ruff,
)
from mendflow.tasks.detect.parallel import default_workers
from mendflow.tasks.preflight import plan_baseline_tests, record_tool_durations
from mendflow.tasks.sandbox import hash_tree


def measure(sandbox: Sandbox, env: TargetEnv, config: MendflowConfig, *, label: str,
            compared_with: Measurement | None = None) -> Measurement:
    """Run every detector concurrently on the sandbox's current tree and combine them.

    ``compared_with`` (a candidate's validation: the measurement it is judged
    against) gives each test a timeout learned from its duration there, and
    runs the tests that hung there with a short one (:mod:`mendflow.core.hangs`).
    ``label="baseline"`` (no patch applied yet) also shares mypy's cache with the
    repository's next missions (:mod:`mendflow.infra.tool_cache`).

    Raises:
        ValidationUnavailable: the baseline test run could not complete.
    """
    report_progress("detect", f"measuring {label}")
    tree = hash_tree(sandbox)
    tools = config.tools
    impact = config.validation.select_tests and tools.coverage.enabled
    workers = plan_workers(config.validation.test_workers, default_workers(),
                           _suite_cost(sandbox, compared_with, config))
    futures = [
        run_pytest.submit(sandbox, env, tools, tree, _test_plan(sandbox, tree, label,
                                                                 compared_with, config),
                          impact, workers),
        run_ruff.submit(sandbox, tools, tree),
        # a baseline runs no patch yet: its mypy cache may seed the next mission's
        run_mypy.submit(sandbox, env, tools, tree, share_cache=label == "baseline"),
        run_bandit.submit(sandbox, tools, tree),
        find_todos.submit(sandbox, tools, tree),
        *([read_logs.submit(sandbox, tools, tree)] if tools.logs.enabled else []),
    ]
    results = [f.result() for f in futures]
    # opaque(): Prefect links the upstream task runs but does not walk through
    # every finding of these large inputs (that walk dominated a cached replay)
    record_tool_durations(sandbox.repo_root, opaque(results), config.mission.state_dir)
    findings = merge_findings(opaque(results))
    measurement = compute_measurement(sandbox, tree, opaque(results), opaque(findings),
                                      config.score)
    pytest_result = measurement.result_of("pytest")
    if label == "baseline" and pytest_result is not None and not pytest_result.ok:
        timed_out = pytest_result.test_run is not None and pytest_result.test_run.timed_out
        raise ValidationUnavailable(
            f"the baseline test run failed to complete: {pytest_result.error or 'unknown error'}",
            subject="pytest", hint="raise tools.pytest.run_timeout_s" if timed_out else
            "fix the test setup (the output above says why the run failed), or name missing "
            "packages in environment.extra_packages")
    report_progress("detect", f"{label}: {len(findings)} findings, score {measurement.score}")
    if label == "baseline":
        for failed in (r for r in measurement.results if not r.ok):
            first = (failed.error or "failed").splitlines()[0]
            report_progress("detect", f"baseline: {failed.tool} did not complete ({first}); "
                                      "its findings are missing")
    return measurement


def _suite_cost(sandbox: Sandbox, compared_with: Measurement | None,
                config: MendflowConfig) -> SuiteCost | None:
    """What the suite and the tools beside it took last time: the measurement compared
    with, else the repository's duration history (None at a first baseline)."""
    if config.validation.test_workers >= 1:
        return None  # fixed by the config: nothing to decide
    run = compared_with.test_run if compared_with is not None else None
    if compared_with is not None and run is not None and run.cases:
        others = [r.duration_s for r in compared_with.results if r.tool in OTHER_TOOLS]
        return cost_of_run(run, others)
    return cost_from_history(load_history(sandbox.repo_root,
                                          StateLayout.of(config.mission.state_dir)))


def _test_plan(sandbox: Sandbox, tree: str, label: str, compared_with: Measurement | None,
               config: MendflowConfig) -> TestPlan | None:
    """The tests' timeouts: learned from the measurement compared with; at a baseline,
    from the repository's earlier runs (None: every test gets the first timeout)."""
    tools = config.tools
    if compared_with is None:
        return plan_baseline_tests(sandbox, tree, tools.pytest, config.mission.state_dir) \
            if label == "baseline" else None
    result = compared_with.result_of("pytest")
    run = result.test_run if result is not None and result.ok else None
    return plan_test_timeouts(run, tools.pytest) if run is not None else None
