"""Hanging tests kept cheap: a short first timeout, a second chance, learned timeouts.

A test run (see :func:`mendflow.tasks.detect.pytest_run.measure_tests`) is up to
three kinds of pytest process, each under ``coverage run`` with its own data
file and JUnit XML:

1. **the main run**: every test, each with its timeout from a
   :class:`~mendflow.core.models.TestPlan` (``first_timeout_s`` at baseline;
   learned from the baseline in validation, see :mod:`mendflow.core.hangs`).
   pytest-timeout applies them: a small pytest plugin written next to the
   reports (:data:`PLUGIN_SOURCE`) marks each collected test with
   ``pytest.mark.timeout(seconds)``, after the repository's own timeout marker
   if the test has one (the repository's marker wins);
2. **the known hangs** (validation only): the tests that hung in the run
   compared with, deselected from the main run and run at the same time in a
   process of their own with ``hang_timeout_s``: no second chance;
3. **second chances**: every test that hit its timeout in the main run runs
   again alone, in parallel (at most ``second_chance_workers`` processes),
   with ``per_test_timeout_s``. A genuinely slow test passes there; a test
   with no result again *hangs* (``TestCase.timed_out``).

A timeout is recognized by pytest-timeout's failure message in the JUnit XML
(``Timeout (>2.0s) from pytest-timeout.``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mendflow.core.config import ToolsConfig
from mendflow.core.errors import ToolError
from mendflow.core.models import Sandbox, TestCase, TestPlan
from mendflow.infra.runner import ProcessResult
from mendflow.tasks.detect.pytest_reports import JUnitReport, parse_junit

Runner = Callable[..., ProcessResult]
"""``runner(argv, timeout_s=..., env=...) -> ProcessResult``: runs one pytest process."""

PLUGIN_MODULE = "mendflow_test_timeouts"
PLAN_ENV = "MENDFLOW_TEST_TIMEOUTS"
PLUGIN_SOURCE = '''"""mendflow's per-test timeouts (written by mendflow; loaded with -p)."""
import json
import os

import pytest


def pytest_collection_modifyitems(items):
    with open(os.environ["PLAN_ENV"], encoding="utf-8") as handle:
        plan = json.load(handle)
    for item in items:
        seconds = plan["timeouts"].get(item.nodeid, plan["default_s"])
        item.add_marker(pytest.mark.timeout(seconds), append=True)
'''.replace("PLAN_ENV", PLAN_ENV)
TIMEOUT_MESSAGE = re.compile(r"Timeout \(>[\d.]+s\) from pytest-timeout|Timeout >[\d.]+s")
STARTUP_SLACK_S = 120.0
"""Seconds a side process may take beyond its tests' timeouts (startup, coverage)."""


@dataclass(frozen=True)
class SideRun:
    """One extra pytest process: its process result and its JUnit report (None: unreadable)."""

    proc: ProcessResult
    junit: JUnitReport | None


def install_plugin(out_dir: Path, name: str, plan: TestPlan,
                   environ: dict[str, str]) -> dict[str, str]:
    """Write the plugin and a plan file; return the environment that loads them.

    Args:
        out_dir: the run's private directory.
        name: the process's name (``main``, ``hung``, ``second-3`` ...).
        plan: the timeouts of the tests of that process.
        environ: the tool environment to extend.

    Returns:
        ``environ`` with the plugin directory first on ``PYTHONPATH``, the plan
        file in :data:`PLAN_ENV` and ``COVERAGE_FILE`` private to the process
        (``.coverage`` for ``main``, ``.coverage.<name>`` else).
    """
    plugin_dir = out_dir / "plugin"
    plugin_dir.mkdir(exist_ok=True)
    (plugin_dir / f"{PLUGIN_MODULE}.py").write_text(PLUGIN_SOURCE, encoding="utf-8")
    plan_file = out_dir / f"timeouts-{name}.json"
    plan_file.write_text(json.dumps({"default_s": plan.default_s, "timeouts": plan.timeouts}),
                         encoding="utf-8")
    path = [str(plugin_dir), *([environ["PYTHONPATH"]] if environ.get("PYTHONPATH") else [])]
    coverage = out_dir / (".coverage" if name == "main" else f".coverage.{name}")
    return {**environ, "PYTHONPATH": ":".join(path), PLAN_ENV: str(plan_file),
            "COVERAGE_FILE": str(coverage)}


def hit_timeout(case: TestCase) -> bool:
    """Did pytest-timeout stop this test (its failure or error message says so)?"""
    if case.outcome not in ("failed", "error"):
        return False
    return bool(TIMEOUT_MESSAGE.search(case.message or "") or
                TIMEOUT_MESSAGE.search((case.detail or "")[-2000:]))


def as_hang(case: TestCase, seconds: float, again: bool) -> TestCase:
    """The case of a test that hung: failed, ``timed_out``, one clear message."""
    note = " (it hung in the run compared with too)" if again else ""
    return case.model_copy(update={
        "outcome": "failed", "timed_out": True,
        "message": f"hangs: no result within {seconds:g} s (stopped by pytest-timeout){note}"})


def run_side(sandbox: Sandbox, command: Sequence[str], node_ids: Sequence[str], junit: Path,
             environ: dict[str, str], timeout_s: float, runner: Runner) -> SideRun:
    """Run some tests by node id in one extra pytest process.

    Args:
        sandbox: the worktree.
        command: the run's command line up to its test arguments, with ``--junit-xml=junit``.
        node_ids: the tests to run.
        junit: where this process writes its JUnit XML.
        environ: its environment (:func:`install_plugin`).
        timeout_s: seconds for the whole process.
        runner: ``runner(argv, timeout_s=..., env=...)``, the sandboxed process runner
            (:func:`mendflow.infra.isolation.run_isolated` bound to the worktree).

    Returns:
        The :class:`SideRun` (``junit`` None when pytest wrote no readable report).
    """
    proc = runner([*command, *node_ids], timeout_s=timeout_s, env=environ)
    try:
        report = parse_junit(junit, sandbox.path) if junit.is_file() else None
    except ToolError:
        report = None
    return SideRun(proc, report)


def second_chances(sandbox: Sandbox, build, cases: Sequence[TestCase], tools: ToolsConfig,
                   out_dir: Path, environ: dict[str, str], runner: Runner) -> dict[str, TestCase]:
    """Run each timed-out test again alone, in parallel, with ``per_test_timeout_s``.

    Args:
        sandbox: the worktree.
        build: ``build(junit_path) -> command`` (the run's command line, no test arguments).
        cases: the main run's cases that hit their timeout.
        tools: the ``tools`` config (``pytest.per_test_timeout_s``,
            ``pytest.second_chance_workers``).
        out_dir: the run's private directory.
        environ: the tool environment.
        runner: the sandboxed process runner (see :func:`run_side`).

    Returns:
        Node id -> its case after the second chance: passed, failed ... or,
        with no result again, a hang (:func:`as_hang`).
    """
    longest = tools.pytest.per_test_timeout_s
    plan = TestPlan(default_s=longest)

    def one(index: int, case: TestCase) -> TestCase:
        name = f"second-{index}"
        junit = out_dir / f"{name}.xml"
        side = run_side(sandbox, build(junit), [case.nodeid], junit,
                        install_plugin(out_dir, name, plan, environ), longest + STARTUP_SLACK_S,
                        runner)
        again = next((c for c in (side.junit.cases if side.junit else ())
                      if c.nodeid == case.nodeid), None)
        if again is None or hit_timeout(again):
            return as_hang(again or case, longest, again=False)
        return again

    workers = max(1, min(tools.pytest.second_chance_workers, len(cases)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="second-chance") as pool:
        done = list(pool.map(lambda item: one(*item), enumerate(cases)))
    return {case.nodeid: again for case, again in zip(cases, done, strict=True)}


def known_hangs(side: SideRun | None, plan: TestPlan) -> list[TestCase]:
    """The cases of the tests that hung in the run compared with, from their own process.

    A test that hits ``plan.hang_s`` again hangs again (no second chance). If
    the process left no report (it was killed: a hang that ignores pytest-timeout's
    signal), each of its tests hangs again; a test missing from a report is gone.
    """
    if side is None:
        return []
    if side.junit is None:
        return [as_hang(TestCase(nodeid=nodeid, outcome="failed", path=nodeid.split("::")[0]),
                        plan.hang_s, again=True) for nodeid in plan.hung]
    return [as_hang(case, plan.hang_s, again=True) if hit_timeout(case) else case
            for case in side.junit.cases]
