"""Helpers for the detect-stage tests: sandboxes on real tmp git repos."""

from __future__ import annotations

import sys
from pathlib import Path

from mendflow.core.config import ToolsConfig
from mendflow.core.models import Sandbox, TargetEnv
from tests.helpers.git import git, write_files
from tests.helpers.target import target_python

# A target's interpreter: pytest, coverage and pytest-timeout (tests/helpers/target.py).
TARGET_ENV = TargetEnv(python=Path(target_python()), kind="interpreter", fingerprint="test")
# The test interpreter (mendflow's .venv): pytest-xdist too, and mypy's view of its packages.
FULL_ENV = TargetEnv(python=Path(sys.executable), kind="interpreter", fingerprint="test")


def sandbox_for(repo: Path) -> Sandbox:
    """A Sandbox pointing straight at a committed tmp repo."""
    head = git(repo, "rev-parse", "HEAD")
    return Sandbox(mission_id="m1", path=repo, repo_root=repo, branch="main", base_commit=head)


def sandbox_for_missing(tmp_path: Path) -> Sandbox:
    """A Sandbox whose worktree does not exist: a disabled tool must not touch it."""
    absent = tmp_path / "absent"
    return Sandbox(mission_id="m1", path=absent, repo_root=absent, branch="main",
                   base_commit="0" * 40)


def new_repo(root: Path, files: dict[str, str]) -> Path:
    """Like the make_repo fixture, for module-scoped fixtures (root must not exist)."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "author@example.com")
    git(root, "config", "user.name", "Test Author")
    write_files(root, files)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def tools_config(**sections: dict) -> ToolsConfig:
    """A ToolsConfig with some sections' fields replaced, e.g. ``pytest={"args": [...]}``."""
    return ToolsConfig.model_validate(sections)


def only(**sections: dict) -> ToolsConfig:
    """A ToolsConfig with every tool disabled except the named sections (given fields)."""
    data: dict[str, dict] = {name: {"enabled": False}
                             for name in ("pytest", "coverage", "ruff", "mypy", "bandit", "todo")}
    for name, fields in sections.items():
        data[name] = {"enabled": True, **fields}
    return ToolsConfig.model_validate(data)


def worktree_status(repo: Path) -> str:
    """``git status --porcelain --ignored``: empty when a run left nothing behind."""
    return git(repo, "status", "--porcelain", "--ignored")
