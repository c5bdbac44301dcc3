"""ClaudeFixer end to end: the real anthropic SDK over loopback HTTP to a fake Messages API.

The repository is a real git repo with a real bug (``add`` subtracts); the
failing-test finding carries the failure text of a real pytest run.
"""

from __future__ import annotations

import os
import time

import pytest
from prefect import flow
from pydantic import SecretStr

from mendflow.core.config import AnthropicFixerConfig, LLMBudget, LLMPolicy
from mendflow.core.errors import ConfigError, LLMError
from mendflow.core.models import Declined, Finding, OutputRejected, Patched, Proposal, Sandbox
from mendflow.infra.budget import Budget, release_mission_budgets
from mendflow.infra.layout import StateLayout
from mendflow.infra.timeouts import LLM_STEP, history_path, load_history
from mendflow.tasks.fix import propose_patch
from mendflow.tasks.fix.claude import ClaudeFixer, make_anthropic_client
from mendflow.tasks.fix.llm_protocol import PROPOSE_FIX_SCHEMA, SYSTEM_PROMPT
from tests.fakes import fake_messages_api as api
from tests.helpers.detect import new_repo
from tests.helpers.git import git
from tests.helpers.llm import (
    CALC_FILES,
    FAKE_KEY,
    GOOD_EDIT,
    failing_tests,
    git_worktree_sandbox,
    lint_finding,
    porcelain,
    pytest_finding,
)

NODEID = "tests/test_calc.py::test_add"


@pytest.fixture(scope="module")
def add_failure(tmp_path_factory) -> str:
    """The failure text of the real failing test (pytest's JUnit XML), run once per module."""
    root = tmp_path_factory.mktemp("calc-run")
    failures = failing_tests(new_repo(root / "repo", CALC_FILES), root / "junit")
    assert list(failures) == [NODEID]
    return failures[NODEID]


@pytest.fixture
def calc(make_repo, add_failure) -> tuple[Sandbox, Finding]:
    sandbox = git_worktree_sandbox(make_repo(CALC_FILES))
    return sandbox, pytest_finding(sandbox.path, NODEID, add_failure, line=4)


def claude(fake: api.FakeMessagesAPI, **config) -> ClaudeFixer:
    """A ClaudeFixer with its own budget, talking to the fake with strict response validation."""
    cfg = AnthropicFixerConfig(**{"model": "claude-test", **config})
    client = make_anthropic_client(cfg, SecretStr(FAKE_KEY), fake.root_url, strict_validation=True)
    return ClaudeFixer(cfg, budget=Budget(cfg.budget), client=client)


def good_reply(**kwargs) -> api.ScriptedReply:
    return api.tool_reply(api.analysis(root_cause="add() subtracts", affected_files=["calc.py"]),
                          [GOOD_EDIT], "add must return a + b", **kwargs)


def test_a_correct_edit_becomes_a_patch_that_git_accepts(fake_anthropic, calc, tmp_path):
    sandbox, finding = calc
    fake_anthropic.enqueue(good_reply(input_tokens=812, output_tokens=95,
                                      cache_creation_input_tokens=640, cache_read_input_tokens=0))
    proposal = claude(fake_anthropic).propose(sandbox, [finding])
    assert isinstance(proposal, Patched), proposal
    patch = proposal.patch
    assert (proposal.fixer, patch.fixer, patch.confidence) == ("anthropic", "anthropic", "high")
    assert proposal.finding_ids == patch.finding_ids == (finding.id,)
    assert (proposal.input_tokens, proposal.output_tokens) == (812, 95)
    assert proposal.cache_creation_input_tokens == 640
    assert "add() subtracts" in patch.title
    (tmp_path / "p.diff").write_text(patch.diff)
    git(sandbox.path, "apply", "--check", str(tmp_path / "p.diff"))
    assert porcelain(sandbox.path) == ""


def test_the_request_caches_the_system_prompt_and_forces_the_one_tool(fake_anthropic, calc):
    sandbox, finding = calc
    fake_anthropic.enqueue(good_reply())
    claude(fake_anthropic, model="claude-test-model", max_tokens=2000).propose(sandbox, [finding])
    (request,) = fake_anthropic.requests
    body = request.json
    assert request.path == "/v1/messages"
    assert body["system"] == [{"type": "text", "text": SYSTEM_PROMPT,
                               "cache_control": {"type": "ephemeral"}}]
    assert [t["name"] for t in body["tools"]] == ["propose_fix"]
    assert body["tools"][0]["input_schema"] == PROPOSE_FIX_SCHEMA
    assert body["tool_choice"] == {"type": "tool", "name": "propose_fix"}
    assert (body["model"], body["max_tokens"]) == ("claude-test-model", 2000)
    assert "temperature" not in body
    (message,) = body["messages"]
    assert message["role"] == "user"
    assert "return a - b" in message["content"] and NODEID in message["content"]
    assert len(request.raw) < 6000  # the relevant snippets, not the repository
    assert request.headers["x-stainless-retry-count"] == "0"


def test_a_configured_temperature_is_sent(fake_anthropic, calc):
    sandbox, finding = calc
    fake_anthropic.enqueue(good_reply())
    claude(fake_anthropic, temperature=0.2).propose(sandbox, [finding])
    assert fake_anthropic.requests[0].json["temperature"] == 0.2


def test_the_api_key_is_only_in_the_auth_headers(fake_anthropic, calc):
    sandbox, finding = calc
    fake_anthropic.enqueue(good_reply())
    claude(fake_anthropic).propose(sandbox, [finding])
    (request,) = fake_anthropic.requests
    assert FAKE_KEY.encode() not in request.raw
    carrying = {name for name, value in request.headers.items() if FAKE_KEY in value}
    assert carrying == {"authorization", "x-api-key"}
    assert request.headers["authorization"] == f"Bearer {FAKE_KEY}"


def test_feedback_and_the_attempt_number_reach_the_model(fake_anthropic, calc):
    sandbox, finding = calc
    fake_anthropic.enqueue(good_reply())
    claude(fake_anthropic).propose(sandbox, [finding], feedback="gate tests: test_mul broke",
                                   attempt=2)
    content = fake_anthropic.requests[0].json["messages"][0]["content"]
    assert "gate tests: test_mul broke" in content and "attempt 2" in content


def test_attempts_beyond_max_attempts_are_declined_without_a_call(fake_anthropic, calc):
    sandbox, finding = calc
    proposal = claude(fake_anthropic, policy=LLMPolicy(max_attempts=2)).propose(
        sandbox, [finding], attempt=3)
    assert isinstance(proposal, Declined) and "max_attempts=2" in proposal.reason
    assert fake_anthropic.requests == []


@pytest.mark.parametrize(("analysis", "policy", "expected"), [
    (api.analysis(fixable=False, root_cause="the test itself is wrong"), LLMPolicy(),
     "model: not fixable: the test itself is wrong"),
    (api.analysis(confidence="low"), LLMPolicy(),
     "policy: confidence low is below min_confidence=medium"),
    (api.analysis(confidence="medium"), LLMPolicy(min_confidence="high"),
     "policy: confidence medium is below min_confidence=high"),
    (api.analysis(category="security"), LLMPolicy(denied_categories=["security"]),
     "policy: category security is in denied_categories"),
    (api.analysis(category="logic"), LLMPolicy(allowed_categories=["type", "import"]),
     "policy: category logic is not in allowed_categories"),
])
def test_the_model_or_the_policy_may_decline(fake_anthropic, calc, analysis, policy, expected):
    sandbox, finding = calc
    fake_anthropic.enqueue(api.tool_reply(analysis, [GOOD_EDIT], input_tokens=77))
    proposal = claude(fake_anthropic, policy=policy).propose(sandbox, [finding])
    assert isinstance(proposal, Declined) and proposal.reason == expected
    assert proposal.input_tokens == 77
    assert porcelain(sandbox.path) == ""


def edit(path: str, search: str, replace: str) -> list[dict[str, str]]:
    return [{"path": path, "search": search, "replace": replace}]


@pytest.mark.parametrize(("reply", "reason"), [
    (api.text_reply(), "malformed-reply"),
    (api.malformed_reply(), "malformed-reply"),
    (api.tool_input_reply({"analysis": api.analysis(), "edits": "calc.py"}), "malformed-reply"),
    (api.tool_input_reply({"edits": [], "explanation": "x"}), "malformed-reply"),
    (api.tool_input_reply({"analysis": api.analysis(), "edits": [], "explanation": "x",
                           "shell": "rm -rf /"}), "malformed-reply"),
    (api.tool_input_reply({"analysis": api.analysis(), "edits": [GOOD_EDIT],
                           "explanation": "x"}, name="run_shell"), "malformed-reply"),
    (api.tool_reply(api.analysis(), []), "no-edits"),
    (api.tool_reply(api.analysis(), edit("../outside.py", "", "x = 1\n")), "path-escape"),
    (api.tool_reply(api.analysis(), edit(".github/workflows/ci.yml", "", "on: push\n")),
     "denylisted"),
    (api.tool_reply(api.analysis(), edit("calc.py", "return a / b", "return a + b")),
     "search-not-found"),
    (api.tool_reply(api.analysis(), edit("calc.py", "(a, b):", "(a, b, c):")), "search-ambiguous"),
    (api.tool_reply(api.analysis(), edit("calc.py", "return a - b", "return a +")), "syntax"),
    (api.tool_reply(api.analysis(), edit("calc.py", "return a - b", "x" * 30000)), "too-large"),
])
def test_unusable_replies_are_rejected_and_the_worktree_is_untouched(fake_anthropic, calc, reply,
                                                                     reason):
    sandbox, finding = calc
    fake_anthropic.enqueue(reply)
    proposal = claude(fake_anthropic).propose(sandbox, [finding])
    assert isinstance(proposal, OutputRejected) and proposal.guard == reason
    assert proposal.message  # the message, fed back to the next attempt
    assert proposal.llm_calls == 1  # what it cost is recorded
    assert porcelain(sandbox.path) == ""


def propose_error(fake: api.FakeMessagesAPI, calc, reply, **config) -> LLMError:
    sandbox, finding = calc
    fake.enqueue(reply)
    with pytest.raises(LLMError) as info:
        claude(fake, **config).propose(sandbox, [finding])
    assert FAKE_KEY not in str(info.value)
    return info.value


@pytest.mark.parametrize(("reply", "status", "retry_after"), [
    (api.rate_limited("1"), 429, 1.0),
    (api.rate_limited("3600"), 429, 5.0),  # capped by max_retry_after_s
    (api.error_reply(429, "rate_limit_error", retry_after_ms="250"), 429, 0.25),
    (api.overloaded(), 529, None),
    (api.server_error(), 500, None),
])
def test_transient_faults_are_retryable_with_a_capped_retry_after(fake_anthropic, calc, reply,
                                                                   status, retry_after):
    err = propose_error(fake_anthropic, calc, reply, max_retry_after_s=5)
    assert err.retryable is True
    assert err.status_code == status and err.retry_after_s == retry_after
    assert err.auth is False


def test_a_slow_reply_times_out_as_a_retryable_error(fake_anthropic, calc):
    err = propose_error(fake_anthropic, calc, api.slow(good_reply(), 2.0), timeout_s=0.3)
    assert err.retryable is True and "timed out" in err.message


def test_a_successful_call_records_its_wall_time_and_a_failed_one_does_not(fake_anthropic, calc):
    sandbox, finding = calc
    fake_anthropic.enqueue(api.slow(good_reply(), 0.2))
    assert isinstance(claude(fake_anthropic).propose(sandbox, [finding]), Patched)
    home = StateLayout.resolve()
    (seconds,) = load_history(sandbox.repo_root, home)[LLM_STEP]  # the user's repo, not the worktree
    assert 0.2 <= seconds < 5
    assert history_path(sandbox.repo_root, home).is_relative_to(os.environ["MENDFLOW_HOME"])
    propose_error(fake_anthropic, calc, api.slow(good_reply(), 2.0), timeout_s=0.3)
    propose_error(fake_anthropic, calc, api.overloaded())
    assert load_history(sandbox.repo_root, home)[LLM_STEP] == [seconds]  # no timeout poisons it
    assert porcelain(sandbox.repo_root) == "" and porcelain(sandbox.path) == ""


def test_an_unreachable_api_is_a_retryable_connection_error(calc):
    cfg = AnthropicFixerConfig(model="claude-test")
    client = make_anthropic_client(cfg, SecretStr(FAKE_KEY), "http://127.0.0.1:9")
    sandbox, finding = calc
    with pytest.raises(LLMError) as info:
        ClaudeFixer(cfg, budget=Budget(), client=client).propose(sandbox, [finding])
    assert info.value.retryable is True and "could not connect" in info.value.message


def test_a_bad_request_is_not_retryable(fake_anthropic, calc):
    err = propose_error(fake_anthropic, calc, api.bad_request())
    assert err.retryable is False and err.status_code == 400 and err.auth is False


def test_a_refused_key_is_an_auth_error_that_never_shows_the_key(fake_anthropic, calc):
    err = propose_error(fake_anthropic, calc, api.unauthorized())
    assert err.retryable is False and err.auth is True and err.status_code == 401
    assert "credentials" in err.message and "API key" in (err.hint or "")


@flow(name="llm-fixer-test")
def proposing_flow(config: AnthropicFixerConfig, sandbox: Sandbox, group: tuple[Finding, ...],
                   fast: bool = False, attempt: int = 1) -> Proposal:
    """A flow that asks the configured fixer once, through the mission's task."""
    task = propose_patch.with_options(retry_delay_seconds=0, retry_jitter_factor=None) \
        if fast else propose_patch
    return task(config, sandbox, group, None, attempt)


def task_config(fake: api.FakeMessagesAPI, monkeypatch) -> AnthropicFixerConfig:
    """A config that reaches the fake through the SDK's own conventions (env key, base_url)."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    return AnthropicFixerConfig(model="claude-test", base_url=fake.root_url)


def test_the_prefect_task_retries_an_overloaded_api_then_succeeds(prefect_harness, monkeypatch,
                                                                  fake_anthropic, calc):
    sandbox, finding = calc
    fake_anthropic.enqueue(api.overloaded(), good_reply())
    proposal = proposing_flow(task_config(fake_anthropic, monkeypatch), sandbox, (finding,),
                              fast=True)
    assert isinstance(proposal, Patched)
    assert len(fake_anthropic.requests) == 2
    assert [r.headers["x-stainless-retry-count"] for r in fake_anthropic.requests] == ["0", "0"]
    release_mission_budgets(sandbox.mission_id)


def test_the_prefect_task_honors_retry_after_and_does_not_retry_a_bad_request(
        prefect_harness, monkeypatch, fake_anthropic, calc):
    sandbox, finding = calc
    config = task_config(fake_anthropic, monkeypatch)
    fake_anthropic.enqueue(api.rate_limited("1"), good_reply())
    start = time.monotonic()
    assert isinstance(proposing_flow(config, sandbox, (finding,), fast=True), Patched)
    assert time.monotonic() - start >= 1.0
    # the same question again is answered from Prefect's persisted cache: no new call
    assert isinstance(proposing_flow(config, sandbox, (finding,), fast=True), Patched)
    assert len(fake_anthropic.requests) == 2
    fake_anthropic.enqueue(api.bad_request(), good_reply())
    with pytest.raises(LLMError, match="400"):
        proposing_flow(config, sandbox, (finding,), fast=True, attempt=2)
    assert len(fake_anthropic.requests) == 3  # 429, success, 400 (not retried)
    # an API error is not cached: asked again, the model answers
    assert isinstance(proposing_flow(config, sandbox, (finding,), fast=True, attempt=2), Patched)
    assert len(fake_anthropic.requests) == 4
    release_mission_budgets(sandbox.mission_id)


def test_calls_per_hour_are_capped(fake_anthropic, calc):
    sandbox, finding = calc
    fixer = claude(fake_anthropic, budget=LLMBudget(max_llm_calls_per_hour=2))
    fake_anthropic.enqueue(api.overloaded(), good_reply(), good_reply())
    with pytest.raises(LLMError):
        fixer.propose(sandbox, [finding])  # a failed call counts too
    assert isinstance(fixer.propose(sandbox, [finding]), Patched)
    proposal = fixer.propose(sandbox, [finding])
    assert isinstance(proposal, Declined) and proposal.budget_exhausted and "budget" in proposal.reason
    assert "max_llm_calls_per_hour=2" in proposal.reason
    assert len(fake_anthropic.requests) == 2


@pytest.mark.parametrize(("limits", "tokens", "calls"), [
    (LLMBudget(max_input_tokens=250), {"input_tokens": 100, "output_tokens": 10}, 3),
    (LLMBudget(max_output_tokens=100), {"input_tokens": 10, "output_tokens": 60}, 2),
    (LLMBudget(max_cost_usd=0.01), {"input_tokens": 1000, "output_tokens": 300}, 2),
])
def test_token_and_cost_caps_are_exceeded_by_one_call_at_most(fake_anthropic, calc, limits,
                                                              tokens, calls):
    sandbox, finding = calc
    fixer = claude(fake_anthropic, budget=limits)
    fake_anthropic.enqueue(*[good_reply(**tokens) for _ in range(10)])
    declined = []
    for _ in range(6):
        proposal = fixer.propose(sandbox, [finding])
        if isinstance(proposal, Declined):
            declined.append(proposal.reason)
    assert len(fake_anthropic.requests) == calls
    assert len(declined) == 6 - calls and all(d.startswith("budget: ") for d in declined)


def test_fixers_rebuilt_per_proposal_share_the_mission_budget(fake_anthropic, calc):
    sandbox, finding = calc
    sandbox = sandbox.model_copy(update={"mission_id": "budget-share-test"})
    cfg = AnthropicFixerConfig(model="claude-test", budget=LLMBudget(max_llm_calls_per_hour=1))
    client = make_anthropic_client(cfg, SecretStr(FAKE_KEY), fake_anthropic.root_url)
    fake_anthropic.enqueue(good_reply(), good_reply())
    try:
        assert isinstance(ClaudeFixer(cfg, client=client).propose(sandbox, [finding]), Patched)
        second = ClaudeFixer(cfg, client=client).propose(sandbox, [finding])
        assert isinstance(second, Declined) and "budget" in second.reason
        assert len(fake_anthropic.requests) == 1
    finally:
        release_mission_budgets("budget-share-test")


def test_the_key_and_base_url_come_from_the_environment(fake_anthropic, calc, monkeypatch):
    sandbox, finding = calc
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_anthropic.root_url)
    fake_anthropic.enqueue(good_reply())
    fixer = ClaudeFixer(AnthropicFixerConfig(model="claude-test"), budget=Budget())
    assert isinstance(fixer.propose(sandbox, [finding]), Patched)
    assert fake_anthropic.requests[0].headers["x-api-key"] == FAKE_KEY


def test_a_missing_key_is_a_config_error_with_a_hint(calc, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    sandbox, finding = calc
    with pytest.raises(ConfigError) as info:
        ClaudeFixer(AnthropicFixerConfig(), budget=Budget()).propose(sandbox, [finding])
    assert "ANTHROPIC_API_KEY" in (info.value.hint or "")
    assert "AnthropicCredentials" in (info.value.hint or "")


def test_plan_leaves_offline_and_info_findings_out_and_puts_failing_tests_first(calc):
    sandbox, failing = calc
    root = sandbox.path
    fixable_lint = lint_finding(root, "calc.py", 1, source="ruff", rule="F401", fixable=True)
    lint = lint_finding(root, "calc.py", 2, source="ruff", rule="B006")
    typing_error = lint_finding(root, "calc.py", 5, source="mypy", rule="arg-type")
    todo = lint_finding(root, "calc.py", 1, source="todo", rule="TODO", severity="info")
    cfg = AnthropicFixerConfig()
    offline = make_anthropic_client(cfg, SecretStr(FAKE_KEY), "http://127.0.0.1:9")
    groups = ClaudeFixer(cfg, client=offline).plan([typing_error, fixable_lint, lint, todo, failing])
    assert groups == [(failing,), (typing_error,), (lint,)]

