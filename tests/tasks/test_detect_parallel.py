"""The suite spread over xdist workers under coverage, and the serial fallback."""

from __future__ import annotations

import pytest

from mendflow.tasks.detect import measure_tests
from mendflow.tasks.detect.impact import load_impact_map
from mendflow.tasks.detect.parallel import measure_tests_spread
from tests.helpers.detect import TARGET_ENV, new_repo, only, sandbox_for, worktree_status

FILES = {
    "pkg/__init__.py": "",
    "pkg/calc.py": """
        def add(a, b):
            return a + b


        def mul(a, b):
            return a * b


        def unused(x):
            return x - 1
        """,
    "tests/__init__.py": "",
    "tests/test_add.py": """
        from pkg.calc import add


        def test_add():
            assert add(1, 2) == 3


        def test_add_wrong():
            assert add(1, 1) == 3
        """,
    "tests/test_mul.py": """
        from pkg.calc import mul


        def test_mul():
            assert mul(2, 3) == 6
        """,
}
TOOLS = only(pytest={}, coverage={})


def outcomes(result):
    return {c.nodeid: c.outcome for c in result.test_run.cases}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return new_repo(tmp_path_factory.mktemp("spread") / "repo", FILES)


def test_spread_run_measures_like_the_serial_one(repo, tmp_path):
    sandbox = sandbox_for(repo)
    serial = measure_tests(sandbox, TARGET_ENV, TOOLS)
    spread = measure_tests_spread(sandbox, TARGET_ENV, TOOLS, workers=2,
                                  impact_file=tmp_path / "map.json")
    assert "-n" in spread.command and "--parallel-mode" in spread.command
    assert outcomes(spread) == outcomes(serial)
    assert outcomes(spread)["tests/test_add.py::test_add_wrong"] == "failed"
    assert spread.test_run.coverage_percent == serial.test_run.coverage_percent
    assert [(f.path, f.missing_lines) for f in spread.test_run.files] == \
        [(f.path, f.missing_lines) for f in serial.test_run.files]
    impact = load_impact_map(tmp_path / "map.json")
    mul_body = impact.files["pkg/calc.py"].lines[6]
    assert [impact.tests[i] for i in mul_body] == ["tests/test_mul.py::test_mul"]
    assert worktree_status(repo) == ""


def test_a_suite_that_breaks_under_workers_runs_serially(make_repo, monkeypatch):
    # this suite itself may run under pytest-xdist: the target must not inherit its worker id
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    repo = make_repo({**FILES, "tests/test_env.py": """
        import os


        def test_needs_one_process():
            assert os.environ.get("PYTEST_XDIST_WORKER") is None
        """})
    result = measure_tests_spread(sandbox_for(repo), TARGET_ENV, TOOLS, workers=2)
    assert "-n" not in result.command
    assert outcomes(result)["tests/test_env.py::test_needs_one_process"] == "passed"
