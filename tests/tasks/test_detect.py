"""The Detect stage as a whole: TODO scan, line count, merging, fingerprint
stability, report parsers, and the Prefect tasks in a real flow."""

from __future__ import annotations

from pathlib import Path

import pytest

from mendflow.core.config import ToolsConfig
from mendflow.core.errors import ToolError
from mendflow.core.findings import make_finding
from mendflow.core.models import ToolResult
from mendflow.tasks.detect import (
    count_python_loc,
    find_todos,
    measure_bandit,
    measure_mypy,
    measure_ruff,
    measure_tests,
    merge_findings,
    run_bandit,
    run_mypy,
    run_pytest,
    run_ruff,
    scan_todos,
)
from mendflow.tasks.detect.bandit_run import parse_bandit
from mendflow.tasks.detect.common import is_library_path, is_test_path, relative_posix
from mendflow.tasks.detect.pytest_reports import line_ranges, node_id, parse_coverage_json, parse_junit
from mendflow.tasks.detect.ruff_run import parse_ruff
from tests.helpers.detect import (
    FULL_ENV,
    TARGET_ENV,
    only,
    sandbox_for,
    sandbox_for_missing,
    tools_config,
)
from tests.helpers.git import git

TODOS = {
    "pkg/__init__.py": "",
    "pkg/mod.py": '''
        # TODO: split this module
        MESSAGE = "TODO: inside a string is not a comment"


        def f():
            x = 1  # FIXME(alice) wrong value
            # see the TODO list in the docs
            return x  #XXX


        class C:
            def m(self):
                pass  # HACK: remove later
        ''',
    "pkg/broken.py": "# TODO: before the error\nx = '''never closed\n",
}


def test_todos_in_comments_only(make_repo):
    repo = make_repo(TODOS)
    (repo / "untracked.py").write_text("# TODO: not tracked\n")
    result = scan_todos(sandbox_for(repo), tools_config())
    assert result.ok and result.tool == "todo"
    found = sorted((f.path, f.line, f.rule, f.symbol) for f in result.findings)
    assert found == [
        ("pkg/broken.py", 1, "TODO", None),
        ("pkg/mod.py", 1, "TODO", None),
        ("pkg/mod.py", 6, "FIXME", "f"),
        ("pkg/mod.py", 8, "XXX", "f"),
        ("pkg/mod.py", 13, "HACK", "C.m"),
    ]
    fixme = next(f for f in result.findings if f.rule == "FIXME")
    assert fixme.message == "FIXME(alice) wrong value" and fixme.column == 12
    assert all(f.severity == "info" and f.category == "todo" and f.source == "todo"
               for f in result.findings)


def test_todo_custom_markers(make_repo):
    repo = make_repo(TODOS)
    result = scan_todos(sandbox_for(repo), tools_config(todo={"markers": ["HACK"]}))
    assert [f.rule for f in result.findings] == ["HACK"]


def test_count_python_loc(make_repo):
    repo = make_repo({
        "a.py": "# comment\n\nimport os\n\n\ndef f():\n    '''doc'''\n    # inner\n    return 1\n",
        "b/c.py": "x = 1\n",
        "notes.txt": "not python\n",
    })
    (repo / "untracked.py").write_text("y = 2\n")
    assert count_python_loc(repo) == 5


def test_count_python_loc_outside_git_raises(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    with pytest.raises(ToolError):
        count_python_loc(tmp_path)


def test_merge_findings_ranks_and_deduplicates():
    failing = make_finding(None, source="pytest", rule="test-failure", path="t.py", line=1,
                           key="t.py::t", severity="high", category="test-failure", message="x")
    lint = make_finding(None, source="ruff", rule="F401", path="a.py", line=1,
                        severity="medium", category="lint", message="unused")
    broken = make_finding(None, source="pytest", rule="collection-error", path="t2.py",
                          line=None, key="c", severity="critical", category="test-failure",
                          message="c")
    results = [ToolResult(tool="ruff", findings=(lint,)),
               ToolResult(tool="pytest", findings=(failing, broken, failing))]
    merged = merge_findings.fn(results)
    assert [f.id for f in merged] == [broken.id, failing.id, lint.id]


def test_disabled_tools_return_empty_results(tmp_path):
    sandbox = sandbox_for_missing(tmp_path)
    tools = only()
    results = [measure_tests(sandbox, TARGET_ENV, tools), measure_ruff(sandbox, tools),
               measure_mypy(sandbox, FULL_ENV, tools), measure_bandit(sandbox, tools),
               scan_todos(sandbox, tools)]
    assert [r.tool for r in results] == ["pytest", "ruff", "mypy", "bandit", "todo"]
    assert all(r.ok and r.findings == () and r.command == () for r in results)


STABLE = {
    "pkg/__init__.py": "",
    "pkg/core.py": """
        import os
        import subprocess


        def half(x: int) -> int:
            return str(x // 2)  # TODO: return an int


        def shell(cmd):
            return subprocess.call(cmd, shell=True)


        def never():
            a = 1
            b = 2
            return a + b
        """,
    "tests/test_core.py": """
        from pkg.core import half


        def test_half():
            assert half(4) == 2
        """,
}


def measure_all(repo: Path) -> dict[str, set[str]]:
    sandbox, tools = sandbox_for(repo), tools_config(coverage={"min_file_percent": 90})
    results = [measure_tests(sandbox, TARGET_ENV, tools), measure_ruff(sandbox, tools),
               measure_mypy(sandbox, FULL_ENV, tools), measure_bandit(sandbox, tools),
               scan_todos(sandbox, tools)]
    assert all(r.ok for r in results), [r.error for r in results]
    return {r.tool: {f.id for f in r.findings} for r in results}


@pytest.mark.slow
def test_finding_ids_survive_lines_inserted_above(make_repo):
    repo = make_repo(STABLE)
    before = measure_all(repo)
    assert all(before.values()), before  # every tool found something
    for rel in ("pkg/core.py", "tests/test_core.py"):
        path = repo / rel
        path.write_text('"""A new docstring."""\n\n# a comment\n\n' + path.read_text())
    git(repo, "commit", "-qam", "insert lines at the top")
    after = measure_all(repo)
    assert after == before


# --- report parsers ---------------------------------------------------------------


def test_node_id_reconstruction(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "base.py").write_text("")
    assert node_id("tests.test_a.TestC", "test_m", "tests/test_a.py", tmp_path) == \
        "tests/test_a.py::TestC::test_m"
    assert node_id("tests.test_a", "test_p[a.b-c::d]", "tests/test_a.py", tmp_path) == \
        "tests/test_a.py::test_p[a.b-c::d]"
    # a test inherited from tests/base.py: file points at the base, classname at the module
    assert node_id("tests.base.TestBase", "test_x", "tests/base.py", tmp_path) == \
        "tests/base.py::TestBase::test_x"
    assert node_id("tests.base.TestBase", "test_x", "tests/other.py", tmp_path) == \
        "tests/base.py::TestBase::test_x"
    assert node_id("README.rst", "README.rst", "README.rst", tmp_path) == "README.rst::README.rst"
    assert node_id("", "tests.test_z", "tests/test_z.py", tmp_path) == "tests/test_z.py"


def test_parse_junit_rejects_garbage(tmp_path):
    bad = tmp_path / "junit.xml"
    bad.write_text("<testsuites><testcase")
    with pytest.raises(ToolError, match="JUnit"):
        parse_junit(bad, tmp_path)
    with pytest.raises(ToolError):
        parse_junit(tmp_path / "missing.xml", tmp_path)


def test_parse_coverage_json(tmp_path):
    report = tmp_path / "coverage.json"
    report.write_text('{"totals": {"percent_covered": 62.5}, "files": {'
                      '"pkg/a.py": {"summary": {"num_statements": 8, "covered_lines": 5, '
                      '"percent_covered": 62.5}, "missing_lines": [3, 4, 7]},'
                      '"/elsewhere/site.py": {"summary": {"num_statements": 1}}}}')
    parsed = parse_coverage_json(report, tmp_path)
    assert parsed.percent == 62.5
    assert [(f.path, f.percent, f.missing_lines) for f in parsed.files] == [
        ("pkg/a.py", 62.5, (3, 4, 7))]
    report.write_text('{"files": []}')
    with pytest.raises(ToolError, match="coverage"):
        parse_coverage_json(report, tmp_path)


def test_parse_tool_output_rejects_garbage(tmp_path):
    with pytest.raises(ToolError, match="ruff"):
        parse_ruff("not json", tmp_path)
    with pytest.raises(ToolError, match="bandit"):
        parse_bandit('{"no_results": 1}', tmp_path)


def test_line_ranges_and_paths(tmp_path):
    assert line_ranges((1, 2, 3, 7, 9, 10)) == "1-3, 7, 9-10"
    assert line_ranges(()) == ""
    assert relative_posix(tmp_path, str(tmp_path / "a" / "b.py")) == "a/b.py"
    assert relative_posix(tmp_path, "./a/../c.py") == "c.py"
    assert relative_posix(tmp_path, "/somewhere/else.py") is None
    assert is_test_path("tests/a.py") and is_test_path("pkg/test_x.py")
    assert is_test_path("pkg/x_test.py") and is_test_path("conftest.py")
    assert not is_test_path("pkg/testing_utils.py")
    assert is_library_path("pkg/mod.py") and is_library_path("src/pkg/build/x.py")
    assert not is_library_path("docs/conf.py") and not is_library_path("setup.py")
    assert not is_library_path(".github/x.py") and not is_library_path("tests/a.py")


# --- Prefect --------------------------------------------------------------------


@pytest.mark.slow
def test_tasks_run_concurrently_in_a_flow(prefect_harness, make_repo):
    from prefect import flow

    repo = make_repo(STABLE)
    sandbox = sandbox_for(repo)
    tools = ToolsConfig()

    @flow
    def detect_flow():
        futures = [run_pytest.submit(sandbox, TARGET_ENV, tools, "tree"),
                   run_ruff.submit(sandbox, tools, "tree"),
                   run_mypy.submit(sandbox, FULL_ENV, tools, "tree"),
                   run_bandit.submit(sandbox, tools, "tree"),
                   find_todos.submit(sandbox, tools, "tree")]
        results = [f.result() for f in futures]
        return results, merge_findings(results)

    results, merged = detect_flow()
    assert [r.tool for r in results] == ["pytest", "ruff", "mypy", "bandit", "todo"]
    assert all(isinstance(r, ToolResult) and r.ok for r in results)
    assert merged[0].rule == "test-failure"
    assert {f.id for f in merged} == {f.id for r in results for f in r.findings}
