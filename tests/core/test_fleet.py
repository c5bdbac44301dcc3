"""fleet.yaml: the model, its defaults and its typed errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mendflow.core.errors import FleetError
from mendflow.core.fleet import Fleet, load_fleet, normalize_url, repository_key


def write(tmp_path, text: str, name: str = "fleet.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_contract_shape_loads_with_defaults(tmp_path):
    path = write(tmp_path, """
repositories:
  - url: https://example.org/acme/api.git
    branch: main
    config: {}
  - url: file:///srv/git/b.git
  - url: ./local/repo
limits: {concurrent_missions: 4}
""", name="Team Fleet.yaml")
    fleet = load_fleet(path)
    assert isinstance(fleet, Fleet)
    assert fleet.name == "team-fleet"
    assert [r.branch for r in fleet.repositories] == ["main", "main", "main"]
    assert fleet.limits.concurrent_missions == 4
    assert fleet.repositories[2].url == "./local/repo"
    with pytest.raises(ValidationError):  # frozen
        fleet.repositories[0].branch = "dev"  # type: ignore[misc]


def test_keys_are_stable_and_name_safe(tmp_path):
    assert repository_key("https://Example.org/acme/api.git") == repository_key(
        "https://example.org/acme/api/")
    assert repository_key(str(tmp_path)) == repository_key(tmp_path.as_uri())
    assert normalize_url(str(tmp_path)).startswith("file://")
    key = repository_key("git@github.com:acme/Big_Repo.git")
    assert key.startswith("big-repo-") and set(key) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


@pytest.mark.parametrize(("text", "needle"), [
    ("repositories: []\n", "repositories"),
    ("repositories:\n  - branch: main\n", "repositories.0.url"),
    ("repositories:\n  - url: a\n    colour: red\n", "repositories.0.colour"),
    ("repositories:\n  - url: a\nlimits: {concurrent_missions: 0}\n", "limits.concurrent_missions"),
    ("repositories:\n  - url: a\n    branch: 'bad branch'\n", "repositories.0.branch"),
    ("repositories:\n  - url: a\n  - url: a/\n", "listed twice"),
    ("repositories:\n  - url: a\n    config: {fixer: {type: nope}}\n", "fixer"),
    ("- just a list\n", "mapping"),
    ("repositories: [\n", "YAML"),
])
def test_bad_fleet_is_a_typed_error_naming_the_field(tmp_path, text, needle):
    with pytest.raises(FleetError) as caught:
        load_fleet(write(tmp_path, text))
    assert needle in str(caught.value)
    assert caught.value.hint


def test_missing_file(tmp_path):
    with pytest.raises(FleetError, match="not found"):
        load_fleet(tmp_path / "nope.yaml")


def test_config_is_merged_fleet_then_repository(tmp_path):
    fleet = load_fleet(write(tmp_path, """
config: {mission: {max_iterations: 2, target_score: 90}}
repositories:
  - url: a
    config: {mission: {max_iterations: 5}}
"""))
    assert fleet.repository_config(fleet.repositories[0]) == {
        "mission": {"max_iterations": 5, "target_score": 90}}
