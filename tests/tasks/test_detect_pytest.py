"""The pytest+coverage detector on real repositories, with the real tools."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mendflow.core.errors import ToolError
from mendflow.core.models import TargetEnv
from mendflow.tasks.detect import measure_tests
from mendflow.tasks.detect.pytest_coverage import coverage_config_sets_source
from tests.helpers.detect import (
    FULL_ENV,
    TARGET_ENV,
    new_repo,
    sandbox_for,
    sandbox_for_missing,
    tools_config,
    worktree_status,
)

SUITE = {
    "pkg/__init__.py": "",
    "pkg/calc.py": """
        def add(a, b):
            return a + b


        def div(a, b):
            return a / b
        """,
    "pkg/unused.py": """
        def never_called(x):
            if x > 1:
                return x * 2
            y = x + 1
            return y


        def also_unused():
            total = 0
            for i in range(3):
                total += i
            return total
        """,
    "tests/__init__.py": "",
    "tests/test_calc.py": """
        import time

        import pytest

        import pkg.unused  # noqa: F401
        from pkg.calc import add, div


        def test_add():
            assert add(1, 2) == 3


        def test_div_fails():
            assert div(4, 2) == 3


        @pytest.fixture
        def broken():
            raise RuntimeError("fixture exploded")


        def test_uses_broken(broken):
            pass


        @pytest.mark.skip(reason="not today")
        def test_skipped():
            pass


        @pytest.mark.xfail(reason="known bug")
        def test_expected_failure():
            assert 0


        @pytest.mark.parametrize("a,b", [(1, 1), (2, 3)])
        def test_param(a, b):
            assert a == b


        def test_slow():
            time.sleep(0.4)


        class TestGroup:
            class TestInner:
                def test_nested(self):
                    assert add(0, 0) == 1
        """,
    "tests/test_broken.py": """
        import module_that_does_not_exist


        def test_never_runs():
            pass
        """,
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    repo = new_repo(tmp_path_factory.mktemp("suite") / "repo", SUITE)
    tools = tools_config(pytest={"slow_test_s": 0.3, "per_test_timeout_s": 60})
    return repo, measure_tests(sandbox_for(repo), TARGET_ENV, tools)


def by_rule(result, rule):
    return [f for f in result.findings if f.rule == rule]


def test_cases_carry_exact_node_ids_and_outcomes(suite):
    _, result = suite
    assert result.ok and result.exit_code == 1 and result.tool == "pytest"
    outcomes = {c.nodeid: c.outcome for c in result.test_run.cases}
    assert outcomes == {
        "tests/test_calc.py::test_add": "passed",
        "tests/test_calc.py::test_div_fails": "failed",
        "tests/test_calc.py::test_uses_broken": "error",
        "tests/test_calc.py::test_skipped": "skipped",
        "tests/test_calc.py::test_expected_failure": "xfailed",
        "tests/test_calc.py::test_param[1-1]": "passed",
        "tests/test_calc.py::test_param[2-3]": "failed",
        "tests/test_calc.py::test_slow": "passed",
        "tests/test_calc.py::TestGroup::TestInner::test_nested": "failed",
    }
    assert result.test_run.collected == 9
    failing = next(c for c in result.test_run.cases if c.nodeid.endswith("test_div_fails"))
    assert failing.path == "tests/test_calc.py" and failing.line == 13
    assert "assert 2.0 == 3" in failing.detail
    skipped = next(c for c in result.test_run.cases if c.outcome == "skipped")
    assert skipped.message == "not today"


def test_failures_and_errors_become_findings(suite):
    _, result = suite
    failures = {f.test_id: f for f in by_rule(result, "test-failure")}
    assert set(failures) == {
        "tests/test_calc.py::test_div_fails", "tests/test_calc.py::test_param[2-3]",
        "tests/test_calc.py::TestGroup::TestInner::test_nested",
    }
    div = failures["tests/test_calc.py::test_div_fails"]
    assert (div.source, div.severity, div.category) == ("pytest", "high", "test-failure")
    assert div.path == "tests/test_calc.py" and div.line == 13 and div.symbol == "test_div_fails"
    assert "assert 2.0 == 3" in div.message and "def test_div_fails" in div.detail
    (error,) = by_rule(result, "test-error")
    assert error.test_id == "tests/test_calc.py::test_uses_broken"
    assert "fixture exploded" in error.message
    assert len({f.id for f in result.findings}) == len(result.findings)


def test_collection_error_is_a_critical_finding(suite):
    _, result = suite
    assert result.test_run.collection_errors == ("tests/test_broken.py",)
    (finding,) = by_rule(result, "collection-error")
    assert finding.severity == "critical" and finding.path == "tests/test_broken.py"
    assert "module_that_does_not_exist" in finding.message
    assert "ModuleNotFoundError" in finding.detail


def test_low_coverage_of_source_files_only(suite):
    _, result = suite
    run = result.test_run
    files = {f.path: f for f in run.files}
    assert files["pkg/unused.py"].percent < 50 and files["pkg/calc.py"].percent == 100.0
    assert files["pkg/unused.py"].missing_lines == (2, 3, 4, 5, 9, 10, 11, 12)
    assert run.coverage_percent is not None and 0 < run.coverage_percent < 100
    (low,) = by_rule(result, "low-coverage")
    assert (low.source, low.severity, low.category, low.path) == (
        "coverage", "low", "coverage", "pkg/unused.py")
    assert "2-5, 9-12" in low.message and "%" in low.message


def test_slow_passing_test_is_an_info_finding(suite):
    _, result = suite
    (slow,) = by_rule(result, "slow-test")
    assert slow.test_id == "tests/test_calc.py::test_slow"
    assert (slow.source, slow.severity, slow.category) == ("pytest", "info", "performance")


def test_run_leaves_the_worktree_clean(suite):
    repo, result = suite
    assert worktree_status(repo) == ""
    assert "-p" in result.command and "no:cacheprovider" in result.command
    assert result.command[1:4] == ("-m", "coverage", "run") and "--source=." in result.command
    assert not (repo.parent / f".{repo.name}.mendflow-tools").is_relative_to(repo)


def test_hanging_test_is_killed_by_the_per_test_timeout_and_is_a_hang(make_repo):
    repo = make_repo({
        "test_hang.py": "import time\n\ndef test_hangs():\n    time.sleep(300)\n\n"
                        "def test_ok():\n    assert True\n",
    })
    start = time.monotonic()
    result = measure_tests(sandbox_for(repo), TARGET_ENV,
                           tools_config(pytest={"per_test_timeout_s": 2}))
    assert time.monotonic() - start < 120  # two pytest processes (a busy CI is slow), not 300 s
    assert result.ok
    outcomes = {c.nodeid: c.outcome for c in result.test_run.cases}
    assert outcomes == {"test_hang.py::test_hangs": "failed", "test_hang.py::test_ok": "passed"}
    (finding,) = by_rule(result, "hang")  # after its second chance, with the 2 s timeout
    assert "no result within 2 s" in finding.message
    assert not by_rule(result, "test-failure")


def test_the_repositorys_xdist_addopts_do_not_hide_the_coverage(make_repo):
    """`addopts = "-n 2"` ran the tests in xdist workers outside `coverage run`: 0 % and a
    low-coverage finding on every file. The measured run is serial (`-n 0`)."""
    repo = make_repo({
        "pyproject.toml": '[tool.pytest.ini_options]\naddopts = "-n 2 --dist loadscope"\n',
        "pkg/__init__.py": "",
        "pkg/lib.py": "def add(a, b):\n    return a + b\n",
        "tests/test_lib.py": "from pkg.lib import add\n\n\ndef test_add():\n"
                             "    assert add(1, 2) == 3\n",
    })
    result = measure_tests(sandbox_for(repo), FULL_ENV, tools_config())  # with pytest-xdist
    assert result.ok and "-n" in result.command
    assert result.test_run.coverage_percent == 100.0
    assert [c.outcome for c in result.test_run.cases] == ["passed"]
    assert not by_rule(result, "low-coverage")


@pytest.mark.slow
def test_a_plugin_that_breaks_on_a_stopped_test_gets_a_patient_run(make_repo):
    """A test stopped by the short first timeout broke hypothesis's report hook
    (python-dateutil 4.0.0, `filterwarnings = error`): INTERNALERROR, exit 3, and the whole
    baseline failed. The run is made again with the per-test timeout."""
    repo = make_repo({
        "conftest.py": """
            import pytest


            @pytest.hookimpl(hookwrapper=True)
            def pytest_runtest_makereport(item, call):
                report = (yield).get_result()
                if report.failed and "Timeout" in str(report.longrepr):
                    raise RuntimeError("this plugin cannot report an interrupted test")
            """,
        "test_slow.py": "import time\n\n\ndef test_slowish():\n    time.sleep(1.5)\n",
    })
    tools = tools_config(pytest={"first_timeout_s": 0.5, "per_test_timeout_s": 30})
    result = measure_tests(sandbox_for(repo), TARGET_ENV, tools)
    assert result.ok, result.error
    assert [(c.nodeid, c.outcome) for c in result.test_run.cases] == [
        ("test_slow.py::test_slowish", "passed")]
    assert "--timeout=30" in result.command


def test_run_timeout_kills_the_whole_process_group(make_repo, tmp_path):
    pid_file = tmp_path / "child.pid"
    repo = make_repo({
        "test_stuck.py": f"""
            import subprocess, sys, time

            def test_stuck():
                child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
                open({str(pid_file)!r}, "w").write(str(child.pid))
                time.sleep(120)
            """,
    })
    start = time.monotonic()
    result = measure_tests(sandbox_for(repo), TARGET_ENV,
                           tools_config(pytest={"run_timeout_s": 15, "per_test_timeout_s": 300,
                                                "first_timeout_s": 300}))
    # 15 s: coverage + pytest start in ~1 s idle, but in 6 s on a loaded 2-core machine,
    # and the child must have been started (its pid written) before the run is cut
    assert time.monotonic() - start < 60
    assert not result.ok and result.test_run.timed_out and "exceeded 15 s" in result.error
    assert not is_alive(int(pid_file.read_text()))


def is_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\tZ" in status.read_text())


def test_no_tests_collected_is_ok(make_repo):
    repo = make_repo({"pkg/__init__.py": "", "pkg/mod.py": "X = 1\n"})
    result = measure_tests(sandbox_for(repo), TARGET_ENV, tools_config())
    assert result.ok and result.exit_code == 5
    assert result.test_run.collected == 0 and result.test_run.cases == ()
    assert not by_rule(result, "test-failure")


def test_coverage_disabled_runs_plain_pytest(make_repo):
    repo = make_repo({"mod.py": "def f():\n    return 1\n",
                      "test_mod.py": "from mod import f\n\ndef test_f():\n    assert f() == 1\n"})
    result = measure_tests(sandbox_for(repo), TARGET_ENV, tools_config(coverage={"enabled": False}))
    assert result.ok and "coverage" not in result.command
    assert result.test_run.coverage_percent is None and result.test_run.files == ()
    assert [c.outcome for c in result.test_run.cases] == ["passed"]


def test_repo_pytest_and_coverage_configs_are_respected(make_repo):
    repo = make_repo({
        "pyproject.toml": """
            [tool.pytest.ini_options]
            testpaths = ["checks"]
            python_files = ["check_*.py"]

            [tool.coverage.run]
            source = ["lib"]
            omit = ["lib/skip_me.py"]
            """,
        "lib/__init__.py": "",
        "lib/core.py": "def f():\n    return 1\n",
        "lib/skip_me.py": "def g():\n    return 2\n",
        "other/helper.py": "def h():\n    return 3\n",
        "checks/check_core.py": "from lib.core import f\n\ndef test_f():\n    assert f() == 1\n",
        "tests/test_not_collected.py": "def test_fails():\n    assert False\n",
    })
    assert coverage_config_sets_source(repo)
    result = measure_tests(sandbox_for(repo), TARGET_ENV, tools_config())
    assert result.ok and "--source=." not in result.command
    assert [c.nodeid for c in result.test_run.cases] == ["checks/check_core.py::test_f"]
    assert {f.path for f in result.test_run.files} == {"lib/__init__.py", "lib/core.py"}


def test_coveragerc_parallel_data_is_combined(make_repo):
    repo = make_repo({
        ".coveragerc": "[run]\nparallel = True\nsource = pkg\n",
        "pkg/__init__.py": "",
        "pkg/mod.py": "def f():\n    return 1\n\ndef g():\n    return 2\n",
        "tests/test_mod.py": "from pkg.mod import f\n\ndef test_f():\n    assert f() == 1\n",
    })
    result = measure_tests(sandbox_for(repo), TARGET_ENV, tools_config())
    assert result.ok, result.error
    files = {f.path: f for f in result.test_run.files}
    assert files["pkg/mod.py"].missing_lines == (5,)
    assert worktree_status(repo) == ""


def test_src_layout(make_repo):
    repo = make_repo({
        "pyproject.toml": '[tool.pytest.ini_options]\npythonpath = ["src"]\n',
        "src/pkg/__init__.py": "",
        "src/pkg/mod.py": "def f(x):\n    if x:\n        return 1\n    return 2\n",
        "tests/test_mod.py": "from pkg.mod import f\n\ndef test_f():\n    assert f(1) == 1\n",
    })
    result = measure_tests(sandbox_for(repo), TARGET_ENV,
                           tools_config(coverage={"min_file_percent": 90}))
    assert result.ok
    assert [c.nodeid for c in result.test_run.cases] == ["tests/test_mod.py::test_f"]
    (low,) = by_rule(result, "low-coverage")
    assert low.path == "src/pkg/mod.py" and low.message.endswith("missing lines 4")


def test_broken_conftest_is_a_failed_run(make_repo):
    repo = make_repo({"tests/conftest.py": "import nope\n",
                      "tests/test_a.py": "def test_a():\n    pass\n"})
    result = measure_tests(sandbox_for(repo), TARGET_ENV, tools_config())
    assert not result.ok and result.exit_code == 4
    assert "nope" in result.error


def test_disabled_pytest_runs_nothing(tmp_path):
    result = measure_tests(sandbox_for_missing(tmp_path), TARGET_ENV,
                           tools_config(pytest={"enabled": False}))
    assert result.ok and result.command == () and result.test_run is None


def test_missing_interpreter_raises(make_repo, tmp_path):
    repo = make_repo({"test_a.py": "def test_a():\n    pass\n"})
    env = TargetEnv(python=tmp_path / "no-such-python", kind="interpreter", fingerprint="x")
    with pytest.raises(ToolError, match="executable not found"):
        measure_tests(sandbox_for(repo), env, tools_config())


def test_target_env_without_pytest_raises(make_repo, tmp_path):
    venv = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = TargetEnv(python=venv / "bin" / "python", kind="managed-venv", fingerprint="bare")
    repo = make_repo({"test_a.py": "def test_a():\n    pass\n"})
    with pytest.raises(ToolError, match="pytest is not installed"):
        measure_tests(sandbox_for(repo), env, tools_config())
