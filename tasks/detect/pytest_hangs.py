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
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mendflow.core.config import ToolsConfig
from mendflow.core.errors import ToolError
from mendflow.core.models import Sandbox, TestCase, TestPlan
from mendflow.infra.runner import ProcessResult
from mendflow.tasks.detect.common import first_on_pythonpath
from mendflow.tasks.detect.pytest_reports import JUnitReport, parse_junit

Runner = Callable[..., ProcessResult]
"""``runner(argv, timeout_s=..., env=...) -> ProcessResult``: runs one pytest process."""

PLUGIN_MODULE = "mendflow_test_timeouts"
PLAN_ENV = "MENDFLOW_TEST_TIMEOUTS"
TIMED_OUT_ENV = "MENDFLOW_TIMED_OUT"
TIMEOUT_PATTERN = r"Timeout \(>[\d.]+s\) from pytest-timeout|Timeout >[\d.]+s"
PLUGIN_SOURCE = '''"""mendflow's per-test timeouts (written by mendflow; loaded with -p)."""
import json
import os
import re
import signal
import sys
import threading

import pytest

_TIMEOUT = re.compile(TIMEOUT_PATTERN)
_SECONDS = {}  # node id -> its timeout
_STOPPED = set()  # node ids whose timeout stopped them
_FIRED = set()  # node ids whose pytest-timeout alarm went off, whatever their exception says
_EXIT = [0]
_NOTE_CHARS = 4000
_REPORT_CHARS = 200000


def pytest_collection_modifyitems(items):
    with open(os.environ["PLAN_ENV"], encoding="utf-8") as handle:
        plan = json.load(handle)
    for item in items:
        seconds = _SECONDS[item.nodeid] = plan["timeouts"].get(item.nodeid, plan["default_s"])
        item.add_marker(pytest.mark.timeout(seconds), append=True)


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_protocol(item):
    # inside pytest-timeout's wrapper: its alarm handler is set; note when it fires, since
    # a library can wrap its exception (hypothesis: FlakyFailure) so that no text says so
    handler = signal.getsignal(signal.SIGALRM) if hasattr(signal, "SIGALRM") else None
    if callable(handler) and threading.current_thread() is threading.main_thread():
        def fired(signum, frame):
            _FIRED.add(item.nodeid)
            handler(signum, frame)
        signal.signal(signal.SIGALRM, fired)
    yield


def _trim_notes(error):
    # hypothesis notes "while drawing from <strategy>" on an interrupted draw: the repr of a
    # recursive strategy reached 557 MB (cattrs), and pytest's JUnit XML ran out of memory
    stack, seen = [error], set()
    while stack:
        exc = stack.pop()
        if not isinstance(exc, BaseException) or id(exc) in seen:
            continue
        seen.add(id(exc))
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list):
            notes[:] = [note[:_NOTE_CHARS] + f" [... {len(note) - _NOTE_CHARS} characters cut]"
                        if isinstance(note, str) and len(note) > _NOTE_CHARS else note
                        for note in notes]
        stack.extend([exc.__cause__, exc.__context__, *(getattr(exc, "exceptions", None) or ())])


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    if call.excinfo is not None:
        _trim_notes(call.excinfo.value)
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.longrepr is not None:
        text = str(report.longrepr)
        if len(text) > _REPORT_CHARS:
            half = _REPORT_CHARS // 2
            report.longrepr = (text[:half] + f"\\n[... {len(text) - 2 * half} characters cut "
                               "by mendflow ...]\\n" + text[-half:])


def pytest_runtest_logreport(report):
    if not report.failed or not (report.nodeid in _FIRED
                                 or _TIMEOUT.search(str(report.longrepr)[-2000:])):
        return
    _STOPPED.add(report.nodeid)
    # name each test stopped by its timeout at once: its second chance starts meanwhile
    path = os.environ.get("TIMED_OUT_ENV")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(report.nodeid + "\\n")


def _stuck(signum, frame):
    pytest.fail("teardown stopped: still running after the test was stopped by its timeout")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_teardown(item):
    # a test stopped by its timeout can leave a thread blocked for good, and a fixture's
    # teardown waiting on it (an event loop closing its executor): pytest-timeout no longer
    # watches the teardown, so it gets the test's own timeout here
    armed = (item.nodeid in _STOPPED and hasattr(signal, "setitimer")
             and threading.current_thread() is threading.main_thread())
    if armed:
        previous = signal.signal(signal.SIGALRM, _stuck)
        signal.setitimer(signal.ITIMER_REAL, max(_SECONDS.get(item.nodeid, 2.0), 1.0))
    try:
        yield
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def pytest_sessionfinish(session, exitstatus):
    _EXIT[0] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    # the interpreter's exit joins every non-daemon thread: one that a stopped test left
    # blocked would hold it forever, after the reports are written. Save coverage, leave.
    if not _STOPPED or not [t for t in threading.enumerate() if t.is_alive() and not t.daemon
                            and t is not threading.main_thread()]:
        return
    try:
        import coverage
        current = coverage.Coverage.current()
        if current is not None:
            current.stop()
            current.save()
    except Exception:  # no coverage, or an old one: the reports are written already
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT[0])
'''.replace("PLAN_ENV", PLAN_ENV).replace("TIMED_OUT_ENV", TIMED_OUT_ENV).replace(
    "TIMEOUT_PATTERN", repr(TIMEOUT_PATTERN))
TIMEOUT_MESSAGE = re.compile(TIMEOUT_PATTERN)
TIMED_OUT_FILE = "timed-out-main.txt"
"""The main run's plugin appends there the node id of each test its timeout stops."""
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
    coverage = out_dir / (".coverage" if name == "main" else f".coverage.{name}")
    streamed = {TIMED_OUT_ENV: str(out_dir / TIMED_OUT_FILE)} if name == "main" else {}
    return {**first_on_pythonpath(environ, plugin_dir), PLAN_ENV: str(plan_file),
            "COVERAGE_FILE": str(coverage), **streamed}


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


def _rerun(sandbox: Sandbox, build, nodeid: str, name: str, tools: ToolsConfig,
           out_dir: Path, environ: dict[str, str], runner: Runner) -> TestCase | None:
    """One second chance: ``nodeid`` alone with ``per_test_timeout_s``; its case, or None."""
    longest = tools.pytest.per_test_timeout_s
    junit = out_dir / f"{name}.xml"
    side = run_side(sandbox, build(junit), [nodeid], junit,
                    install_plugin(out_dir, name, TestPlan(default_s=longest), environ),
                    longest + STARTUP_SLACK_S, runner)
    return next((c for c in (side.junit.cases if side.junit else ()) if c.nodeid == nodeid), None)


def _judged(case: TestCase, again: TestCase | None, longest: float) -> TestCase:
    """The case after its second chance: its new result, or a hang when it has none again."""
    if again is None or hit_timeout(again):
        return as_hang(again or case, longest, again=False)
    return again


class EarlyChances:
    """Second chances started while the main run goes on, as its tests hit their timeouts.

    The main run's plugin appends the node id of each test its timeout stops to
    :data:`TIMED_OUT_FILE`; :meth:`watch` starts that test's second chance at
    once (at most ``second_chance_workers`` at a time), so it runs beside the rest
    of the suite instead of after it. :meth:`results` then judges every stopped
    case of the main run's report, starting the ones not seen yet. Use as a
    context manager: leaving it waits for every second chance started.
    """

    def __init__(self, sandbox: Sandbox, build, tools: ToolsConfig, out_dir: Path,
                 environ: dict[str, str], runner: Runner) -> None:
        self._rerun = partial(_rerun, sandbox, build, tools=tools, out_dir=out_dir,
                              environ=environ, runner=runner)
        self._together = partial(_rerun_together, sandbox, build, tools=tools, out_dir=out_dir,
                                 environ=environ, runner=runner)
        self._longest = tools.pytest.per_test_timeout_s
        self._file = out_dir / TIMED_OUT_FILE
        self._pool = ThreadPoolExecutor(max_workers=tools.pytest.second_chance_workers,
                                        thread_name_prefix="second-chance")
        self._started: dict[str, Future[TestCase | None]] = {}

    def __enter__(self) -> EarlyChances:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)

    def _start(self, nodeid: str) -> None:
        if nodeid and nodeid not in self._started:
            name = f"second-{len(self._started)}"
            self._started[nodeid] = self._pool.submit(self._rerun, nodeid, name)

    def poll(self) -> None:
        """Start the second chance of every test named (on a whole line) since the last poll."""
        try:
            text = self._file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        for nodeid in text.split("\n")[:-1]:  # the last part may be a line being written
            self._start(nodeid)

    def watch(self, main: Future, interval_s: float = 0.25) -> None:
        """Poll until the main run's future is done."""
        while not main.done():
            self.poll()
            wait([main], timeout=interval_s)
        self.poll()

    def named(self, case: TestCase) -> bool:
        """Did the main run's plugin name this failed test as stopped by its timeout? (It
        knows when the alarm fires, even when the test's exception wraps pytest-timeout's
        and no text of the report says so.)"""
        return case.outcome in ("failed", "error") and case.nodeid in self._started

    def results(self, stopped: Sequence[TestCase]) -> dict[str, TestCase]:
        """Node id -> the case of each stopped test after its second chance alone with
        ``per_test_timeout_s``: passed, failed ... or, with no result again, a hang
        (:func:`as_hang`)."""
        for case in stopped:
            self._start(case.nodeid)
        return {case.nodeid: _judged(case, self._started[case.nodeid].result(), self._longest)
                for case in stopped}


    def confirm(self, suspects: Sequence[TestCase]) -> dict[str, TestCase]:
        """Node id -> the case of each test that failed after a test was stopped by its
        timeout, run again together in a clean process with ``per_test_timeout_s``.

        A stopped test can leave a thread or a state behind that fails the tests after it
        in the same process (asgiref 3.13.0: 11 tests timed out waiting on the executor
        thread a stopped test left blocked; all pass by hand). A test missing from the
        clean run's report keeps its first case.
        """
        if not suspects:
            return {}
        found = self._together([case.nodeid for case in suspects])
        return {case.nodeid: _judged(case, found[case.nodeid], self._longest)
                for case in suspects if case.nodeid in found}


def _rerun_together(sandbox: Sandbox, build, nodeids: list[str], tools: ToolsConfig,
                    out_dir: Path, environ: dict[str, str], runner: Runner) -> dict[str, TestCase]:
    """Some tests in one more process, each with ``per_test_timeout_s``: their cases by id."""
    longest, name = tools.pytest.per_test_timeout_s, "after-timeouts"
    junit = out_dir / f"{name}.xml"
    side = run_side(sandbox, build(junit), nodeids, junit,
                    install_plugin(out_dir, name, TestPlan(default_s=longest), environ),
                    min(longest * len(nodeids), tools.pytest.run_timeout_s) + STARTUP_SLACK_S,
                    runner)
    return {c.nodeid: c for c in (side.junit.cases if side.junit else ())}


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
