"""OpenAICompatibleFixer: the real openai SDK over loopback HTTP to a fake chat-completions API."""

from __future__ import annotations

import json

import pytest

from mendflow.core.config import OpenAICompatibleFixerConfig, validate_config
from mendflow.core.errors import ConfigError, LLMError
from mendflow.core.models import Declined, Finding, OutputRejected, Patched, Sandbox
from mendflow.infra.budget import Budget
from mendflow.infra.layout import StateLayout
from mendflow.infra.timeouts import LLM_STEP, load_history
from mendflow.tasks.fix.llm_protocol import PROPOSE_FIX_SCHEMA, SYSTEM_PROMPT
from mendflow.tasks.fix.openai_compat import OpenAICompatibleFixer, make_openai_client
from tests.fakes import fake_openai_api as chat
from tests.fakes.fake_messages_api import analysis
from tests.helpers.git import git
from tests.helpers.llm import (
    CALC_FILES,
    FAKE_KEY,
    GOOD_EDIT,
    git_worktree_sandbox,
    lint_finding,
    porcelain,
)

KEY_ENV = "MENDFLOW_TEST_LLM_KEY"


@pytest.fixture
def calc(make_repo) -> tuple[Sandbox, Finding]:
    sandbox = git_worktree_sandbox(make_repo(CALC_FILES))
    return sandbox, lint_finding(sandbox.path, "calc.py", 2, rule="logic",
                                 message="add() returns a - b")


def fixer(fake: chat.FakeChatCompletionsAPI, monkeypatch, **config) -> OpenAICompatibleFixer:
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    cfg = OpenAICompatibleFixerConfig(base_url=fake.base_url, model="local-coder",
                                      api_key_env=KEY_ENV, **config)
    return OpenAICompatibleFixer(cfg, budget=Budget(cfg.budget),
                                 client=make_openai_client(cfg, strict_validation=True))


def good_arguments() -> dict:
    return {"analysis": analysis(root_cause="add() subtracts"), "edits": [GOOD_EDIT],
            "explanation": "use +"}


def test_a_tool_call_becomes_a_patch_that_git_accepts(fake_openai, calc, monkeypatch, tmp_path):
    sandbox, finding = calc
    fake_openai.enqueue(chat.tool_call_reply(good_arguments(), prompt_tokens=900,
                                             completion_tokens=80, cached_tokens=600))
    proposal = fixer(fake_openai, monkeypatch).propose(sandbox, [finding])
    assert isinstance(proposal, Patched) and proposal.fixer == "openai-compatible"
    assert (proposal.input_tokens, proposal.cache_read_input_tokens) == (300, 600)
    assert proposal.output_tokens == 80
    (tmp_path / "p.diff").write_text(proposal.patch.diff)
    git(sandbox.path, "apply", "--check", str(tmp_path / "p.diff"))
    assert porcelain(sandbox.path) == ""


def test_the_request_forces_the_propose_fix_function(fake_openai, calc, monkeypatch):
    sandbox, finding = calc
    fake_openai.enqueue(chat.tool_call_reply(good_arguments()))
    fixer(fake_openai, monkeypatch, max_tokens=1000).propose(sandbox, [finding])
    (request,) = fake_openai.requests
    body = request.json
    assert request.path == "/v1/chat/completions"
    assert body["tools"][0]["type"] == "function"
    assert body["tools"][0]["function"]["name"] == "propose_fix"
    assert body["tools"][0]["function"]["parameters"] == PROPOSE_FIX_SCHEMA
    assert body["tool_choice"] == {"type": "function", "function": {"name": "propose_fix"}}
    assert body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert "return a - b" in body["messages"][1]["content"]
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("local-coder", 1000, 0.0)
    assert FAKE_KEY.encode() not in request.raw
    assert request.headers["authorization"] == f"Bearer {FAKE_KEY}"
    assert request.headers["x-stainless-retry-count"] == "0"


@pytest.mark.parametrize("reply", [
    chat.text_reply(),
    chat.tool_call_reply('{"analysis": {"fixable": tru'),
    chat.tool_call_reply({"analysis": analysis(), "edits": [{"path": "calc.py"}],
                          "explanation": "x"}),
    chat.tool_call_reply(good_arguments(), name="exec"),
])
def test_unusable_replies_are_malformed(fake_openai, calc, monkeypatch, reply):
    sandbox, finding = calc
    fake_openai.enqueue(reply)
    proposal = fixer(fake_openai, monkeypatch).propose(sandbox, [finding])
    assert isinstance(proposal, OutputRejected) and proposal.guard == "malformed-reply"
    assert porcelain(sandbox.path) == ""


def test_declines_follow_the_same_policy(fake_openai, calc, monkeypatch):
    sandbox, finding = calc
    args = {**good_arguments(), "analysis": analysis(confidence="low")}
    fake_openai.enqueue(chat.tool_call_reply(json.dumps(args)))
    proposal = fixer(fake_openai, monkeypatch).propose(sandbox, [finding])
    assert isinstance(proposal, Declined)
    assert proposal.reason == "policy: confidence low is below min_confidence=medium"


@pytest.mark.parametrize(("reply", "retryable", "auth", "retry_after"), [
    (chat.error_reply(429, retry_after="2"), True, False, 2.0),
    (chat.error_reply(503), True, False, None),
    (chat.error_reply(400), False, False, None),
    (chat.error_reply(401), False, True, None),
])
def test_faults_are_classified(fake_openai, calc, monkeypatch, reply, retryable, auth,
                               retry_after):
    sandbox, finding = calc
    fake_openai.enqueue(reply)
    with pytest.raises(LLMError) as info:
        fixer(fake_openai, monkeypatch).propose(sandbox, [finding])
    err = info.value
    assert (err.retryable, err.auth, err.retry_after_s) == (retryable, auth, retry_after)
    assert FAKE_KEY not in str(err)


def test_only_successful_calls_are_recorded_in_the_duration_history(fake_openai, calc,
                                                                    monkeypatch):
    sandbox, finding = calc
    fake_openai.enqueue(chat.error_reply(503), chat.tool_call_reply(good_arguments()))
    with pytest.raises(LLMError):
        fixer(fake_openai, monkeypatch).propose(sandbox, [finding])
    assert LLM_STEP not in load_history(sandbox.repo_root, StateLayout.resolve())
    assert fixer(fake_openai, monkeypatch).propose(sandbox, [finding]).patch is not None
    (seconds,) = load_history(sandbox.repo_root, StateLayout.resolve())[LLM_STEP]
    assert 0 < seconds < 5


def test_a_missing_key_variable_is_a_config_error(calc, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    cfg = OpenAICompatibleFixerConfig(base_url="http://127.0.0.1:9/v1", model="m",
                                      api_key_env=KEY_ENV)
    sandbox, finding = calc
    with pytest.raises(ConfigError) as info:
        OpenAICompatibleFixer(cfg, budget=Budget()).propose(sandbox, [finding])
    assert KEY_ENV in info.value.message


def test_the_base_url_must_end_with_v1():
    with pytest.raises(ConfigError, match="must end with /v1"):
        validate_config({"fixer": {"type": "openai-compatible", "model": "m",
                                   "base_url": "http://localhost:8000"}})
