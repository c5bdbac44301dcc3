"""A mission whose Claude patch edits a root ``test.py`` that pytest collects: refused unmeasured.

Real git, real pytest under bubblewrap, the real anthropic SDK against the fake
Messages API. ``test.py`` matches none of ``gates.test_globs``: it is a test
file because pytest collected tests from it at baseline (the JUnit XML).
"""

from __future__ import annotations

import pytest
import yaml

from mendflow.flows.mission import maintenance_mission
from tests.fakes import fake_messages_api as api
from tests.helpers.git import git
from tests.helpers.target import target_python

pytestmark = pytest.mark.usefixtures("prefect_harness")

FILES = {
    "setup.cfg": "[tool:pytest]\npython_files = test.py\n",
    "calc.py": "def add(a, b):\n    return a - b\n",
    "test.py": "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n",
}


@pytest.mark.slow  # one whole mission
def test_a_patch_to_a_collected_root_test_py_is_refused(make_repo, tmp_path, fake_anthropic,
                                                        monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-gamed")
    repo = make_repo(FILES)
    fake_anthropic.enqueue(api.tool_reply(
        api.analysis(root_cause="the test expects the wrong sum", affected_files=["test.py"]),
        [{"path": "test.py", "search": "    assert add(1, 2) == 3\n",
          "replace": "    assert add(1, 2) == -1\n"}]))
    config = tmp_path / "mendflow.yaml"
    config.write_text(yaml.safe_dump({
        "environment": {"type": "interpreter", "python": target_python()},
        "tools": {"mypy": {"enabled": False}},
        "fixer": {"type": "anthropic", "base_url": fake_anthropic.root_url, "model": "m",
                  "policy": {"max_attempts": 1}},
        "mission": {"max_iterations": 1},
    }), encoding="utf-8")

    result = maintenance_mission(path=str(repo), config_file=str(config), mission_id="gamed")

    [patch] = result.patches
    assert patch.status == "rejected" and patch.reason == "test-files"
    gate = {g.gate: g for g in patch.validation.gates}
    assert list(gate) == ["syntax", "test-files"]  # refused before any test run
    assert "touches test file test.py (pytest collected tests from it at baseline)" \
        in gate["test-files"].detail
    assert git(repo, "rev-list", "--count", f"{result.base_commit}..{result.branch}") == "0"
