"""The suite spread over xdist workers under coverage, and the serial fallback."""

from __future__ import annotations

import pytest

from mendflow.tasks.detect import measure_tests
from mendflow.tasks.detect.impact import load_impact_map
from mendflow.tasks.detect.parallel import measure_tests_spread
from tests.helpers.detect import FULL_ENV, new_repo, only, sandbox_for, worktree_status

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


def impact_by_test(path):
    """The impact map with test indexes resolved to node ids (sets: the order may differ)."""
    impact = load_impact_map(path)
    return {file: ({line: {impact.tests[i] for i in ids} for line, ids in entry.lines.items()},
                   entry.import_lines)
            for file, entry in impact.files.items()}


@pytest.mark.slow
def test_spread_run_measures_like_the_serial_one(repo, tmp_path):
    sandbox = sandbox_for(repo)
    serial = measure_tests(sandbox, FULL_ENV, TOOLS, impact_file=tmp_path / "serial.json")
    spread = measure_tests_spread(sandbox, FULL_ENV, TOOLS, workers=2,
                                  impact_file=tmp_path / "spread.json")
    assert spread.command[1:5] == ("-m", "pytest", "-p", "mendflow_xdist_coverage")
    assert "-n" in spread.command and "loadscope" in spread.command
    assert spread.command.count("-n") == 1  # the serial run's `-n 0` is not left in
    assert (spread.test_run.workers, serial.test_run.workers) == (2, 1)
    assert outcomes(spread) == outcomes(serial)
    assert outcomes(spread)["tests/test_add.py::test_add_wrong"] == "failed"
    assert spread.findings == serial.findings
    assert spread.test_run.coverage_percent == serial.test_run.coverage_percent
    assert [(f.path, f.covered_lines, f.missing_lines) for f in spread.test_run.files] == \
        [(f.path, f.covered_lines, f.missing_lines) for f in serial.test_run.files]
    # the test-impact contexts: which tests reach which lines, and the import-time lines
    assert impact_by_test(tmp_path / "spread.json") == impact_by_test(tmp_path / "serial.json")
    mul_body = impact_by_test(tmp_path / "spread.json")["pkg/calc.py"][0][6]
    assert mul_body == {"tests/test_mul.py::test_mul"}
    assert worktree_status(repo) == ""


@pytest.mark.slow
def test_a_suite_that_breaks_under_workers_runs_serially(make_repo, monkeypatch):
    # this suite itself may run under pytest-xdist: the target must not inherit its worker id
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    repo = make_repo({**FILES, "tests/test_env.py": """
        import os


        def test_needs_one_process():
            assert os.environ.get("PYTEST_XDIST_WORKER") is None
        """})
    result = measure_tests_spread(sandbox_for(repo), FULL_ENV, TOOLS, workers=2)
    serial = result.command[result.command.index("-n"):][:2]  # `-n 0`: xdist's no workers
    assert serial == ("-n", "0") and "loadscope" not in result.command
    assert result.test_run.workers == 1
    # the serial run's findings: only the genuinely failing test, none from the xdist worker
    assert outcomes(result) == {"tests/test_add.py::test_add": "passed",
                                "tests/test_add.py::test_add_wrong": "failed",
                                "tests/test_env.py::test_needs_one_process": "passed",
                                "tests/test_mul.py::test_mul": "passed"}
    assert {f.path for f in result.findings if f.category == "test-failure"} == \
        {"tests/test_add.py"}
    assert result.test_run.coverage_percent is not None
