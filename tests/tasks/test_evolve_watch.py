"""The evolution loop's pure parts and its bisect: the generate switches steer the mission,
the dashboard lists pending approvals, and `git bisect run` runs the tests in the sandbox."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mendflow.core.config import EvolutionConfig, SandboxConfig
from mendflow.core.evolution import CycleRecord, Regression
from mendflow.core.models import TargetEnv
from mendflow.infra.isolation import resolve_isolation
from mendflow.tasks.evolve import fix_categories, generated
from mendflow.tasks.evolve.dashboard import PendingApproval, render_dashboard
from mendflow.tasks.evolve.watch import first_bad_commit
from tests.helpers.git import git, write_files

BUGS = ["lint", "runtime", "security", "style", "syntax", "test-failure", "type"]


def test_generate_switches_choose_what_the_fixer_is_given():
    assert fix_categories(EvolutionConfig()) == BUGS
    every = EvolutionConfig(generate={"features_from_todos": True, "performance": True,
                                      "tests": True})
    assert fix_categories(every) == sorted([*BUGS, "coverage", "performance", "todo"])
    only_todos = EvolutionConfig(generate={"bug_fixes": False, "features_from_todos": True})
    assert fix_categories(only_todos) == ["todo"]
    assert generated(only_todos, "todo") and not generated(only_todos, "lint")
    assert not generated(EvolutionConfig(), "coverage")


def test_dashboard_lists_pending_approvals():
    record = CycleRecord(cycle=4, started_at="2026-12-01T00:00:00+00:00", duration_s=1.0,
                         status="completed", head_before=None, head_after="a" * 40,
                         regressions=(Regression(test="tests/test_x.py::t", commit="b" * 40,
                                                 action="reported"),),
                         limit="max_open_prs (5) reached: 5 open", held=("ruff-1",))
    waiting = PendingApproval(run_id="1234", run_name="brave-otter", state="Paused",
                              mission_id="evo-1", repository="/r", patches_waiting=2,
                              deadline="2026-12-02T00:00:00+00:00", age_s=3.0)
    text = render_dashboard(record, [], [waiting])
    assert "cycle 4 (completed)" in text
    pending = text.split("**Pending approvals**")[1].split("**Regressions**")[0]
    assert "`brave-otter` (1234): 2 patch(es) of mission `evo-1`" in pending
    assert "`mendflow approve 1234`" in pending and "2026-12-02" in pending
    assert "bbbbbbbbbb → reported" in text and "`ruff-1`" in text
    assert "- none" in render_dashboard(record, [], []).split("**Pending approvals**")[1]


TEST = '''
import os
from pkg.m import VALUE


def test_value():
    try:  # code under test that writes outside its worktree
        with open(os.environ["ESCAPE"] + "/" + str(VALUE), "w") as handle:
            handle.write("escaped")
    except OSError:
        pass
    assert VALUE == 1
'''


@pytest.mark.slow
def test_bisect_runs_the_tests_in_the_sandbox(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    shas = []
    for value, note in ((1, "good"), (1, "docs"), (2, "the culprit"), (2, "more")):
        write_files(repo, {"pkg/__init__.py": "", "pkg/m.py": f"VALUE = {value}\n",
                           "tests/test_m.py": TEST, "NOTES": note})
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", note)
        shas.append(git(repo, "rev-parse", "HEAD"))
    escape = Path.home() / f".mendflow-escape-{tmp_path.name}"  # hidden in the sandbox
    escape.mkdir()
    monkeypatch.setenv("ESCAPE", str(escape))
    try:
        isolation = resolve_isolation(SandboxConfig(isolation="bwrap"), hidden=[Path.home()])
        env = TargetEnv(python=Path(sys.executable), kind="interpreter", fingerprint="t",
                        isolation=isolation)
        found = first_bad_commit(repo, shas[0], shas[-1], ["tests/test_m.py::test_value"], env,
                                 120, tmp_path / "work")
        assert found == shas[2]
        assert list(escape.iterdir()) == [], "a bisect step wrote outside the sandbox"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                       cwd=repo, capture_output=True, check=False)
        assert [p.name for p in escape.iterdir()] == ["2"]  # unisolated, the same test can
    finally:
        for path in escape.iterdir():
            path.unlink()
        escape.rmdir()
    assert git(repo, "worktree", "list").count("\n") == 0  # the bisect worktree is gone
