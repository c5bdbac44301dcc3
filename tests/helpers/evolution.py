"""Setup of an evolution loop's world: a bare remote, the loop's clone, a human's clone and
a config pointing delivery at the suite's fake GitHub (tests/fakes/fake_forges.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.fakes.fake_forges import FakeGitHub
from tests.fixtures.sample_project import LIB, TESTS
from tests.helpers.git import git, write_files
from tests.helpers.target import target_python


def setup_loop(tmp_path: Path, github: FakeGitHub, extra: dict[str, str] | None = None,
               **sections) -> tuple[Path, Path, Path]:
    """A bare remote, the loop's clone of it, a human's clone, and the config file.

    Returns:
        (work, human, config): the loop's clone, the human's clone, the YAML config path.
    """
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    write_files(seed, {"pkg/__init__.py": "", "pkg/lib.py": LIB, "tests/test_lib.py": TESTS,
                       **(extra or {})})
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "initial")
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(remote))
    work, human = tmp_path / "work", tmp_path / "human"
    git(tmp_path, "clone", "-q", str(remote), str(work))
    git(tmp_path, "clone", "-q", str(remote), str(human))
    for clone in (work, human):
        git(clone, "config", "user.email", "human@example.com")
        git(clone, "config", "user.name", "A Human")
    config = tmp_path / "mendflow.yaml"
    write_loop_config(config, github, **sections)
    return work, human, config


def write_loop_config(config: Path, github: FakeGitHub, **sections) -> None:
    """Write the loop's config: delivery to ``github`` as acme/widgets, autonomous cycles;
    each keyword replaces that whole top-level section."""
    config.write_text(yaml.safe_dump({
        "environment": {"type": "interpreter", "python": target_python()},
        "tools": {"mypy": {"enabled": False}, "bandit": {"enabled": False}},
        "mission": {"max_iterations": 1, "target_score": 100},
        "delivery": {"remote": "origin", "forge": "github", "forge_url": github.root_url,
                     "repository": "acme/widgets", "labels": ["mendflow", "bot"],
                     "dashboard": True},
        "evolution": {"autonomy": "autonomous", "bisect_timeout_s": 120, "auto_restart": True},
        **sections,
    }), encoding="utf-8")
