"""The validated config: defaults, YAML loading, typed errors that name the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mendflow.core.config import Interpreter, ManagedVenv, MendflowConfig, load_config, validate_config
from mendflow.core.errors import ConfigError


def test_defaults_are_the_embedded_mission():
    config = load_config(None)
    assert isinstance(config.environment, ManagedVenv)
    assert config.fixer.type == "ruff"
    assert config.mission.max_iterations >= 1


def test_yaml_selects_backend_by_type(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("environment:\n  type: interpreter\n  python: /usr/bin/python3\n")
    config = load_config(path)
    assert isinstance(config.environment, Interpreter)
    assert config.environment.python == "/usr/bin/python3"


@pytest.mark.parametrize("text, needle", [
    ("mission:\n  max_iteratons: 2\n", "mission.max_iteratons"),
    ("tools:\n  pytest:\n    per_test_timeout_s: -1\n", "tools.pytest.per_test_timeout_s"),
    ("environment:\n  type: conda\n", "environment"),
    ("- a\n- b\n", "mapping"),
    ("mission: {dry_run: true, backup_only: true}\n", "cannot both be set"),
])
def test_invalid_config_names_the_field(tmp_path, text, needle):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert needle in str(info.value)
    assert str(path) in str(info.value)


def test_broken_yaml_reports_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("mission:\n  max_iterations: [1\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_config(path)


def test_missing_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_are_validated():
    config = MendflowConfig().with_overrides(max_iterations=7, target_score=None)
    assert config.mission.max_iterations == 7
    with pytest.raises(ConfigError, match="command-line options"):
        MendflowConfig().with_overrides(max_iterations=0)


def test_config_is_frozen():
    config = validate_config({})
    with pytest.raises(ValidationError):
        config.mission.max_iterations = 5  # type: ignore[misc]


def _leaf_paths(data: object, prefix: str = "") -> set[str]:
    if not isinstance(data, dict):
        return {prefix}
    return {path for key, value in data.items()
            for path in _leaf_paths(value, f"{prefix}.{key}" if prefix else key)}


def test_readme_configuration_lists_every_field_with_its_default():
    """The README's "Configuration" block is valid, complete and equal to the defaults."""
    import re
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    listed = yaml.safe_load(block.group(1))
    defaults = MendflowConfig().model_dump(mode="json")
    assert _leaf_paths(listed) == _leaf_paths(defaults)
    assert validate_config(listed) == MendflowConfig()
