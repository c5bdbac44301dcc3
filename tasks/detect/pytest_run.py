"""Run the target's tests once, under coverage, and turn the reports into findings.

One run of ``<python> -m coverage run -m pytest`` in the sandbox worktree,
with pytest's JUnit XML and coverage's data file written to a private temp
directory, then ``coverage json``. The repository's own pytest config
(testpaths, addopts ...) and coverage config (.coveragerc, setup.cfg,
tox.ini, pyproject.toml) apply because both run from the worktree root.
"""

from __future__ import annotations

import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

from mendflow.core.config import ToolsConfig
from mendflow.core.errors import ToolError
from mendflow.core.models import Sandbox, TargetEnv, TestCase, TestPlan, TestRun, ToolResult
from mendflow.infra.isolation import run_isolated
from mendflow.infra.runner import sandbox_environ
from mendflow.tasks.detect.common import failed_result, tool_environ
from mendflow.tasks.detect.parallel import with_workers
from mendflow.tasks.detect.pytest_config import subproject_pytest
from mendflow.tasks.detect.pytest_coverage import (
    coverage_config_sets_source,
    coverage_report,
    with_contexts,
)
from mendflow.tasks.detect.pytest_hangs import (
    PLUGIN_MODULE,
    STARTUP_SLACK_S,
    EarlyChances,
    Runner,
    SideRun,
    hit_timeout,
    install_plugin,
    known_hangs,
    run_side,
)
from mendflow.tasks.detect.pytest_reports import parse_junit
from mendflow.tasks.detect.run_findings import findings_from_test_run

# pytest exit codes: 0 all passed, 1 some failed, 2 interrupted, 5 no tests collected.
PYTEST_OK_CODES = frozenset({0, 1, 2, 5})
PROBE_TIMEOUT_S = 60.0
_PROBE = ("import importlib.util as u, json; "
          "print(json.dumps([m for m in ('pytest', 'coverage', 'pytest_timeout', 'pytest_cov', "
          "'xdist') if u.find_spec(m) is not None]))")


@lru_cache(maxsize=64)
def _probe(env: TargetEnv, cwd: str) -> frozenset[str]:
    python = str(env.python)
    proc = run_isolated([python, "-c", _PROBE], target_env=env, worktree=Path(cwd),
                        timeout_s=PROBE_TIMEOUT_S, env=sandbox_environ())
    if proc.returncode != 0:
        raise ToolError(f"the target interpreter does not run: {proc.tail(5)}", subject=python,
                        hint="check environment.python, or use the managed-venv environment")
    try:
        return frozenset(json.loads(proc.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        raise ToolError("unexpected answer from the target interpreter", subject=python,
                        hint="check environment.python") from None


def target_modules(env: TargetEnv, cwd: Path) -> frozenset[str]:
    """Return which of pytest, coverage, pytest_timeout and pytest_cov the target env can import.

    Args:
        env: the target environment (``env.python`` is run once per env, then cached).
        cwd: the worktree, the directory the tools will run in.

    Returns:
        The importable module names.

    Raises:
        ToolError: the interpreter is missing or does not run.
    """
    return _probe(env, str(cwd))


SERIAL = ["-n", "0"]
"""pytest-xdist's "no workers": the one run stays in the process coverage measures, whatever
``-n`` the repository's ``addopts`` sets (mendflow spreads a run itself, :mod:`.parallel`)."""


def pytest_command(root: Path, env: TargetEnv, tools: ToolsConfig, out_dir: Path,
                   available: frozenset[str], *, junit: Path | None = None,
                   timeout_s: float | None = None, plugin: bool = False) -> list[str]:
    """Build the command line of the one test run.

    ``--rootdir`` is the worktree, so node ids are relative to it even if a
    config file in a parent directory were found. The config of a project in a
    subdirectory is given with ``-c`` (:func:`subproject_pytest`).

    Args:
        root: the worktree root (to read the coverage config).
        env: the target environment.
        tools: the ``tools`` config (pytest args and timeouts, coverage on/off).
        out_dir: a private directory for the JUnit XML.
        available: what the target env can import (:func:`target_modules`): with
            ``xdist``, ``-n 0`` (:data:`SERIAL`); with
            ``pytest_timeout``, ``--timeout`` is passed (and, with ``plugin``, mendflow's
            per-test timeout plugin is loaded: :mod:`mendflow.tasks.detect.pytest_hangs`); with
            ``pytest_cov`` and coverage enabled, ``--no-cov``, because pytest-cov
            measuring inside ``coverage run`` would leave the outer run with no data.
        junit: the JUnit XML path (default ``out_dir / "junit.xml"``).
        timeout_s: the default per-test timeout, seconds (default
            ``tools.pytest.first_timeout_s``).
        plugin: load mendflow's per-test timeout plugin (its environment comes from
            :func:`mendflow.tasks.detect.pytest_hangs.install_plugin`).

    Returns:
        ``<python> -m coverage run [--source=.] -m pytest ...`` or, with coverage
        disabled, ``<python> -m pytest ...``.
    """
    pytest_args = ["-m", "pytest", "-p", "no:cacheprovider", f"--rootdir={root}",
                   f"--junit-xml={junit or out_dir / 'junit.xml'}", "-o", "junit_family=xunit1",
                   "--continue-on-collection-errors"]
    subproject = subproject_pytest(root)
    if subproject is not None:
        pytest_args.append(f"--config-file={root / subproject.config}")
    if "xdist" in available:  # the repository's `addopts = -n auto` would leave coverage at 0 %
        pytest_args += SERIAL
    if "pytest_timeout" in available:
        seconds = tools.pytest.first_timeout_s if timeout_s is None else timeout_s
        pytest_args.append(f"--timeout={seconds:g}")
        if plugin:
            pytest_args += ["-p", PLUGIN_MODULE]
    if tools.coverage.enabled and "pytest_cov" in available:
        pytest_args.append("--no-cov")
    pytest_args += tools.pytest.args
    if not tools.coverage.enabled:
        return [str(env.python), *pytest_args]
    source = [] if coverage_config_sets_source(root) else ["--source=."]
    return [str(env.python), "-m", "coverage", "run", *source, *pytest_args]


def measure_tests(sandbox: Sandbox, env: TargetEnv, tools: ToolsConfig,
                  plan: TestPlan | None = None, *, impact_file: Path | None = None,
                  select: tuple[str, ...] | None = None, workers: int = 1) -> ToolResult:
    """Run the target's test suite under coverage and report tests and coverage.

    With pytest-timeout in the target env, hanging tests stay cheap (see
    :mod:`mendflow.tasks.detect.pytest_hangs`): each test first runs with its
    timeout from ``plan``, a test that hits it gets a second chance alone with
    ``per_test_timeout_s``, and one with no result then hangs (``timed_out``,
    a ``hang`` finding). The tests that hung in the run ``plan`` was learned
    from run apart, with ``plan.hang_s``, at the same time as the others.

    Args:
        sandbox: the worktree to test (the tools run in ``sandbox.path``).
        env: the target environment whose interpreter runs pytest and coverage.
        tools: the ``tools`` config; ``pytest.run_timeout_s`` (seconds) bounds the
            main run, ``pytest.first_timeout_s`` / ``per_test_timeout_s`` each test.
        plan: per-test timeouts learned from an earlier run
            (:func:`mendflow.core.hangs.plan_test_timeouts`); None: ``first_timeout_s``
            for every test (a baseline).
        impact_file: where to save the test-impact map (which tests reach which
            lines: coverage.py contexts, see :mod:`mendflow.tasks.detect.impact`);
            None records none. Only with coverage enabled.
        select: run only these node ids (or test files), without coverage: the
            first validation of a candidate; None runs the whole suite.
        workers: more than 1 spreads the suite over that many pytest-xdist workers,
            each measured by coverage in parallel mode (needs xdist in the target
            env and coverage enabled; see :mod:`mendflow.tasks.detect.parallel`).

    Returns:
        A ``pytest`` :class:`ToolResult` whose ``test_run`` holds every test case
        (from pytest's JUnit XML) and the line coverage (from coverage.py's JSON);
        findings for failing, erroring and hanging tests, collection errors, slow
        tests and poorly covered source files. ``ok=False`` (with ``error``) when the
        main run timed out, crashed or its reports cannot be read.

    Raises:
        ToolError: the interpreter is missing, or pytest (or coverage, when
            enabled) is not installed in the target environment.
    """
    if not tools.pytest.enabled:
        return ToolResult(tool="pytest", ok=True)
    if select is not None and not select:  # no test reaches the change: nothing to run
        return ToolResult(tool="pytest", ok=True, test_run=TestRun(collected=0))
    available = _require_modules(sandbox, env, tools)
    plan = plan or TestPlan(default_s=tools.pytest.first_timeout_s,
                            hang_s=tools.pytest.hang_timeout_s)
    if select is not None:  # a first validation runs the selected tests without coverage
        tools = tools.model_copy(update={"coverage": tools.coverage.model_copy(
            update={"enabled": False})})
    if select is not None or not tools.coverage.enabled or "xdist" not in available:
        workers = 1  # spread only a whole-suite run under coverage, with xdist there
    result, crashed = _run_suite(sandbox, env, tools, available, plan, impact_file, select,
                                 workers)
    if crashed:  # once more, where only a hang is stopped
        patient = plan.model_copy(update={"default_s": tools.pytest.per_test_timeout_s,
                                          "timeouts": {}})
        result, _ = _run_suite(sandbox, env, tools, available, patient, impact_file, select,
                               workers)
    return result


def _run_suite(sandbox: Sandbox, env: TargetEnv, tools: ToolsConfig, available: frozenset[str],
               plan: TestPlan, impact_file: Path | None, select: tuple[str, ...] | None,
               workers: int) -> tuple[ToolResult, bool]:
    """One run of the suite (:func:`measure_tests`): its result, and whether it failed with
    pytest's internal error under short per-test timeouts (:func:`_stopped_tests_crashed_pytest`)."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mendflow-pytest-") as tmp, ExitStack() as stack:
        out_dir = Path(tmp)
        suite = _Suite(sandbox=sandbox, env=env, tools=tools, out_dir=out_dir,
                       available=available, timeouts="pytest_timeout" in available,
                       environ=tool_environ(sandbox, {"COVERAGE_FILE": str(out_dir / ".coverage")}))
        if suite.timeouts:  # second chances start while the main run goes on
            suite.early = stack.enter_context(EarlyChances(
                sandbox, suite.build, tools, out_dir, suite.environ, suite.runner))
        proc, side = _run_main(suite, plan, impact_file, select, workers)
        failed = _run_failure(proc, out_dir, tools)
        if failed is not None:
            return failed, _stopped_tests_crashed_pytest(proc, plan, tools)
        try:
            junit = parse_junit(out_dir / "junit.xml", sandbox.path)
        except ToolError as err:
            return failed_result("pytest", proc, err.message), False
        cases, coverage, coverage_error, impact = _collect(suite, junit, side, plan, impact_file)
    return _tool_result(sandbox, tools, proc, junit, cases, (coverage, coverage_error, impact),
                        round(time.monotonic() - start, 3), workers), False


def _stopped_tests_crashed_pytest(proc, plan: TestPlan, tools: ToolsConfig) -> bool:
    """Did a run with short per-test timeouts end in pytest's internal error (exit 3)?

    A test stopped by pytest-timeout can break another plugin's hook (hypothesis
    computing a patch for the interrupted example, turned into an error by the
    repository's ``filterwarnings = error``: python-dateutil 4.0.0 on a loaded
    machine); with ``tools.pytest.per_test_timeout_s`` for every test, only a
    hang is stopped.
    """
    return (proc.returncode == 3 and not proc.timed_out
            and plan.default_s < tools.pytest.per_test_timeout_s)


def _require_modules(sandbox: Sandbox, env: TargetEnv, tools: ToolsConfig) -> frozenset[str]:
    """The target env's importable modules; raises ToolError if pytest (or coverage) is missing."""
    available = target_modules(env, sandbox.path)
    needed = ["pytest", *(["coverage"] if tools.coverage.enabled else [])]
    for module in needed:
        if module not in available:
            raise ToolError(f"{module} is not installed in the target environment",
                            subject=str(env.python),
                            hint=f"install {module} there, or use the managed-venv environment")
    return available


@dataclass
class _Suite:
    """What the steps of one :func:`measure_tests` run share (in its temporary directory)."""

    sandbox: Sandbox
    env: TargetEnv
    tools: ToolsConfig
    out_dir: Path
    available: frozenset[str]
    timeouts: bool  # pytest-timeout is in the target env: per-test timeouts and second chances
    environ: dict[str, str]
    early: EarlyChances | None = None  # the second chances (with timeouts)

    def build(self, junit: Path, seconds: float | None = None) -> list[str]:
        """The pytest command line writing ``junit``, with a per-test timeout of ``seconds``."""
        return pytest_command(self.sandbox.path, self.env, self.tools, self.out_dir,
                              self.available, junit=junit, timeout_s=seconds,
                              plugin=self.timeouts)

    @property
    def runner(self) -> Runner:
        """Runs a command isolated in the worktree, the reports' directory writable."""
        return partial(run_isolated, target_env=self.env, worktree=self.sandbox.path,
                       writable=(self.out_dir,))


def _run_main(suite: _Suite, plan: TestPlan, impact_file: Path | None,
              select: tuple[str, ...] | None, workers: int):
    """The main run (and the known hangs' run beside it): ``(ProcessResult, SideRun | None)``."""
    tools, out_dir = suite.tools, suite.out_dir
    command = suite.build(out_dir / "junit.xml", plan.default_s)
    main_env = suite.environ
    if suite.timeouts:
        main_env = install_plugin(out_dir, "main", plan, suite.environ)
        command += [f"--deselect={nodeid}" for nodeid in plan.hung]
    subproject = subproject_pytest(suite.sandbox.path)
    if select is not None:
        command += ["--", *select]
    elif subproject is not None:  # what `pytest` in the project's directory collects
        command += ["--", *subproject.paths]
    if select is None and impact_file is not None and tools.coverage.enabled:
        command, main_env = with_contexts(command, main_env, out_dir)
    if workers > 1:
        command, main_env = with_workers(command, main_env, out_dir, workers)
    return _main_and_known_hangs(suite, command, main_env, plan)


def _run_failure(proc, out_dir: Path, tools: ToolsConfig) -> ToolResult | None:
    """The failed result of a main run that timed out or did not write its report, else None."""
    if proc.timed_out:
        run = TestRun(collected=0, duration_s=proc.duration_s, timed_out=True)
        return failed_result("pytest", proc, f"the test run exceeded "
                             f"{tools.pytest.run_timeout_s:g} s and was killed", test_run=run)
    if proc.returncode not in PYTEST_OK_CODES or not (out_dir / "junit.xml").is_file():
        return failed_result("pytest", proc, f"pytest failed to run (exit {proc.returncode})")
    return None


def _collect(suite: _Suite, junit, side, plan: TestPlan, impact_file: Path | None):
    """Every test case (second chances and known hangs included) and the coverage report.

    Returns:
        ``(cases, coverage report or None, coverage error or None, impact map or None)``;
        the map is the one this run recorded (coverage.py contexts).
    """
    cases = list(junit.cases)
    if suite.early is not None:  # with timeouts
        cases = _with_second_chances(cases, suite.early)
        cases += known_hangs(side, plan)
    coverage, coverage_error, impact = None, None, None
    if suite.tools.coverage.enabled:
        coverage, coverage_error, impact = coverage_report(
            suite.sandbox, suite.env, suite.out_dir, suite.environ, impact_file)
        if not cases and coverage is None:
            coverage_error = None  # no test ran, so there is no coverage data to report
    return cases, coverage, coverage_error, impact


def _tool_result(sandbox: Sandbox, tools: ToolsConfig, proc, junit, cases: list[TestCase],
                 measured, duration: float, workers: int) -> ToolResult:
    """The ``pytest`` ToolResult: the test run, its findings, and a coverage error if any.

    ``measured``: ``(coverage report or None, coverage error or None, impact map or None)``.
    """
    coverage, coverage_error, impact = measured
    run = TestRun(
        collected=len(cases), cases=tuple(cases), duration_s=duration, workers=workers,
        coverage_percent=coverage.percent if coverage else None,
        files=coverage.files if coverage else (),
        collection_errors=tuple(e.path for e in junit.collection_errors),
    )
    findings = tuple(findings_from_test_run(sandbox.path, run, junit.collection_errors, tools,
                                            impact))
    if coverage_error is not None:
        return ToolResult(tool="pytest", findings=findings, test_run=run, ok=False,
                          error=coverage_error, command=proc.args, exit_code=proc.returncode,
                          duration_s=duration)
    return ToolResult(tool="pytest", findings=findings, test_run=run, command=proc.args,
                      exit_code=proc.returncode, duration_s=duration)


def _main_and_known_hangs(suite: _Suite, command: list[str], main_env: dict[str, str],
                          plan: TestPlan):
    """Run the main run and, at the same time, the known hangs' process (if any) and
    the second chances of the tests the main run's timeouts stop (as they stop).

    Returns:
        ``(main ProcessResult, SideRun of the known hangs or None)``.
    """
    runner, out_dir, timeout_s = suite.runner, suite.out_dir, suite.tools.pytest.run_timeout_s
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="main-run") as pool:
        side = None
        if suite.timeouts and plan.hung:
            junit = out_dir / "hung.xml"
            side_env = install_plugin(out_dir, "hung", TestPlan(default_s=plan.hang_s),
                                      suite.environ)
            budget = plan.hang_s * len(plan.hung) + STARTUP_SLACK_S
            side = pool.submit(run_side, suite.sandbox, suite.build(junit, plan.hang_s),
                               plan.hung, junit, side_env, budget, runner)
        main = pool.submit(runner, command, timeout_s=timeout_s, env=main_env)
        if suite.early is not None:
            suite.early.watch(main)
        proc = main.result()
        known: SideRun | None = side.result() if side is not None else None
    return proc, known


def _with_second_chances(cases: list[TestCase], early: EarlyChances) -> list[TestCase]:
    """The main run's cases, each one that hit its timeout replaced by its second chance."""
    stopped = [case for case in cases if hit_timeout(case) or early.named(case)]
    if not stopped:
        return cases
    again = early.results(stopped)
    # what failed after the first stop may be the stopped test's doing: run it again apart
    names = {case.nodeid for case in stopped}
    first = next(i for i, case in enumerate(cases) if case.nodeid in names)
    again.update(early.confirm([case for case in cases[first + 1:] if case.nodeid not in names
                                and case.outcome in ("failed", "error")]))
    return [again.get(case.nodeid, case) for case in cases]
