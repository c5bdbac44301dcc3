"""Shared fixtures: real git repositories in tmp_path, and an isolated state dir."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

# Every Prefect state of the test session (database, persisted results and cache
# records) lives in a throw-away PREFECT_HOME, never in the developer's ~/.prefect.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="mendflow-tests-prefect-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import pytest

from mendflow.core.config import Interpreter, MendflowConfig, validate_config

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author", "GIT_COMMITTER_EMAIL": "author@example.com",
}


def git(cwd: Path, *args: str) -> str:
    """Run git in cwd and return its stripped stdout (raises on failure)."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


@pytest.fixture
def make_repo(tmp_path: Path):
    """Factory: ``make_repo({"pkg/a.py": "..."}, name="repo")`` -> a committed git repo."""

    def _make(files: dict[str, str], name: str = "repo", branch: str = "main") -> Path:
        root = tmp_path / name
        root.mkdir()
        git(root, "init", "-q", "-b", branch)
        git(root, "config", "user.email", "author@example.com")
        git(root, "config", "user.name", "Test Author")
        write_files(root, files)
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "initial")
        return root

    return _make


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory, monkeypatch):
    """Every test gets its own MENDFLOW_HOME: nothing leaks into ~/.mendflow."""
    monkeypatch.setenv("MENDFLOW_HOME", str(tmp_path_factory.mktemp("mendflow-home")))


@pytest.fixture
def fast_config() -> MendflowConfig:
    """A config that tests the target with this interpreter (no venv install)."""
    return MendflowConfig(environment=Interpreter(python=sys.executable))


@pytest.fixture
def config_from():
    return validate_config


@pytest.fixture(scope="session")
def prefect_harness():
    """A real, temporary Prefect API (prefect_test_harness) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
