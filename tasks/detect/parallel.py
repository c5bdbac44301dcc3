"""The test suite spread over the cores, under coverage, where the suite allows it.

``python -m pytest -n N --dist loadscope``: pytest-xdist runs the tests in N
worker processes, and a small plugin (written to the run's private temp
directory, loaded with ``-p``, so imported in every worker before any
conftest) starts a coverage.py measurement in each worker, which saves its own
data file (parallel mode); the detector then combines them (``coverage
combine``) before ``coverage json``, as for a repository whose config sets
``parallel = True``. The controller, which only hands out tests and gathers
reports, is not measured: under coverage's tracer its own Python would cost
several times its plain time. Whether a run is spread at all is decided by
:func:`mendflow.core.spread.plan_workers`.

:func:`measure_tests_spread` falls back to the one serial run when the suite
does not allow it: xdist or the run failed, or a test that failed among the
workers passes when its file runs serially (the suite's tests depend on each
other or on running in one process). ``--dist loadscope`` keeps a module's
test functions, or one class's tests, in one worker, in order: a suite of
one big test module of test classes (more-itertools) still spreads, where
``loadfile`` would leave it on one worker.
"""

from __future__ import annotations

import os
from pathlib import Path

from mendflow.core.config import ToolsConfig
from mendflow.core.models import Sandbox, TargetEnv, ToolResult
from mendflow.tasks.detect.common import first_on_pythonpath

WORKER_PLUGIN = "mendflow_xdist_coverage"
DIST_MODE = "loadscope"
"""xdist's scheduling: a module's test functions, or one class's tests, stay in one
worker, in order (module- and class-scoped fixtures are set up once)."""
WORKER_SOURCE = '''\
"""mendflow: measure each pytest-xdist worker with coverage.py (parallel mode)."""
import os

_cov = None
if os.environ.get("PYTEST_XDIST_WORKER"):
    import coverage

    _source = os.environ.get("MENDFLOW_COVERAGE_SOURCE")
    _cov = coverage.Coverage(data_suffix=True, source=[_source] if _source else None)
    _cov.start()


def pytest_unconfigure(config):
    if _cov is not None:
        _cov.stop()
        _cov.save()
'''


def default_workers() -> int:
    """One worker per core this process may use (at least 1)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)


def with_workers(command: list[str], environ: dict[str, str], out_dir: Path,
                 workers: int) -> tuple[list[str], dict[str, str]]:
    """Turn the ``coverage run ... -m pytest ...`` command into its xdist form.

    Args:
        command: the serial command (:func:`~mendflow.tasks.detect.pytest_run.pytest_command`).
        environ: its environment.
        out_dir: the run's private temp directory (the plugin is written there).
        workers: the number of xdist workers.

    Returns:
        The command (``python -m pytest -p`` the worker plugin ``-n N --dist loadscope``) and
        its environment (the plugin's directory on ``PYTHONPATH``, the source to measure).
    """
    (out_dir / f"{WORKER_PLUGIN}.py").write_text(WORKER_SOURCE, encoding="utf-8")
    at = command.index("pytest") + 1
    python, pytest_args = command[0], _without_serial(command[at:])
    measure_all = "--source=." in command[:at]
    # the controller only hands out tests and gathers reports: it runs outside
    # coverage (traced, xdist's own Python would cost several times its plain time)
    command = [python, "-m", "pytest", "-p", WORKER_PLUGIN, "-n", str(workers),
               "--dist", DIST_MODE, *pytest_args]
    environ = first_on_pythonpath(environ, out_dir)
    if measure_all:
        environ["MENDFLOW_COVERAGE_SOURCE"] = "."
    return command, environ


def _without_serial(args: list[str]) -> list[str]:
    """``args`` without the ``-n 0`` that keeps a serial run serial."""
    for at in range(len(args) - 1):
        if args[at:at + 2] == ["-n", "0"]:
            return args[:at] + args[at + 2:]
    return args


def measure_tests_spread(sandbox: Sandbox, env: TargetEnv, tools: ToolsConfig, *,
                         plan=None, impact_file: Path | None = None,
                         workers: int = 1) -> ToolResult:
    """Run the suite over ``workers`` xdist workers, else (or when unsafe) serially.

    Args:
        sandbox: the worktree to test.
        env: the target environment.
        tools: the ``tools`` config.
        impact_file: where to save the test-impact map (None: none).
        workers: xdist workers; 1 (or no xdist in the target env, or coverage
            disabled) runs serially.

    Returns:
        The ``pytest`` result (see :func:`~mendflow.tasks.detect.pytest_run.measure_tests`).

    Raises:
        ToolError: pytest, coverage or the interpreter is missing from the target env.
    """
    from mendflow.tasks.detect.pytest_run import measure_tests, target_modules

    serial = dict(plan=plan, impact_file=impact_file)
    if workers <= 1 or not tools.coverage.enabled or \
            "xdist" not in target_modules(env, sandbox.path):
        return measure_tests(sandbox, env, tools, **serial)
    spread = measure_tests(sandbox, env, tools, plan=plan, impact_file=impact_file,
                           workers=workers)
    if not spread.ok or spread.test_run is None or spread.test_run.timed_out:
        return measure_tests(sandbox, env, tools, **serial)
    failing = {c.nodeid for c in spread.test_run.cases if c.outcome in ("failed", "error")}
    if failing:  # do they fail in one process too? (their files, serially)
        files = tuple(sorted({nodeid.split("::", 1)[0] for nodeid in failing}))
        alone = measure_tests(sandbox, env, tools, select=files)
        if not alone.ok or alone.test_run is None or any(
                c.outcome == "passed" and c.nodeid in failing for c in alone.test_run.cases):
            return measure_tests(sandbox, env, tools, **serial)
    return spread
