"""The test-files gate: what counts as a test file, and what weakens a test (pure functions)."""

from __future__ import annotations

import textwrap

import pytest

from mendflow.core.config import GatesConfig
from mendflow.core.models import Patch, TestCase, TestRun
from mendflow.tasks.validate_tests import (
    collected_test_files,
    file_texts,
    gate_test_files,
    weakening_problems,
    why_test_file,
)
from tests.helpers.git import write_files
from tests.helpers.llm import git_worktree_sandbox

GLOBS = GatesConfig().test_globs
ALLOW = GatesConfig(allow_test_changes=True)
TEST = textwrap.dedent("""
    import pytest
    from calc import add


    def test_add():
        assert add(1, 2) == 3
        assert add(0, 0) == 0


    class TestMore:
        def test_neg(self):
            self.assertEqual(add(-1, -1), -2)
""")


def patch(*files: str) -> Patch:
    return Patch(id="p1", fixer="anthropic", finding_ids=("f1",), diff="", files=files, title="t")


@pytest.mark.parametrize(("path", "text", "reason"), [
    ("test.py", None, "pytest collected tests from it at baseline"),
    ("pkg/conftest.py", None, "a conftest.py"),
    ("tests/helpers.py", None, "matches tests/**"),
    ("pkg/test_x.py", None, "matches **/test_*.py"),
    ("pytest.ini", None, "test configuration (pytest.ini)"),
    ("tox.ini", None, "test configuration (tox.ini)"),
    ("noxfile.py", None, "test configuration (noxfile.py)"),
    (".coveragerc", None, "test configuration (.coveragerc)"),
    ("pyproject.toml", "[tool.pytest.ini_options]\naddopts = '-q'\n", "test configuration"),
    ("pyproject.toml", "[tool.coverage.run]\nsource = ['pkg']\n", "test configuration"),
    ("setup.cfg", "[metadata]\nname = x\n\n[tool:pytest]\naddopts = -q\n", "test configuration"),
    (".github/workflows/ci.yml", None, "a CI file"),
    (".gitlab-ci.yml", None, "a CI file"),
    (".mendflow.yaml", None, "mendflow's configuration"),
    ("pyproject.toml", "[tool.mendflow.sandbox]\nisolation = 'none'\n", "test configuration"),
])
def test_what_counts_as_a_test_file(path, text, reason):
    found = why_test_file(path, collected={"test.py"}, globs=GLOBS, before=text, after=text)
    assert found is not None and found.startswith(reason)


@pytest.mark.parametrize(("path", "text"), [
    ("calc.py", None), ("pyproject.toml", "[project]\nname = 'x'\n"),
    ("setup.cfg", "[metadata]\nname = x\n"), ("docs/testing.md", None),
])
def test_library_and_plain_config_files_are_not_test_files(path, text):
    assert why_test_file(path, collected={"test.py"}, globs=GLOBS, before=text,
                            after=text) is None


def test_files_pytest_collected_at_baseline_come_from_the_junit_cases():
    run = TestRun(collected=2, cases=(
        TestCase(nodeid="test.py::test_a", outcome="passed", path="test.py"),
        TestCase(nodeid="checks/suite.py::test_b", outcome="failed")))
    assert collected_test_files(run) == {"test.py", "checks/suite.py"}


def test_doctests_do_not_make_a_module_a_test_file():
    """humanize 4.17.0 runs --doctest-modules: its code modules stay code under test."""
    run = TestRun(collected=3, cases=(
        TestCase(nodeid="src/pkg/num.py::pkg.num.ordinal", outcome="passed", path="src/pkg/num.py"),
        TestCase(nodeid="src/pkg/num.py::pkg.num", outcome="passed", path="src/pkg/num.py"),
        TestCase(nodeid="README.rst::README.rst", outcome="passed", path="README.rst"),
        TestCase(nodeid="tests/test_num.py::TestN::test_o[1.5]", outcome="passed",
                 path="tests/test_num.py")))
    assert collected_test_files(run) == {"README.rst", "tests/test_num.py"}


def test_a_patch_touching_a_collected_root_test_py_is_rejected():
    gate = gate_test_files(patch("calc.py", "test.py"), GatesConfig(), collected={"test.py"})
    assert not gate.passed
    assert "test.py (pytest collected tests from it at baseline)" in gate.detail
    assert "gates.allow_test_changes" in gate.detail
    assert gate_test_files(patch("calc.py"), GatesConfig(), collected={"test.py"}).passed


@pytest.mark.parametrize(("change", "problem"), [
    (lambda t: t.replace("    assert add(0, 0) == 0\n", ""), "removes or weakens `assert add(0, 0) == 0`"),
    (lambda t: t.replace("== 3", ">= 0"), "removes or weakens `assert add(1, 2) == 3`"),
    (lambda t: t.replace("self.assertEqual(add(-1, -1), -2)", "pass"), "removes or weakens"),
    (lambda t: t.replace("def test_add():\n", "def helper_add():\n"), "deletes the test test_add"),
    (lambda t: t.replace("def test_add", "@pytest.mark.skip\ndef test_add"), "adds a skip or xfail"),
    (lambda t: t.replace("def test_add", "@pytest.mark.xfail\ndef test_add"), "adds a skip or xfail"),
    (lambda t: t.replace("def test_add():\n", "def test_add():\n    pytest.skip('flaky')\n"),
     "adds a skip or xfail"),
    (lambda t: t.replace("def test_add():\n", "def test_add():\n    return\n"), "adds a return"),
    (lambda t: t.replace("    assert add(1, 2) == 3\n",
                         "    try:\n        assert add(1, 2) == 3\n    except AssertionError:\n"
                         "        pass\n"), "catches AssertionError"),
    (lambda t: t.replace("    assert add(1, 2) == 3\n",
                         "    try:\n        assert add(1, 2) == 3\n    except:\n        pass\n"),
     "catches AssertionError"),
    (lambda t: t + "\npytestmark = pytest.mark.skip\n", "adds a module-level skip"),
    (lambda t: t + "\ndef pytest_collection_modifyitems(items):\n    items.clear()\n",
     "adds the pytest hook pytest_collection_modifyitems"),
])
def test_allowed_test_changes_may_not_weaken_a_test(change, problem):
    after = change(TEST)
    problems = weakening_problems("tests/test_calc.py", TEST, after)
    assert any(problem in p for p in problems), problems
    gate = gate_test_files(patch("tests/test_calc.py"), ALLOW,
                           before={"tests/test_calc.py": TEST}, after={"tests/test_calc.py": after})
    assert not gate.passed and problem in gate.detail


def test_allowed_test_changes_that_only_add_tests_pass():
    after = TEST + "\n\ndef test_more():\n    assert add(2, 2) == 4\n"
    assert weakening_problems("tests/test_calc.py", TEST, after) == []
    gate = gate_test_files(patch("tests/test_calc.py"), ALLOW,
                           before={"tests/test_calc.py": TEST}, after={"tests/test_calc.py": after})
    assert gate.passed and "no test is weakened" in gate.detail
    deleted = gate_test_files(patch("tests/test_calc.py"), ALLOW,
                              before={"tests/test_calc.py": TEST}, after={"tests/test_calc.py": None})
    assert not deleted.passed and "deletes a test file" in deleted.detail


def test_conftest_injection_is_refused_even_when_test_changes_are_allowed():
    injected = "def pytest_runtest_makereport(item, call):\n    pass\n"
    gate = gate_test_files(patch("conftest.py"), ALLOW, before={"conftest.py": None},
                           after={"conftest.py": injected})
    assert not gate.passed and "pytest_runtest_makereport" in gate.detail


def test_file_texts_reads_head_and_the_working_tree(make_repo):
    repo = make_repo({"calc.py": "x = 1\n", "test.py": TEST})
    sandbox = git_worktree_sandbox(repo)
    write_files(sandbox.path, {"test.py": "changed\n", "new.py": "y = 2\n"})
    (sandbox.path / "calc.py").unlink()
    before, after = file_texts(sandbox, ["test.py", "new.py", "calc.py"])
    assert before == {"test.py": TEST.lstrip("\n"), "new.py": None, "calc.py": "x = 1\n"}
    assert after == {"test.py": "changed\n", "new.py": "y = 2\n", "calc.py": None}
