"""Run the target's tests once, under coverage, and turn the reports into findings.

One run of ``<python> -m coverage run -m pytest`` in the sandbox worktree,
with pytest's JUnit XML and coverage's data file written to a private temp
directory, then ``coverage json``. The repository's own pytest config
(testpaths, addopts ...) and coverage config (.coveragerc, setup.cfg,
tox.ini, pyproject.toml) apply because both run from the worktree root.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from mendflow.core.config import ToolsConfig
from mendflow.core.errors import ToolError
from mendflow.core.models import Sandbox, TargetEnv, TestRun, ToolResult
from mendflow.infra.runner import run_process, sandbox_environ
from mendflow.tasks.detect.common import failed_result, load_pyproject, read_ini, tool_environ, tool_table
from mendflow.tasks.detect.impact import PLUGIN_MODULE, save_impact_map, write_plugin
from mendflow.tasks.detect.parallel import with_workers
from mendflow.tasks.detect.pytest_reports import parse_coverage_json, parse_junit
from mendflow.tasks.detect.run_findings import findings_from_test_run

# pytest exit codes: 0 all passed, 1 some failed, 2 interrupted, 5 no tests collected.
PYTEST_OK_CODES = frozenset({0, 1, 2, 5})
COVERAGE_REPORT_TIMEOUT_S = 600.0
PROBE_TIMEOUT_S = 60.0
_PROBE = ("import importlib.util as u, json; "
          "print(json.dumps([m for m in ('pytest', 'coverage', 'pytest_timeout', 'pytest_cov', "
          "'xdist') if u.find_spec(m) is not None]))")


@lru_cache(maxsize=64)
def _probe(python: str, fingerprint: str, cwd: str) -> frozenset[str]:
    proc = run_process([python, "-c", _PROBE], cwd=Path(cwd), timeout_s=PROBE_TIMEOUT_S,
                       env=sandbox_environ())
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
    return _probe(str(env.python), env.fingerprint, str(cwd))


def coverage_config_sets_source(root: Path) -> bool:
    """Does the repository's coverage config choose what to measure (``source``/``include``)?

    coverage.py reads the first of ``.coveragerc``, ``setup.cfg`` ([coverage:run]),
    ``tox.ini`` ([coverage:run]) and ``pyproject.toml`` ([tool.coverage.run]) that
    has coverage settings; this looks at the same files in the same order.

    Args:
        root: the worktree root.

    Returns:
        True if that config sets ``source``, ``source_pkgs`` or ``include`` in its run section.
    """
    keys = ("source", "source_pkgs", "include")
    rc = root / ".coveragerc"
    if rc.is_file():
        parser = read_ini(rc)
        return bool(parser and parser.has_section("run")
                    and any(parser.get("run", k, fallback="").strip() for k in keys))
    for name in ("setup.cfg", "tox.ini"):
        parser = read_ini(root / name)
        if parser is None:
            continue
        sections = [s for s in parser.sections() if s.startswith("coverage:")]
        if sections:
            return parser.has_section("coverage:run") and any(
                parser.get("coverage:run", k, fallback="").strip() for k in keys)
    table = tool_table(load_pyproject(root), "coverage")
    run = (table or {}).get("run")
    return isinstance(run, dict) and any(run.get(k) for k in keys)


def pytest_command(root: Path, env: TargetEnv, tools: ToolsConfig, out_dir: Path,
                   available: frozenset[str]) -> list[str]:
    """Build the command line of the one test run.

    ``--rootdir`` is the worktree, so node ids are relative to it even if a
    config file in a parent directory were found.

    Args:
        root: the worktree root (to read the coverage config).
        env: the target environment.
        tools: the ``tools`` config (pytest args and timeouts, coverage on/off).
        out_dir: a private directory for the JUnit XML.
        available: what the target env can import (:func:`target_modules`): with
            ``pytest_timeout``, ``--timeout`` is passed; with ``pytest_cov`` and coverage
            enabled, ``--no-cov``, because pytest-cov measuring inside ``coverage run``
            would leave the outer run with no data.

    Returns:
        ``<python> -m coverage run [--source=.] -m pytest ...`` or, with coverage
        disabled, ``<python> -m pytest ...``.
    """
    pytest_args = ["-m", "pytest", "-p", "no:cacheprovider", f"--rootdir={root}",
                   f"--junit-xml={out_dir / 'junit.xml'}", "-o", "junit_family=xunit1",
                   "--continue-on-collection-errors"]
    if "pytest_timeout" in available:
        pytest_args.append(f"--timeout={tools.pytest.per_test_timeout_s:g}")
    if tools.coverage.enabled and "pytest_cov" in available:
        pytest_args.append("--no-cov")
    pytest_args += tools.pytest.args
    if not tools.coverage.enabled:
        return [str(env.python), *pytest_args]
    source = [] if coverage_config_sets_source(root) else ["--source=."]
    return [str(env.python), "-m", "coverage", "run", *source, *pytest_args]


def measure_tests(sandbox: Sandbox, env: TargetEnv, tools: ToolsConfig, *,
                  impact_file: Path | None = None,
                  select: tuple[str, ...] | None = None, workers: int = 1) -> ToolResult:
    """Run the target's test suite once under coverage and report tests and coverage.

    Args:
        sandbox: the worktree to test (the tools run in ``sandbox.path``).
        env: the target environment whose interpreter runs pytest and coverage.
        tools: the ``tools`` config; ``pytest.run_timeout_s`` (seconds) bounds the
            whole run, ``pytest.per_test_timeout_s`` (seconds) each test.
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
        findings for failing/erroring tests, collection errors, slow tests and
        poorly covered source files. ``ok=False`` (with ``error``) when the run
        timed out, crashed or its reports cannot be read.

    Raises:
        ToolError: the interpreter is missing, or pytest (or coverage, when
            enabled) is not installed in the target environment.
    """
    if not tools.pytest.enabled:
        return ToolResult(tool="pytest", ok=True)
    if select is not None and not select:  # no test reaches the change: nothing to run
        return ToolResult(tool="pytest", ok=True, test_run=TestRun(collected=0))
    available = target_modules(env, sandbox.path)
    needed = ["pytest", *(["coverage"] if tools.coverage.enabled else [])]
    for module in needed:
        if module not in available:
            raise ToolError(f"{module} is not installed in the target environment",
                            subject=str(env.python),
                            hint=f"install {module} there, or use the managed-venv environment")
    with tempfile.TemporaryDirectory(prefix="mendflow-pytest-") as tmp:
        out_dir = Path(tmp)
        environ = tool_environ(sandbox, {"COVERAGE_FILE": str(out_dir / ".coverage")})
        if select is not None:
            tools = tools.model_copy(update={"coverage": tools.coverage.model_copy(
                update={"enabled": False})})
        command = pytest_command(sandbox.path, env, tools, out_dir, available)
        if select is not None:
            command += ["--", *select]
        elif impact_file is not None and tools.coverage.enabled:
            command, environ = _with_contexts(command, environ, out_dir)
        if workers > 1 and select is None and tools.coverage.enabled and "xdist" in available:
            command, environ = with_workers(command, environ, out_dir, workers)
        proc = run_process(command, cwd=sandbox.path, timeout_s=tools.pytest.run_timeout_s,
                           env=environ)
        if proc.timed_out:
            run = TestRun(collected=0, duration_s=proc.duration_s, timed_out=True)
            return failed_result("pytest", proc, f"the test run exceeded "
                                 f"{tools.pytest.run_timeout_s:g} s and was killed", test_run=run)
        if proc.returncode not in PYTEST_OK_CODES or not (out_dir / "junit.xml").is_file():
            return failed_result("pytest", proc, f"pytest failed to run (exit {proc.returncode})")
        try:
            junit = parse_junit(out_dir / "junit.xml", sandbox.path)
        except ToolError as err:
            return failed_result("pytest", proc, err.message)
        coverage, coverage_error = None, None
        if tools.coverage.enabled:
            coverage, coverage_error = _coverage_report(sandbox, env, out_dir, environ,
                                                        impact_file)
            if not junit.cases and coverage is None:
                coverage_error = None  # no test ran, so there is no coverage data to report
    run = TestRun(
        collected=len(junit.cases), cases=junit.cases, duration_s=proc.duration_s,
        coverage_percent=coverage.percent if coverage else None,
        files=coverage.files if coverage else (),
        collection_errors=tuple(e.path for e in junit.collection_errors),
    )
    findings = tuple(findings_from_test_run(sandbox.path, run, junit.collection_errors, tools))
    if coverage_error is not None:
        return ToolResult(tool="pytest", findings=findings, test_run=run, ok=False,
                          error=coverage_error, command=proc.args, exit_code=proc.returncode,
                          duration_s=proc.duration_s)
    return ToolResult(tool="pytest", findings=findings, test_run=run, command=proc.args,
                      exit_code=proc.returncode, duration_s=proc.duration_s)


def _with_contexts(command: list[str], environ: dict[str, str],
                   out_dir: Path) -> tuple[list[str], dict[str, str]]:
    """Load the context-switching plugin (from ``out_dir``) into the test run."""
    write_plugin(out_dir)
    path = environ.get("PYTHONPATH")
    environ = {**environ, "PYTHONPATH": str(out_dir) + (os.pathsep + path if path else "")}
    at = command.index("pytest") + 1
    return [*command[:at], "-p", PLUGIN_MODULE, *command[at:]], environ


def _coverage_report(sandbox: Sandbox, env: TargetEnv, out_dir: Path, environ: dict[str, str],
                     impact_file: Path | None = None):
    """Combine parallel data files if any, write ``coverage json`` and parse it.

    With ``impact_file``, the report shows contexts and the impact map is saved there.

    Returns:
        ``(report, None)``, or ``(None, error text)`` when coverage failed.
    """
    python = str(env.python)
    if any(out_dir.glob(".coverage.*")):  # the repo's config sets parallel = True
        run_process([python, "-m", "coverage", "combine"], cwd=sandbox.path,
                    timeout_s=COVERAGE_REPORT_TIMEOUT_S, env=environ)
    report = out_dir / "coverage.json"
    contexts = ["--show-contexts"] if impact_file is not None else []
    proc = run_process([python, "-m", "coverage", "json", "-i", *contexts, "-o", str(report)],
                       cwd=sandbox.path, timeout_s=COVERAGE_REPORT_TIMEOUT_S, env=environ)
    if not report.is_file():  # exit 2 only means fail_under was not met
        return None, f"coverage json failed (exit {proc.returncode}):\n{proc.tail(20)}"
    if impact_file is not None:
        save_impact_map(report, sandbox.path, impact_file)
    try:
        return parse_coverage_json(report, sandbox.path), None
    except ToolError as err:
        return None, err.message
