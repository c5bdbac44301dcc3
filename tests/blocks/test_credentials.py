"""AnthropicCredentials block and key resolution; the key never reaches tool subprocesses."""

from __future__ import annotations

import uuid

import pytest
from pydantic import SecretStr

from mendflow.blocks.credentials import AnthropicCredentials, resolve_anthropic_key
from mendflow.core.config import AnthropicFixerConfig
from mendflow.core.errors import ConfigError
from mendflow.infra.budget import Budget
from mendflow.infra.runner import sandbox_environ
from mendflow.tasks.fix.claude import ClaudeFixer
from tests.fakes import fake_messages_api as api
from tests.helpers.llm import (
    CALC_FILES,
    FAKE_KEY,
    GOOD_EDIT,
    git_worktree_sandbox,
    lint_finding,
)


def test_the_environment_is_used_without_a_block(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:1234")
    key, base_url = resolve_anthropic_key(AnthropicFixerConfig())
    assert key.get_secret_value() == FAKE_KEY and FAKE_KEY not in repr(key)
    assert base_url == "http://127.0.0.1:1234"
    _, configured = resolve_anthropic_key(AnthropicFixerConfig(base_url="http://127.0.0.1:4321"))
    assert configured == "http://127.0.0.1:4321"


def test_no_key_at_all_is_a_config_error_with_a_hint(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError) as info:
        resolve_anthropic_key(AnthropicFixerConfig())
    assert "set ANTHROPIC_API_KEY" in (info.value.hint or "")


def test_tool_subprocesses_never_get_the_api_keys(monkeypatch, tmp_path):
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    env = sandbox_environ(tmp_path / "home")
    assert "ANTHROPIC_API_KEY" not in env and "OPENAI_API_KEY" not in env
    assert FAKE_KEY not in env.values()


def test_a_saved_block_provides_the_key_and_base_url(prefect_harness, monkeypatch, make_repo):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    name = f"test-creds-{uuid.uuid4().hex[:8]}"
    with api.FakeMessagesAPI() as fake:
        block = AnthropicCredentials(api_key=SecretStr(FAKE_KEY), base_url=fake.root_url)
        assert FAKE_KEY not in repr(block)
        block.save(name, overwrite=True)
        config = AnthropicFixerConfig(model="claude-test", credentials_block=name)
        key, base_url = resolve_anthropic_key(config)
        assert (key.get_secret_value(), base_url) == (FAKE_KEY, fake.root_url)

        sandbox = git_worktree_sandbox(make_repo(CALC_FILES))
        fake.enqueue(api.tool_reply(api.analysis(), [GOOD_EDIT]))
        proposal = ClaudeFixer(config, budget=Budget()).propose(
            sandbox, [lint_finding(sandbox.path, "calc.py", 2)])
        assert proposal.patch is not None
        assert fake.requests[0].headers["x-api-key"] == FAKE_KEY


def test_a_missing_block_is_a_config_error(prefect_harness):
    with pytest.raises(ConfigError) as info:
        resolve_anthropic_key(AnthropicFixerConfig(credentials_block="no-such-block-xyz"))
    assert info.value.subject == "no-such-block-xyz"
    assert "AnthropicCredentials" in (info.value.hint or "")
