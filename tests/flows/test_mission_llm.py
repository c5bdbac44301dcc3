"""Missions that fix real bugs with Claude: the real anthropic SDK against a fake Messages API.

Every test runs a whole mission (real git repos, real pytest/coverage/ruff/
mypy/bandit subprocesses, real Prefect through the test harness); only the
model is scripted, by the fake server of :mod:`tests.fakes.fake_messages_api`
on 127.0.0.1. The bugs are the fixtures of ``tests/fixtures/bugs/``: each
ships the correct ``propose_fix`` input (``fix.json``) and a plausible wrong
one (``wrong_fix.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mendflow.core.models import Finding, MissionResult
from mendflow.flows.mission import maintenance_mission
from mendflow.tasks.detect.pytest_hangs import PLAN_ENV, TIMED_OUT_ENV
from mendflow.tasks.vcs import snapshot_checkout
from tests.fakes import fake_messages_api as api
from tests.fixtures.bugs import BUG_NAMES, apply_fix, load_bug, project_files
from tests.helpers.git import git
from tests.helpers.llm import reply, route_by_test, user_text
from tests.helpers.target import target_python

pytestmark = pytest.mark.usefixtures("prefect_harness")

FAKE_KEY = "sk-ant-e2e-Wq4Zr8Tn2Vx6Kb0Lm3Hs"
"""A distinctive fake API key: the tests look for it where it must never be."""
SERVICE_TOKEN = "svc-token-Jf7Qp1Xc5Ny9"


@pytest.fixture
def api_key(monkeypatch) -> str:
    """The key the mission's Claude fixer finds in ``ANTHROPIC_API_KEY``."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    return FAKE_KEY


def claude_section(fake: api.FakeMessagesAPI, **extra: Any) -> dict[str, Any]:
    return {"type": "anthropic", "base_url": fake.root_url, "model": "claude-test", **extra}


def write_config(tmp_path: Path, fixer: dict[str, Any], *, mypy: bool = False,
                 **sections: Any) -> Path:
    """A mission config: this interpreter runs the tests, mypy off unless asked, 2 iterations."""
    data: dict[str, Any] = {
        "environment": {"type": "interpreter", "python": target_python()},
        "tools": {"mypy": {"enabled": mypy}},
        "fixer": fixer,
        "mission": {"max_iterations": 2},
    }
    for name, section in sections.items():
        data[name] = {**data.get(name, {}), **section}
    path = tmp_path / "mendflow.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def run_mission(repo: Path, config: Path, mission_id: str) -> MissionResult:
    return maintenance_mission(path=str(repo), config_file=str(config), mission_id=mission_id)


def findings_of(bug_name: str, findings: tuple[Finding, ...]) -> list[Finding]:
    bug = load_bug(bug_name)
    return [f for f in findings if bug.matches(f)]


def branch_files(repo: Path, branch: str, paths: list[str]) -> dict[str, str]:
    return {p: git(repo, "show", f"{branch}:{p}") for p in paths}


def commits_on(repo: Path, result: MissionResult) -> list[str]:
    return git(repo, "rev-list", f"{result.base_commit}..{result.branch}").split()


def worktree_status(result: MissionResult) -> str:
    assert result.worktree is not None
    return git(Path(result.worktree), "status", "--porcelain")


# --- the five bugs, fixed ---------------------------------------------------------------


@pytest.mark.slow  # five missions, 4-7 s each; the file takes ~90 s with it
@pytest.mark.parametrize("name", BUG_NAMES)
def test_mission_fixes_the_bug_with_claude(name, make_repo, tmp_path, fake_anthropic, api_key):
    bug = load_bug(name)
    files = project_files(name)
    repo = make_repo(files)
    before = snapshot_checkout(repo)
    fake_anthropic.enqueue(reply(bug.fix))
    config = write_config(tmp_path, claude_section(fake_anthropic), mypy="mypy" in bug.tools)
    mission_id = f"llm-{name.replace('_', '-')}"

    result = run_mission(repo, config, mission_id)

    target = findings_of(name, result.findings)
    assert len(target) == 1, [(f.source, f.rule, f.path) for f in result.findings]
    accepted = [p for p in result.patches if p.status == "accepted"]
    assert [(p.fixer, p.finding_ids) for p in accepted] == [("anthropic", (target[0].id,))]
    assert [p for p in result.patches if p.status != "accepted"] == []
    # exactly the proposed edits, committed on the mission branch, and nothing else
    assert commits_on(repo, result) == [accepted[0].commit]
    changed = sorted({e["path"] for e in bug.fix["edits"]})
    assert accepted[0].files == tuple(changed)
    expected = apply_fix(files, bug.fix)
    assert branch_files(repo, result.branch, changed) == {p: expected[p].rstrip("\n")
                                                           for p in changed}
    assert git(repo, "diff", "--name-only", result.base_commit, result.branch).split() == changed
    # the bug is gone in the mission's final measurement (a failing test now passes)
    assert findings_of(name, result.final_findings) == []
    if "test_id" in bug.finding:
        assert not [f for f in result.final_findings
                    if f.source == "pytest" and f.test_id == bug.finding["test_id"]]
    assert result.status == "completed" and worktree_status(result) == ""
    assert snapshot_checkout(repo) == before
    assert (repo / changed[0]).read_text(encoding="utf-8") == files[changed[0]]
    # every model call is accounted for, and it went out as the protocol says
    assert result.llm_usage.calls == len(fake_anthropic.requests) == 1
    assert result.llm_usage.failures == () and result.llm_usage.budget_exhausted is None
    request = fake_anthropic.requests[0]
    assert request.path == "/v1/messages" and request.headers["x-api-key"] == api_key
    body = request.json
    assert body["model"] == "claude-test"
    assert body["tool_choice"] == {"type": "tool", "name": "propose_fix"}
    assert changed[0] in user_text(request)


# --- the repair loop --------------------------------------------------------------------


def test_rejected_candidate_feeds_the_gate_output_back(make_repo, tmp_path, fake_anthropic,
                                                       api_key):
    bug = load_bug("wrong_operator")
    assert bug.wrong_fix is not None
    repo = make_repo(project_files("wrong_operator"))
    fake_anthropic.enqueue(reply(bug.wrong_fix), reply(bug.fix))
    config = write_config(tmp_path, claude_section(fake_anthropic))

    result = run_mission(repo, config, "llm-repair")

    assert [p.status for p in result.patches] == ["rejected", "accepted"]
    first, second = result.patches
    assert first.commit is None and "claimed-fixed" in (first.reason or "")
    assert first.finding_ids == second.finding_ids
    assert len(fake_anthropic.requests) == 2 == result.llm_usage.calls
    retry = user_text(fake_anthropic.requests[1])
    assert "previous attempt was rejected" in retry
    assert "previous attempt was rejected" not in user_text(fake_anthropic.requests[0])
    for text in bug.feedback_mentions:  # the failing test's id and its assertion
        assert text in retry, text
    assert commits_on(repo, result) == [second.commit]
    assert "return net + tax" in git(repo, "show", f"{result.branch}:invoicing.py")
    assert findings_of("wrong_operator", result.final_findings) == []


# --- untrusted replies ------------------------------------------------------------------


def test_unsafe_or_ambiguous_replies_are_refused_and_nothing_stays_applied(
        make_repo, tmp_path, fake_anthropic, api_key):
    files = project_files("wrong_operator")
    ambiguous = "lines: list[Line]"
    assert files["invoicing.py"].count(ambiguous) == 2
    repo = make_repo(files)
    escape = api.analysis(root_cause="helper", affected_files=["../outside.py"])
    fake_anthropic.enqueue(
        api.tool_reply(escape, [{"path": "../outside.py", "search": "",
                                 "replace": "print('escaped')\n"}]),
        api.tool_reply(api.analysis(root_cause="rename", affected_files=["invoicing.py"]),
                       [{"path": "invoicing.py", "search": ambiguous,
                         "replace": "items: list[Line]"}]),
    )
    config = write_config(tmp_path, claude_section(fake_anthropic, policy={"max_attempts": 2}))

    result = run_mission(repo, config, "llm-untrusted")

    assert result.status == "completed"
    reasons = [p.reason or "" for p in result.patches]
    assert [p.status for p in result.patches] == ["rejected", "rejected"], reasons
    assert "path-escape" in reasons[0] and "search-ambiguous" in reasons[1]
    assert all(p.commit is None for p in result.patches)
    assert result.llm_usage.calls == len(fake_anthropic.requests) == 2
    assert commits_on(repo, result) == []
    assert worktree_status(result) == ""
    worktree = Path(result.worktree or "")
    for place in (repo.parent, worktree.parent, worktree):
        assert not (place / "outside.py").exists()
    assert "previous attempt was rejected" in user_text(fake_anthropic.requests[1])


def test_model_that_declines_leaves_no_patch(make_repo, tmp_path, fake_anthropic, api_key):
    repo = make_repo(project_files("wrong_operator"))
    why = "the expected total depends on a tax rule that the code does not show"
    fake_anthropic.enqueue(api.tool_reply(api.analysis(fixable=False, root_cause=why,
                                                       confidence="low"), [], "not sure"))
    config = write_config(tmp_path, claude_section(fake_anthropic))

    result = run_mission(repo, config, "llm-declined")

    assert result.status == "completed"
    assert not [p for p in result.patches if p.status in ("accepted", "rejected") or p.commit]
    assert commits_on(repo, result) == [] and result.exit_code != 0
    assert result.llm_usage.calls == len(fake_anthropic.requests) == 1
    assert findings_of("wrong_operator", result.final_findings)
    assert worktree_status(result) == ""
    # the decline and the model's reason are part of the mission's record
    session = (Path(result.report_dir) / "session_data.json").read_text(encoding="utf-8")
    assert why in session


def test_failing_tests_left_above_the_target_score_are_named_in_the_stop_reason(
        make_repo, tmp_path, fake_anthropic, api_key):
    """cachetools 8.0.2 with 4 injected bugs: 12 failing tests were left (the model declined
    them) and the mission said only "target score 95.0 reached" (the baseline scored 95.4)."""
    repo = make_repo(project_files("wrong_operator", "off_by_one"))
    fix_one = route_by_test({"wrong_operator": load_bug("wrong_operator").fix})
    fake_anthropic.respond_with(lambda request: fix_one(request) or api.tool_reply(
        api.analysis(fixable=False, confidence="low"), [], "not sure"))
    config = write_config(tmp_path, claude_section(fake_anthropic),
                          mission={"target_score": 10, "max_iterations": 3})

    result = run_mission(repo, config, "llm-declined-above-target")

    left = len([f for f in result.final_findings if f.category == "test-failure"])
    assert left >= 1 and [p.status for p in result.patches].count("accepted") == 1
    assert result.stop_reason == (f"target score 10.0 reached; {left} failing test(s) left, "
                                  "attempted and not fixed")


# --- budget ------------------------------------------------------------------------------


def test_call_budget_stops_the_model_calls(make_repo, tmp_path, fake_anthropic, api_key):
    repo = make_repo(project_files("wrong_operator", "off_by_one"))
    fixes = {name: load_bug(name).fix for name in ("wrong_operator", "off_by_one")}
    fake_anthropic.respond_with(route_by_test(fixes))
    config = write_config(tmp_path, claude_section(
        fake_anthropic, budget={"max_llm_calls_per_hour": 1}))

    result = run_mission(repo, config, "llm-budget")

    assert result.status == "completed"
    assert len(fake_anthropic.requests) == 1 == result.llm_usage.calls
    exhausted = result.llm_usage.budget_exhausted or ""
    assert "max_llm_calls_per_hour=1" in exhausted
    assert [p.status for p in result.patches] == ["accepted"]
    fixed = [n for n in fixes if not findings_of(n, result.final_findings)]
    assert len(fixed) == 1  # one bug fixed with the one call, the other one left
    session = json.loads((Path(result.report_dir) / "session_data.json").read_text())
    assert session["llm_usage"]["budget_exhausted"] == exhausted
    assert session["llm_usage"]["calls"] == 1


# --- authentication ----------------------------------------------------------------------


def test_refused_key_ends_model_calls_and_never_leaks(make_repo, tmp_path, fake_anthropic,
                                                      api_key):
    repo = make_repo(project_files("wrong_operator", "off_by_one"))
    fake_anthropic.enqueue(api.unauthorized())
    config = write_config(tmp_path, claude_section(fake_anthropic))

    result = run_mission(repo, config, "llm-auth")

    assert result.status == "completed"
    assert len(fake_anthropic.requests) == 1  # nothing more after the 401
    assert fake_anthropic.requests[0].headers["x-api-key"] == api_key  # the key was used
    assert len(result.llm_usage.failures) == 1
    failure = result.llm_usage.failures[0]
    assert "credentials" in failure and "401" in failure
    assert result.patches == () and commits_on(repo, result) == []
    assert "unusable" in result.stop_reason
    assert all(findings_of(n, result.final_findings) for n in ("wrong_operator", "off_by_one"))
    # the key is nowhere but in the auth headers
    assert all(api_key.encode() not in r.raw for r in fake_anthropic.requests)
    report_dir = Path(result.report_dir)
    reports = [p for p in report_dir.rglob("*") if p.is_file()]
    assert len(reports) >= 5
    for path in reports:
        assert api_key not in path.read_text(encoding="utf-8", errors="replace"), path
    worktree = Path(result.worktree or "")
    for path in worktree.rglob("*"):
        if path.is_file():
            assert api_key.encode() not in path.read_bytes(), path
    assert api_key not in git(repo, "log", "-p", "--all")


# --- a chain: ruff offline first, then Claude ---------------------------------------------


def test_chain_fixes_lint_offline_and_the_bug_with_claude(make_repo, tmp_path, fake_anthropic,
                                                          api_key):
    files = project_files("wrong_operator")
    files["invoicing.py"] = files["invoicing.py"].replace(
        "from dataclasses import dataclass\n", "import os\nfrom dataclasses import dataclass\n")
    repo = make_repo(files)
    fake_anthropic.enqueue(reply(load_bug("wrong_operator").fix))
    config = write_config(tmp_path, {"type": "chain",
                                     "fixers": [{"type": "ruff"}, claude_section(fake_anthropic)]})

    result = run_mission(repo, config, "llm-chain")

    assert any(f.rule == "F401" for f in result.findings)
    accepted = [(p.fixer, p.status) for p in result.patches]
    assert accepted == [("ruff", "accepted"), ("anthropic", "accepted")]
    assert len(fake_anthropic.requests) == 1 == result.llm_usage.calls
    assert "F401" not in user_text(fake_anthropic.requests[0])
    assert not any(f.rule == "F401" for f in result.final_findings)
    assert findings_of("wrong_operator", result.final_findings) == []
    fixed = git(repo, "show", f"{result.branch}:invoicing.py")
    assert "import os" not in fixed and "return net + tax" in fixed
    assert len(commits_on(repo, result)) == 2


def test_chain_keeps_the_repair_loop_of_its_model_fixer(make_repo, tmp_path, fake_anthropic,
                                                        api_key):
    bug = load_bug("off_by_one")
    assert bug.wrong_fix is not None
    repo = make_repo(project_files("off_by_one"))
    fake_anthropic.enqueue(reply(bug.wrong_fix), reply(bug.fix))
    config = write_config(tmp_path, {"type": "chain",
                                     "fixers": [{"type": "ruff"}, claude_section(fake_anthropic)]})

    result = run_mission(repo, config, "llm-chain-repair")

    assert [p.status for p in result.patches] == ["rejected", "accepted"]
    assert len(fake_anthropic.requests) == 2
    for text in bug.feedback_mentions:
        assert text in user_text(fake_anthropic.requests[1]), text


# --- secrets never reach the target's test run ------------------------------------------


def test_test_run_never_sees_the_secrets(make_repo, tmp_path, fake_anthropic, api_key,
                                         monkeypatch):
    probe = tmp_path / "probe" / "environ.jsonl"  # outside the repository and the worktree
    probe.parent.mkdir()
    monkeypatch.setenv("MY_SERVICE_TOKEN", SERVICE_TOKEN)
    monkeypatch.setenv("ENV_PROBE_OUT", str(probe))
    repo = make_repo(project_files("env_probe"))
    fake_anthropic.enqueue(reply(load_bug("env_probe").fix))
    # the probe writes outside the worktree, which bubblewrap forbids (see
    # tests/flows/test_sandbox_containment.py); what is tested here is the scrubbed environment
    config = write_config(tmp_path, claude_section(fake_anthropic), sandbox={"isolation": "none"})

    result = run_mission(repo, config, "llm-secrets")

    assert [p.status for p in result.patches] == ["accepted"]
    assert fake_anthropic.requests[0].headers["x-api-key"] == api_key  # the mission had the key
    runs = [json.loads(line) for line in probe.read_text(encoding="utf-8").splitlines()]
    assert len(runs) >= 2  # the baseline and the candidate's test runs
    for environ in runs:
        assert environ["ENV_PROBE_OUT"] == str(probe)
        assert "ANTHROPIC_API_KEY" not in environ and "MY_SERVICE_TOKEN" not in environ
        # only mendflow's own per-test timeout plan, and the file its timeout plugin names
        # the stopped tests in, reach the tests (no secret, no state)
        assert not [n for n in environ if n.startswith(("PREFECT_", "MENDFLOW_"))
                    and n not in (PLAN_ENV, TIMED_OUT_ENV)]
    text = probe.read_text(encoding="utf-8")
    assert api_key not in text and SERVICE_TOKEN not in text
    assert api_key not in json.dumps([r.json for r in fake_anthropic.requests])
