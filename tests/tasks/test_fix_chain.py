"""ChainFixer: offline fixers first, then the model for what is left."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from pydantic import SecretStr

from mendflow.core.config import AnthropicFixerConfig, ChainFixerConfig, validate_config
from mendflow.core.errors import ConfigError
from mendflow.core.models import Declined, Finding, Patched, Proposal, Sandbox
from mendflow.infra.budget import Budget
from mendflow.tasks.fix.base import Fixer
from mendflow.tasks.fix.chain import ChainFixer
from mendflow.tasks.fix.claude import ClaudeFixer, make_anthropic_client
from tests.fakes import fake_messages_api as api
from tests.helpers.llm import (
    CALC_FILES,
    FAKE_KEY,
    GOOD_EDIT,
    git_worktree_sandbox,
    lint_finding,
)


class OfflineFixer:
    """A minimal offline fixer: claims the fixable ruff findings, declines everything."""

    name = "offline"

    def plan(self, findings: Sequence[Finding]) -> list[tuple[Finding, ...]]:
        return [(f,) for f in findings if f.source == "ruff" and f.fixable]

    def propose(self, sandbox: Sandbox, group: Sequence[Finding], *, feedback: str | None = None,
                attempt: int = 1) -> Proposal:
        return Declined(fixer=self.name, finding_ids=tuple(f.id for f in group),
                        reason="offline: nothing to do")


def test_the_chain_plans_offline_first_and_routes_each_group_to_its_fixer(fake_anthropic,
                                                                          make_repo):
    sandbox = git_worktree_sandbox(make_repo(CALC_FILES))
    root = sandbox.path
    unused_import = lint_finding(root, "calc.py", 1, source="ruff", rule="F401", fixable=True)
    logic = lint_finding(root, "calc.py", 2, source="mypy", rule="return-value")
    cfg = AnthropicFixerConfig(model="claude-test")
    claude = ClaudeFixer(cfg, budget=Budget(), client=make_anthropic_client(
        cfg, SecretStr(FAKE_KEY), fake_anthropic.root_url))
    chain = ChainFixer(fixers=[OfflineFixer(), claude])
    assert isinstance(chain, Fixer)
    groups = chain.plan([logic, unused_import])
    assert groups == [(unused_import,), (logic,)]
    assert chain.propose(sandbox, groups[0]).fixer == "offline"
    fake_anthropic.enqueue(api.tool_reply(api.analysis(), [GOOD_EDIT]))
    proposal = chain.propose(sandbox, groups[1])
    assert proposal.fixer == "anthropic" and isinstance(proposal, Patched)
    assert len(fake_anthropic.requests) == 1


def test_a_group_no_fixer_plans_is_refused(make_repo):
    sandbox = git_worktree_sandbox(make_repo(CALC_FILES))
    todo = lint_finding(sandbox.path, "calc.py", 1, source="todo", rule="TODO", severity="info")
    with pytest.raises(ConfigError):
        ChainFixer(fixers=[OfflineFixer()]).propose(sandbox, [todo])


def test_chain_config_validation():
    config = validate_config({"fixer": {"type": "chain", "fixers": [
        {"type": "ruff"}, {"type": "anthropic", "policy": {"min_confidence": "high"}}]}})
    assert isinstance(config.fixer, ChainFixerConfig)
    assert [f.type for f in config.fixer.fixers] == ["ruff", "anthropic"]
    with pytest.raises(ConfigError, match="cannot contain another chain"):
        validate_config({"fixer": {"type": "chain", "fixers": [
            {"type": "chain", "fixers": [{"type": "ruff"}]}]}})
    with pytest.raises(ConfigError, match="at least 1"):
        validate_config({"fixer": {"type": "chain", "fixers": []}})
    with pytest.raises(ConfigError, match="unknown field 'fixer.anthropic.policy.max_atempts'"):
        validate_config({"fixer": {"type": "anthropic", "policy": {"max_atempts": 2}}})


def test_a_chain_config_builds_its_fixers():
    chain = ChainFixer(validate_config({"fixer": {"type": "chain", "fixers": [
        {"type": "ruff"}]}}).fixer)
    assert [f.name for f in chain.fixers] == ["ruff"]
