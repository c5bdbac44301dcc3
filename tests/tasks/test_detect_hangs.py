"""Hanging tests: a short first timeout, a second chance, learned timeouts, known hangs.

Real pytest runs (under coverage, with pytest-timeout) on a small repository
with a test that loops forever, an honest slow test that waits on a
subprocess, and quick ones, with timeouts of about a second so that it stays quick.
"""

from __future__ import annotations

import pytest

from mendflow.core.hangs import plan_test_timeouts
from mendflow.core.models import TestCase, TestRun
from mendflow.infra.layout import StateLayout
from mendflow.tasks.detect import measure_tests
from mendflow.tasks.preflight import plan_baseline_tests, record_tool_durations
from mendflow.tasks.validate import gate_no_test_regression
from tests.helpers.detect import TARGET_ENV, new_repo, sandbox_for, tools_config, worktree_status

pytestmark = pytest.mark.slow

FILES = {
    "pkg/__init__.py": "",
    "pkg/spin.py": "def spin():\n    n = 0\n    while n >= 0:\n        n += 1\n",
    "tests/test_spin.py": "from pkg.spin import spin\n\n\ndef test_loops_forever():\n"
                          "    spin()\n",
    "tests/test_slow.py": "import subprocess\nimport sys\n\n\ndef test_waits_honestly():\n"
                          "    subprocess.run([sys.executable, '-c', 'import time; "
                          "time.sleep(2.5)'], check=True)\n",
    "tests/test_fast.py": "def test_one():\n    assert 1 + 1 == 2\n\n\n"
                          "def test_two():\n    assert 'a'.upper() == 'A'\n",
}
SPIN = "tests/test_spin.py::test_loops_forever"
SLOW = "tests/test_slow.py::test_waits_honestly"
TIMEOUTS = {"first_timeout_s": 1.0, "per_test_timeout_s": 8.0, "hang_timeout_s": 0.5}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return new_repo(tmp_path_factory.mktemp("hangs") / "repo", FILES)


@pytest.fixture(scope="module")
def baseline(repo):
    return measure_tests(sandbox_for(repo), TARGET_ENV, tools_config(pytest=TIMEOUTS))


def case(result, nodeid: str) -> TestCase:
    return next(c for c in result.test_run.cases if c.nodeid == nodeid)


def test_a_test_that_loops_forever_is_a_hang_finding(baseline):
    assert baseline.ok, baseline.error
    spin = case(baseline, SPIN)
    assert spin.timed_out and spin.outcome == "failed"
    assert "no result within 8 s" in spin.message
    hangs = [f for f in baseline.findings if f.rule == "hang"]
    assert [(f.source, f.test_id, f.severity) for f in hangs] == [("pytest", SPIN, "high")]
    assert not any(f.rule == "test-failure" and f.test_id == SPIN for f in baseline.findings)


def test_an_honest_slow_test_passes_on_its_second_chance(baseline):
    slow = case(baseline, SLOW)
    assert slow.outcome == "passed" and not slow.timed_out
    assert slow.duration_s >= 2.5
    assert {c.nodeid: c.outcome for c in baseline.test_run.cases} == {
        SPIN: "failed", SLOW: "passed", "tests/test_fast.py::test_one": "passed",
        "tests/test_fast.py::test_two": "passed"}
    assert baseline.test_run.collected == 4
    # the loop's second chance ran it too: its line is covered
    spin_file = next(f for f in baseline.test_run.files if f.path == "pkg/spin.py")
    assert spin_file.percent == 100.0


def test_validation_learns_timeouts_and_a_known_hang_is_no_regression(repo, baseline):
    plan = plan_test_timeouts(baseline.test_run, tools_config(pytest=TIMEOUTS).pytest)
    assert plan.hung == (SPIN,) and plan.hang_s == 0.5
    assert 7.5 <= plan.timeouts[SLOW] <= 8.0  # 3 x its baseline duration, at most 8 s
    assert "tests/test_fast.py::test_one" not in plan.timeouts  # fast: the first timeout

    after = measure_tests(sandbox_for(repo), TARGET_ENV, tools_config(pytest=TIMEOUTS), plan)

    assert after.ok, after.error
    spin = case(after, SPIN)
    assert spin.timed_out and "no result within 0.5 s" in spin.message
    assert case(after, SLOW).outcome == "passed"
    assert after.test_run.collected == 4
    assert [f.id for f in after.findings if f.rule == "hang"] == \
        [f.id for f in baseline.findings if f.rule == "hang"]
    gate = gate_no_test_regression(baseline.test_run, after.test_run)
    assert gate.passed, gate.detail
    # no second chance for the known hang, and the slow test did not wait for a second one
    assert after.duration_s < baseline.duration_s
    assert worktree_status(repo) == ""


def test_a_patch_that_makes_a_passing_test_hang_is_a_regression(tmp_path, baseline):
    files = dict(FILES)
    files["tests/test_fast.py"] = FILES["tests/test_fast.py"].replace(
        "assert 'a'.upper() == 'A'", "from pkg.spin import spin\n    spin()")
    patched = new_repo(tmp_path / "patched", files)
    plan = plan_test_timeouts(baseline.test_run, tools_config(pytest=TIMEOUTS).pytest)

    after = measure_tests(sandbox_for(patched), TARGET_ENV, tools_config(pytest=TIMEOUTS), plan)

    two = case(after, "tests/test_fast.py::test_two")
    assert two.timed_out and "no result within 8 s" in two.message  # after its second chance
    gate = gate_no_test_regression(baseline.test_run, after.test_run)
    assert not gate.passed and "tests/test_fast.py::test_two" in gate.detail


def test_the_plan_of_no_run_is_the_first_timeout():
    pytest_config = tools_config(pytest=TIMEOUTS).pytest
    plan = plan_test_timeouts(None, pytest_config)
    assert plan.default_s == 1.0 and plan.timeouts == {} and plan.hung == ()
    run = TestRun(collected=2, cases=(
        TestCase(nodeid="a.py::t", outcome="passed", duration_s=100.0),
        TestCase(nodeid="a.py::u", outcome="failed", duration_s=0.9)))
    assert plan_test_timeouts(run, pytest_config).timeouts == {"a.py::t": 8.0}


def test_a_later_baseline_learns_the_slow_tests_timeout_from_the_earlier_runs(
        repo, baseline, tmp_path):
    layout = StateLayout.resolve(tmp_path / "state")
    sandbox = sandbox_for(repo)
    pytest_config = tools_config(pytest=TIMEOUTS).pytest
    assert plan_baseline_tests.fn(sandbox, "tree", pytest_config, layout) is None  # first

    record_tool_durations.fn(repo, [baseline], layout)
    plan = plan_baseline_tests.fn(sandbox, "tree", pytest_config, layout)

    # the honest slow test runs once, long enough; the one that hung is not taken for a
    # hang in advance (first timeout and a second chance, as at a first baseline)
    assert plan is not None and 7.5 <= plan.timeouts[SLOW] <= 8.0
    assert SPIN not in plan.timeouts and plan.hung == () and plan.default_s == 1.0
    assert "tests/test_fast.py::test_one" not in plan.timeouts


STUCK = {
    "pkg/__init__.py": "",
    "tests/test_stuck.py": """
        import threading
        import time

        import pytest

        RELEASE = threading.Event()
        BUSY = []


        @pytest.fixture
        def worker():
            thread = threading.Thread(target=RELEASE.wait)  # not a daemon
            thread.start()
            yield
            thread.join()


        def test_releases_its_worker_late(worker):
            BUSY.append(1)
            time.sleep(1.5)
            RELEASE.set()
            BUSY.pop()


        def test_after():
            assert BUSY == []  # fails after the stopped test, passes in a clean process


        def test_wraps_its_timeout():
            try:
                time.sleep(1.5)
            except BaseException:
                error = RuntimeError("Inconsistent data generation")
                error.add_note("while drawing from " + "x" * 5_000_000)
                raise error from None


        def test_fails_with_a_huge_note():
            error = AssertionError("wrong")
            error.add_note("y" * 5_000_000)
            raise error
    """,
}


def test_a_stopped_test_gets_its_second_chance_whatever_it_leaves_behind(tmp_path):
    """asgiref 3.13.0: a test stopped by the 2 s first timeout left a worker thread blocked on
    an event the test would have set; its event loop's teardown waited on that thread, and
    the main run hung until ``run_timeout_s`` (1800 s) though the suite passes by hand.
    The test after the stopped one fails in the main run because of it: it is confirmed in a
    clean process (asgiref: 11 tests failed so). cattrs 26.2.1: hypothesis wrapped the
    timeout in a FlakyFailure (no text of the report said "Timeout", so no second chance)
    with a 557 MB note, and pytest's JUnit XML ran out of memory."""
    import textwrap

    repo = new_repo(tmp_path / "stuck", {p: textwrap.dedent(t) for p, t in STUCK.items()})
    tools = tools_config(pytest={**TIMEOUTS, "run_timeout_s": 60})

    result = measure_tests(sandbox_for(repo), TARGET_ENV, tools)

    assert result.ok, result.error
    assert {c.nodeid: c.outcome for c in result.test_run.cases} == {
        "tests/test_stuck.py::test_releases_its_worker_late": "passed",  # its second chance
        "tests/test_stuck.py::test_after": "passed",
        "tests/test_stuck.py::test_wraps_its_timeout": "passed",  # its second chance too
        "tests/test_stuck.py::test_fails_with_a_huge_note": "failed"}
    assert result.test_run.duration_s < 30
    assert result.test_run.collected == 4  # not 5: the teardown's error is no test of its own
    huge = next(c for c in result.test_run.cases if c.outcome == "failed")
    assert "AssertionError: wrong" in (huge.detail or "") and len(huge.detail or "") < 20_000
