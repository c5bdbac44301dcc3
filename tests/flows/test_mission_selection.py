"""Test-impact selection in a whole mission: a breakage only an unselected test catches is
refused at the batch's full run, and the bisection blames the candidate that caused it.

Real git, pytest, coverage (with contexts), ruff and Prefect's test harness; the
Claude fixer talks to the fake Messages API on 127.0.0.1.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from mendflow.flows.mission import maintenance_mission
from mendflow.infra import audit
from mendflow.infra.outcomes import OutcomeStore
from tests.fakes import fake_messages_api as api
from tests.fakes.server import RecordedRequest, ScriptedReply
from tests.helpers.git import git
from tests.helpers.llm import user_text
from tests.helpers.target import target_python

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

FILES = {
    "adder.py": """
        def add(a, b):
            return a - b
    """,
    "ops.py": """
        def sub(a, b):
            return a + b


        def mul(a, b):
            return a * b
    """,
    "tests/test_adder.py": """
        from adder import add


        def test_add():
            assert add(1, 2) == 3
    """,
    # mul runs only in a subprocess: coverage's contexts never see this test reach it
    "tests/test_ops.py": """
        import subprocess
        import sys
        from pathlib import Path

        from ops import sub


        def test_sub():
            assert sub(3, 2) == 1


        def test_mul_cli():
            out = subprocess.run([sys.executable, "-c", "from ops import mul; print(mul(2, 3))"],
                                 cwd=Path(__file__).parent.parent, capture_output=True,
                                 text=True, check=True).stdout
            assert out.strip() == "6"
    """,
}
GOOD_ADD = {"path": "adder.py", "search": "    return a - b\n", "replace": "    return a + b\n"}
# fixes sub, and breaks mul on the way
BAD_SUB = {"path": "ops.py", "search": "    return a + b\n\n\ndef mul(a, b):\n    return a * b\n",
           "replace": "    return a - b\n\n\ndef mul(a, b):\n    return a * b + 1\n"}


def model(request: RecordedRequest) -> ScriptedReply:
    text = user_text(request)
    edits = [edit for test, edit in (("test_adder.py::test_add", GOOD_ADD),
                                     ("test_ops.py::test_sub", BAD_SUB)) if test in text]
    return api.tool_reply(api.analysis(fixable=bool(edits)), edits)


def test_the_batch_run_refuses_what_selection_missed_and_blames_the_right_candidate(
        make_repo, tmp_path, fake_anthropic, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-selection-0000")
    repo = make_repo(FILES)
    fake_anthropic.respond_with(model)
    config = tmp_path / "mendflow.yaml"
    config.write_text(yaml.safe_dump({
        "environment": {"type": "interpreter", "python": target_python()},
        "tools": {"mypy": {"enabled": False}},
        "fixer": {"type": "anthropic", "base_url": fake_anthropic.root_url, "model": "m",
                  "policy": {"max_attempts": 1}},
        "mission": {"max_iterations": 1, "target_score": 100},
    }), encoding="utf-8")  # validation.select_tests: true is the default

    result = maintenance_mission(path=str(repo), config_file=str(config), mission_id="select")

    by_file = {p.files: p for p in result.patches}
    good, bad = by_file[("adder.py",)], by_file[("ops.py",)]
    assert good.status == "accepted" and good.commit
    assert bad.status == "rejected" and bad.commit is None
    assert bad.reason.startswith("full run: ") and "no-test-regression" in bad.reason
    assert "test_mul_cli" in next(g.detail for g in bad.validation.gates
                                  if g.gate == "no-test-regression")
    # both candidates passed their selected tests; the unselected test_mul_cli never ran then
    quick = [v for v in result.timings.validations if not v.full_run]
    assert [v.patch_id for v in quick] == [good.id, bad.id]
    assert all(v.tests_run < v.tests_total == 3 for v in quick)
    full = [v for v in result.timings.validations if v.full_run]
    assert [v.patch_id for v in full] == [f"batch:{good.id}+{bad.id}", f"batch:{good.id}"]
    # only the confirmed candidate landed; mul is intact on the mission branch
    assert git(repo, "rev-list", f"{result.base_commit}..{result.branch}").split() == [good.commit]
    assert "return a * b\n" in git(repo, "show", f"{result.branch}:ops.py") + "\n"
    assert "return a + b" in git(repo, "show", f"{result.branch}:adder.py")
    assert git(repo, "-C", result.worktree or "", "status", "--porcelain") == ""
    # the audit trail and the outcome store tell what the result tells, as on the full path
    home = Path(os.environ["MENDFLOW_HOME"])
    commits = [e for e in audit.read(home) if e["what"] == "commit"]
    assert [e["details"]["commit"] for e in commits] == [good.commit]
    assert "no-test-regression: passed" in commits[0]["why"]["gates"]
    rows = {r.patch_id: r for r in OutcomeStore.open(None, home).attempts(mission_id="select")}
    assert rows[good.id].result == "accepted" and rows[good.id].commit == good.commit
    assert rows[bad.id].result == "rejected" and rows[bad.id].gate == "no-test-regression"
