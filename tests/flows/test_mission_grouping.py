"""One model call per defect, and a per-cycle cap that counts candidates really attempted.

A whole mission (real git, pytest, coverage, ruff, Prefect's test harness) with
the Claude fixer talking to the fake Messages API, scripted as a perfect model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mendflow.flows.mission import maintenance_mission
from tests.fakes import fake_messages_api as api
from tests.fakes.server import RecordedRequest, ScriptedReply
from tests.helpers.llm import user_text
from tests.helpers.target import target_python

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

# Two defects (add, mul). test_total fails because of add too, but its own root
# cause is total(): a group the add patch fixes before it is reached.
FILES = {
    "calc.py": """
        def add(a, b):
            return a - b


        def total(values):
            result = 0
            for value in values:
                result = add(result, value)
            return result


        def mul(a, b):
            return a * b + 1
    """,
    "tests/test_calc.py": """
        from calc import add, mul, total


        def test_add():
            assert add(1, 2) == 3


        def test_add_zero():
            assert add(0, 2) == 2


        def test_total():
            assert total([1, 2]) == 3


        def test_mul():
            assert mul(2, 3) == 6


        def test_mul_one():
            assert mul(1, 1) == 1
    """,
}
FIXES = {
    "test_calc.py::test_add": {"path": "calc.py", "search": "    return a - b\n",
                               "replace": "    return a + b\n"},
    "test_calc.py::test_mul": {"path": "calc.py", "search": "    return a * b + 1\n",
                               "replace": "    return a * b\n"},
}


def perfect_model(request: RecordedRequest) -> ScriptedReply:
    """The fix of every defect whose failing test the request names."""
    text = user_text(request)
    edits = [edit for test, edit in FIXES.items() if test in text]
    return api.tool_reply(api.analysis(fixable=bool(edits), affected_files=["calc.py"]), edits)


def test_one_call_per_defect_and_the_cap_counts_attempts(make_repo, tmp_path, fake_anthropic,
                                                         monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-grouping-0000")
    repo = make_repo(FILES)
    fake_anthropic.respond_with(perfect_model)
    config = tmp_path / "mendflow.yaml"
    config.write_text(yaml.safe_dump({
        "environment": {"type": "interpreter", "python": target_python()},
        "tools": {"mypy": {"enabled": False}},
        "fixer": {"type": "anthropic", "base_url": fake_anthropic.root_url, "model": "m"},
        "mission": {"max_iterations": 1, "max_patches_per_iteration": 2, "target_score": 100},
        "validation": {"select_tests": True},
    }), encoding="utf-8")

    result = maintenance_mission(path=str(repo), config_file=str(config), mission_id="groups")

    failing = {f.test_id.split("::", 1)[1]: f.root_cause for f in result.findings
               if f.rule == "test-failure"}
    assert failing == {"test_add": "calc.py::add", "test_add_zero": "calc.py::add",
                       "test_total": "calc.py::total", "test_mul": "calc.py::mul",
                       "test_mul_one": "calc.py::mul"}
    # two defects, two calls: the total() group was fixed by the add patch and cost no slot
    assert len(fake_anthropic.requests) == result.llm_usage.calls == 2
    accepted = [p for p in result.patches if p.status == "accepted"]
    assert len(accepted) == 2 and len(result.patches) == 2
    assert sorted(len(p.finding_ids) for p in accepted) == [2, 2]
    assert not [f for f in result.final_findings if f.rule == "test-failure"]
    assert Path(result.worktree or "").is_dir()
    # timings and the suite before/after are in the contract and the report
    timings = result.timings
    assert timings.baseline_s > 0
    assert timings.environment_s > 0  # the environment's preparation, before the baseline
    # each patch is validated first by its selected tests (the mul patch's lines mapped
    # back through the add patch, applied before it); one full run confirms both
    first, second, batch = timings.validations
    assert [(v.patch_id, v.full_run, v.tests_total) for v in (first, second)] == [
        (accepted[0].id, False, 5), (accepted[1].id, False, 5)]
    assert (batch.patch_id, batch.full_run, batch.tests_run) == (
        f"batch:{accepted[0].id}+{accepted[1].id}", True, 5)
    assert first.duration_s > 0 and batch.duration_s > 0
    assert result.tests_before is not None and result.tests_after is not None
    assert (result.tests_before.passed, result.tests_before.total) == (0, 5)
    assert (result.tests_after.passed, result.tests_after.total) == (5, 5)
    saved = json.loads((Path(result.report_dir) / "session_data.json").read_text())
    assert saved["timings"]["baseline_s"] == timings.baseline_s
    assert saved["timings"]["environment_s"] == timings.environment_s
    assert set(saved["timings"]["validations"][0]) == {"patch_id", "duration_s", "tests_run",
                                                       "tests_total", "full_run"}
    report = (Path(result.report_dir) / "final_maintenance_report.md").read_text()
    assert "## Timings" in report and "- Environment: " in report
    assert "| 5 of 5 | yes |" in report and "| no |" in report
    assert f"2 commit(s) on {result.branch} to review and merge" in report
    assert "0/5 passed" in report and "5/5 passed" in report
