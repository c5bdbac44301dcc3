"""The fixer registry: planning, dispatch on the config's type, and the CLI's choices."""

from __future__ import annotations

import pytest

from mendflow.core.config import (
    COMMAND_LINE_FIXERS,
    FIXER_TYPES,
    ChainFixerConfig,
    MendflowConfig,
    RuffFixerConfig,
)
from mendflow.core.config_fixers import command_line_help, runs_model_code
from mendflow.core.errors import ConfigError, ToolError
from mendflow.core.models import Finding
from mendflow.tasks.fix import Fixer, build_fixer, fixer_classes
from mendflow.tasks.fix.ruff import RuffFixer, git_format_diff


def test_plan_groups_by_rule_in_queue_order():
    def finding(i: int, rule: str, *, source="ruff", fixable=True, path="a.py") -> Finding:
        return Finding(id=f"f{i}", source=source, rule=rule, severity="low", category="lint",
                       path=path, line=i, message="m", fixable=fixable)

    queue = [finding(1, "UP006"), finding(2, "F401"), finding(3, "F821", fixable=False),
             finding(4, "UP006"), finding(5, "B008", source="bandit"),
             finding(6, "F401", path="nb.ipynb"), finding(7, "F401")]

    groups = RuffFixer().plan(queue)

    assert [[f.id for f in g] for g in groups] == [["f1", "f4"], ["f2", "f7"]]


def test_git_format_diff_rejects_paths_outside_the_worktree(tmp_path):
    text = "--- ../evil.py\n+++ ../evil.py\n@@ -1 +0,0 @@\n-import os\n\nWould fix 1 error.\n"
    with pytest.raises(ToolError, match="outside the worktree"):
        git_format_diff(text, tmp_path)
    assert git_format_diff("No errors would be fixed.\n", tmp_path).text == ""


def test_build_fixer_dispatches_on_type_and_rejects_unknown():
    fixer = build_fixer(RuffFixerConfig(unsafe_fixes=True))
    assert isinstance(fixer, RuffFixer) and isinstance(fixer, Fixer)
    assert fixer.config.unsafe_fixes is True
    assert fixer_classes()["ruff"] is RuffFixer

    class Other:
        type = "gpt-9"

    with pytest.raises(ConfigError, match="unknown fixer type 'gpt-9'") as err:
        build_fixer(Other())  # type: ignore[arg-type]
    assert err.value.subject == "fixer.type" and "ruff" in (err.value.hint or "")


def test_the_registry_and_the_cli_choices_derive_from_the_config_union():
    """Each type of the FixerConfig union has one Fixer subclass, found by its config_type."""
    classes = fixer_classes()
    assert tuple(classes) == FIXER_TYPES == ("ruff", "anthropic", "openai-compatible", "chain")
    for kind, cls in classes.items():
        assert Fixer in cls.__mro__ and cls.config_type.model_fields["type"].default == kind
    assert COMMAND_LINE_FIXERS == ("ruff", "anthropic", "chain")  # openai needs a base_url
    assert command_line_help().startswith("ruff | anthropic | chain")
    with pytest.raises(ConfigError, match="cannot be chosen") as err:
        MendflowConfig().with_fixer("gpt-9")
    assert err.value.hint == "use one of: ruff, anthropic, chain"
    with pytest.raises(ConfigError) as err:
        MendflowConfig().with_fixer("openai-compatible")
    assert "base_url" in (err.value.hint or "")
    assert runs_model_code(ChainFixerConfig(fixers=[{"type": "ruff"}, {"type": "anthropic"}]))
    assert not runs_model_code(RuffFixerConfig())
