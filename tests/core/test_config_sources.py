"""Configuration found in the repository: --config > .mendflow.yaml > [tool.mendflow] > defaults."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mendflow.core.config_sources import effective_config, merge_mappings
from mendflow.core.errors import ConfigError

PYPROJECT = """
[project]
name = "acme"

[tool.mendflow]
mission = {max_iterations = 5, target_score = 80}
tools = {pytest = {per_test_timeout_s = 30}, mypy = {enabled = false}}
"""

REPOSITORY_YAML = """
mission:
  max_iterations: 2
tools:
  pytest: {slow_test_s: 9}
"""


@pytest.fixture
def repo(make_repo) -> Path:
    return make_repo({"pyproject.toml": PYPROJECT, ".mendflow.yaml": REPOSITORY_YAML,
                      "acme.py": "X = 1\n"})


def test_sources_merge_field_by_field_in_precedence_order(repo, tmp_path):
    given = tmp_path / "given.yaml"
    given.write_text("mission: {target_score: 70}\n")

    effective = effective_config(given, repo)

    config = effective.config
    assert config.mission.target_score == 70              # --config
    assert config.mission.max_iterations == 2             # .mendflow.yaml over pyproject
    assert config.tools.pytest.slow_test_s == 9           # .mendflow.yaml
    assert config.tools.pytest.per_test_timeout_s == 30   # pyproject, same section
    assert config.tools.mypy.enabled is False              # pyproject
    assert config.tools.ruff.enabled is True               # defaults
    assert [s.kind for s in effective.sources] == ["config-file", "repository-file", "pyproject"]
    assert effective.origin("mission.target_score") == str(given)
    assert effective.origin("mission.max_iterations") == str(repo / ".mendflow.yaml")
    assert effective.origin("tools.pytest.per_test_timeout_s") == \
        f"{repo / 'pyproject.toml'} [tool.mendflow]"
    assert effective.origin("gates.coverage_tolerance") == "defaults"


def test_no_sources_is_the_defaults(make_repo):
    repo = make_repo({"a.py": "X = 1\n"})
    effective = effective_config(None, repo)
    assert effective.sources == () and effective.origins == {}
    assert effective.config.mission.max_iterations == 3


def test_a_different_backend_type_replaces_the_section_whole():
    origins: dict[str, str] = {}
    lower = merge_mappings({}, {"fixer": {"type": "chain", "fixers": [{"type": "ruff"}]}}, "low", origins)
    merged = merge_mappings(lower, {"fixer": {"type": "anthropic", "model": "m"}}, "high", origins)
    assert merged["fixer"] == {"type": "anthropic", "model": "m"}
    assert origins == {"fixer.type": "high", "fixer.model": "high"}


@pytest.mark.parametrize("where, text, named", [
    (".mendflow.yaml", "mission:\n  max_iteratons: 2\n", "unknown field 'mission.max_iteratons'"),
    ("pyproject.toml", "[tool.mendflow.tools.rufff]\nenabled = false\n", "unknown field 'tools.rufff'"),
    ("pyproject.toml", "[tool.mendflow\n", "not valid TOML"),
    (".mendflow.yaml", "mission: [1, 2\n", "not valid YAML"),
])
def test_an_unknown_field_in_any_source_names_the_file_and_the_field(make_repo, where, text, named):
    repo = make_repo({where: text, "a.py": "X = 1\n"})
    with pytest.raises(ConfigError) as caught:
        effective_config(None, repo)
    assert named in str(caught.value) and str(repo / where) in str(caught.value)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mendflow.cli", "config", "show", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def test_config_show_prints_every_value_with_its_source(repo):
    done = run_cli(str(repo))
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if not line.startswith("#")}
    assert lines["mission.max_iterations"].endswith(f"# {repo / '.mendflow.yaml'}")
    assert " 2 " in lines["mission.max_iterations"]
    assert lines["tools.pytest.per_test_timeout_s"].endswith("[tool.mendflow]")
    assert lines["score.tests_weight"].endswith("# defaults")

    data = json.loads(run_cli(str(repo / "acme.py"), "--json").stdout)
    assert data["repository"] == str(repo)
    assert data["config"]["mission"]["max_iterations"] == 2
    assert data["origins"]["tools.mypy.enabled"].endswith("pyproject.toml [tool.mendflow]")
    assert data["sources"][-1] == "defaults"


def test_config_show_reports_a_bad_source_in_one_line(make_repo):
    repo = make_repo({".mendflow.yaml": "fixer: {type: magic}\n", "a.py": "X = 1\n"})
    done = run_cli(str(repo))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: {repo / '.mendflow.yaml'}: ")
