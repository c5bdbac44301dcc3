"""Test-impact data from a real coverage run with contexts, and selection's fallbacks."""

from __future__ import annotations

import pytest

from mendflow.core.models import Patch
from mendflow.tasks.detect import measure_tests
from mendflow.tasks.detect.impact import (
    changed_lines,
    content_hash,
    load_impact_map,
    select_tests,
)
from tests.helpers.detect import TARGET_ENV, new_repo, only, sandbox_for, worktree_status

FILES = {
    "shop/__init__.py": "",
    "shop/calc.py": """
        LIMIT = 10


        def add(a, b):
            return a + b


        def mul(a, b):
            return a * b
        """,
    "tests/__init__.py": "",
    "tests/test_calc.py": """
        from shop.calc import add, mul


        def test_add():
            assert add(1, 2) == 3


        def test_add_again():
            assert add(0, 0) == 0


        def test_mul():
            assert mul(2, 3) == 7
        """,
}
MUL_DIFF = """\
diff --git a/shop/calc.py b/shop/calc.py
--- a/shop/calc.py
+++ b/shop/calc.py
@@ -8,2 +8,2 @@ def add(a, b):
 def mul(a, b):
-    return a * b
+    return a * b + 1
"""
ADD_DIFF = MUL_DIFF.replace("@@ -8,2 +8,2 @@ def add(a, b):\n def mul(a, b):\n-    return a * b\n"
                            "+    return a * b + 1\n",
                            "@@ -4,2 +4,2 @@\n def add(a, b):\n-    return a + b\n"
                            "+    return b + a\n")
LIMIT_DIFF = MUL_DIFF.replace("@@ -8,2 +8,2 @@ def add(a, b):\n def mul(a, b):\n-    return a * b\n"
                              "+    return a * b + 1\n",
                              "@@ -1,1 +1,1 @@\n-LIMIT = 10\n+LIMIT = 11\n")


def patch(diff: str, files=("shop/calc.py",)) -> Patch:
    return Patch(id="p", fixer="t", finding_ids=(), diff=diff, files=files, title="t")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    repo = new_repo(tmp_path_factory.mktemp("impact") / "repo", FILES)
    target = tmp_path_factory.mktemp("impact-data") / "map.json"
    result = measure_tests(sandbox_for(repo), TARGET_ENV, only(pytest={}, coverage={}),
                           impact_file=target)
    assert result.ok and worktree_status(repo) == ""
    return repo, load_impact_map(target)


def test_a_change_selects_the_tests_that_reach_it_plus_the_failing_ones(recorded):
    repo, impact = recorded
    before = {"shop/calc.py": content_hash(repo / "shop/calc.py")}
    assert changed_lines(patch(ADD_DIFF)) == {"shop/calc.py": {5}}
    add = select_tests(impact, patch(ADD_DIFF), before, set())
    assert add.nodeids == ("tests/test_calc.py::test_add", "tests/test_calc.py::test_add_again")
    failing = {"tests/test_calc.py::test_mul"}
    assert select_tests(impact, patch(ADD_DIFF), before, failing).nodeids == (
        "tests/test_calc.py::test_add", "tests/test_calc.py::test_add_again",
        "tests/test_calc.py::test_mul")
    assert select_tests(impact, patch(MUL_DIFF), before, set()).nodeids == (
        "tests/test_calc.py::test_mul",)


def test_missing_stale_or_import_time_data_falls_back_to_the_full_suite(recorded):
    repo, impact = recorded
    fresh = {"shop/calc.py": content_hash(repo / "shop/calc.py")}
    missing = select_tests(None, patch(MUL_DIFF), fresh, set())
    assert missing.nodeids is None and "no test-impact data" in missing.reason
    stale = select_tests(impact, patch(MUL_DIFF), {"shop/calc.py": "0" * 64}, set())
    assert stale.nodeids is None and "changed since" in stale.reason
    # a repo config sets `source`, and which files were imported is not recorded
    narrowed = impact.model_copy(update={"whole_tree": False, "imported": None})
    unknown = select_tests(narrowed, patch(MUL_DIFF.replace("shop/calc.py", "shop/new.py"),
                                           ("shop/new.py",)), {"shop/new.py": None}, set())
    assert unknown.nodeids is None and "not in the test-impact data" in unknown.reason
    import_time = select_tests(impact, patch(LIMIT_DIFF), fresh, set())
    assert import_time.nodeids is None and "import time" in import_time.reason


def test_an_unmeasured_python_file_selects_no_test_when_the_whole_tree_was_measured(recorded):
    """``coverage run --source=.`` measured every file any test executed: a .py file
    missing from the data (docs/conf.py, a new module) ran in no test."""
    _repo, impact = recorded
    assert impact.whole_tree  # the repository has no coverage config: --source=.
    docs = patch(MUL_DIFF.replace("shop/calc.py", "docs/conf.py"), ("docs/conf.py",))
    failing = {"tests/test_calc.py::test_mul"}
    chosen = select_tests(impact, docs, {"docs/conf.py": None}, failing)
    assert chosen.nodeids == ("tests/test_calc.py::test_mul",)  # the failing ones only
    # a narrowed measurement (the repository's coverage config sets source) falls back
    # when it did not record which files the tests imported ...
    unrecorded = impact.model_copy(update={"whole_tree": False, "imported": None})
    assert select_tests(unrecorded, docs, {"docs/conf.py": None}, failing).nodeids is None
    # ... and for a file outside the measured source that a test process imported
    assert "shop/calc.py" in impact.imported and "docs/conf.py" not in impact.imported
    narrowed = impact.model_copy(update={"whole_tree": False, "files": {}})
    assert select_tests(narrowed, patch(MUL_DIFF), {}, set()).nodeids is None
    # a file no test process imported (an examples/ script) selects none, as above
    assert select_tests(narrowed, docs, {"docs/conf.py": None}, failing).nodeids == (
        "tests/test_calc.py::test_mul",)
    # a file that is not Python may be read by any test: the whole suite
    data = patch(MUL_DIFF.replace("shop/calc.py", "shop/rates.json"), ("shop/rates.json",))
    assert select_tests(impact, data, {"shop/rates.json": None}, set()).nodeids is None
    # a type stub is never imported at run time, whatever the measurement
    stub = patch(MUL_DIFF.replace("shop/calc.py", "shop/calc.pyi"), ("shop/calc.pyi",))
    assert select_tests(narrowed, stub, {"shop/calc.pyi": None}, set()).nodeids == ()
    # a conftest.py reaches every test below it: its directory is selected
    fixture = patch(MUL_DIFF.replace("shop/calc.py", "tests/conftest.py"), ("tests/conftest.py",))
    assert select_tests(narrowed, fixture, {}, set()).nodeids == ("tests",)


def test_the_selected_tests_run_alone_without_coverage(recorded):
    repo, _ = recorded
    result = measure_tests(sandbox_for(repo), TARGET_ENV, only(pytest={}, coverage={}),
                           select=("tests/test_calc.py::test_mul",))
    assert [c.nodeid for c in result.test_run.cases] == ["tests/test_calc.py::test_mul"]
    assert result.test_run.coverage_percent is None


def test_lines_map_back_through_an_earlier_candidate_of_the_same_file(recorded):
    repo, impact = recorded
    # an earlier candidate inserted two lines above mul: mul's body is now line 10
    earlier = ("diff --git a/shop/calc.py b/shop/calc.py\n--- a/shop/calc.py\n"
               "+++ b/shop/calc.py\n@@ -5,1 +5,3 @@ def add(a, b):\n     return a + b\n"
               "+\n+# sum\n")
    later = MUL_DIFF.replace("@@ -8,2 +8,2 @@", "@@ -10,2 +10,2 @@")
    stale = {"shop/calc.py": "0" * 64}  # the file differs from the recorded one: it was patched
    chosen = select_tests(impact, patch(later), stale, set(), [earlier])
    assert chosen.nodeids == ("tests/test_calc.py::test_mul",)
    on_added = MUL_DIFF.replace("@@ -8,2 +8,2 @@ def add(a, b):\n def mul(a, b):\n"
                                "-    return a * b\n+    return a * b + 1\n",
                                "@@ -7,1 +7,1 @@\n-# sum\n+# the sum\n")
    assert select_tests(impact, patch(on_added), stale, set(), [earlier]).nodeids is None


def test_the_map_reaches_a_resume_on_another_host_through_the_result_storage(
        recorded, prefect_harness, tmp_path, monkeypatch):
    """Host A reads the map its test run wrote; host B (another state directory, no file:
    it replayed that test run from the cache) reads the same map from the cached result."""
    from prefect import flow

    from mendflow.core.models import Sandbox
    from mendflow.tasks.detect.impact import impact_path
    from mendflow.tasks.detect.impact_record import read_impact_map

    _repo, impact = recorded

    @flow
    def read_on(sandbox, tree):
        return read_impact_map(sandbox, tree, return_state=True)

    def sandbox_on(home):
        path = home / "worktrees" / "m-impact"
        path.mkdir(parents=True)
        return Sandbox(mission_id="m-impact", path=path, branch="mendflow/m-impact",
                       base_commit="0" * 40, repo_root=home / "clones" / "repo")

    tree = f"tree-{tmp_path.name}"  # unique per run: a cache entry of an earlier run can't answer
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    monkeypatch.setenv("MENDFLOW_HOME", str(host_a))
    sandbox_a = sandbox_on(host_a)
    impact_path(sandbox_a, tree).write_text(impact.model_dump_json(), encoding="utf-8")
    first = read_on(sandbox_a, tree)
    assert first.name == "Completed" and first.result() == impact

    monkeypatch.setenv("MENDFLOW_HOME", str(host_b))
    sandbox_b = sandbox_on(host_b)
    assert not impact_path(sandbox_b, tree).exists()
    second = read_on(sandbox_b, tree)
    assert second.name == "Cached" and second.result() == impact
    # another tree has no entry and no file: no map, so selection runs the whole suite
    assert read_on(sandbox_b, tree + "-other").result() is None


def test_a_contexts_report_over_the_file_size_limit_falls_back_to_plain_coverage(make_repo):
    """packaging 26.4 (64,207 tests): `coverage json --show-contexts` passed the sandbox's
    1 GiB file size limit, the report was truncated and the whole baseline failed. Here
    150 tests x 2,000 lines make a ~10 MB contexts report under a 1 MiB limit."""
    from mendflow.core.config_sandbox import SandboxLimits
    from mendflow.core.models import Isolation

    body = "".join("    a += 1\n" for _ in range(2000))
    repo = make_repo({"big.py": f"def f():\n    a = 0\n{body}    return a\n",
                      "tests/test_big.py": "import pytest\n\nfrom big import f\n\n\n"
                                           "@pytest.mark.parametrize('i', range(150))\n"
                                           "def test_f(i):\n    assert f() == 2000\n"})
    env = TARGET_ENV.model_copy(update={"isolation": Isolation(
        backend="bwrap", limits=SandboxLimits(file_size_mb=1))})
    target = repo.parent / "map.json"
    result = measure_tests(sandbox_for(repo), env, only(pytest={}, coverage={}),
                           impact_file=target)
    assert result.ok, result.error
    assert result.test_run.collected == 150 and result.test_run.coverage_percent == 100.0
    assert not target.exists()  # no impact map: validations run the whole suite
