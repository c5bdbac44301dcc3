"""The state layout: resolved once (config, else $MENDFLOW_HOME), then passed as a value."""

from __future__ import annotations

import os
from pathlib import Path

from prefect.utilities.hashing import hash_objects

from mendflow.infra.layout import StateLayout
from mendflow.tasks.bookkeeping import load_mission_config


def test_resolve_prefers_the_configured_dir_then_mendflow_home(tmp_path):
    home = StateLayout.resolve()
    assert home.root == Path(os.environ["MENDFLOW_HOME"]).resolve() and home.root.is_dir()
    configured = StateLayout.resolve(tmp_path / "conf" / ".." / "state")
    assert configured.root == (tmp_path / "state").resolve() and configured.root.is_dir()
    assert configured.locks == configured.root / "locks"
    assert configured.mission("m-1") == configured.root / "missions" / "m-1"
    assert configured.mission("m-1").is_dir()


def test_of_wraps_a_resolved_root_and_keeps_a_layout(tmp_path):
    layout = StateLayout.resolve(tmp_path / "state")
    assert StateLayout.of(layout) is layout
    assert StateLayout.of(layout.root) == layout
    assert StateLayout.of(None) == StateLayout.resolve()


def test_a_layout_is_a_stable_frozen_task_input(tmp_path):
    """Prefect hashes task inputs for cache keys: equal layouts hash alike across objects."""
    one, two = StateLayout.resolve(tmp_path), StateLayout.resolve(tmp_path)
    assert hash_objects({"layout": one}) == hash_objects({"layout": two}) is not None
    assert hash_objects({"layout": one}) != hash_objects({"layout": StateLayout.resolve()})
    assert StateLayout.model_config["frozen"] is True


def test_the_mission_config_carries_the_state_dir_resolved_once(tmp_path, make_repo):
    repo = make_repo({"a.py": "x = 1\n"})
    config = load_mission_config.fn(None, None, str(repo))
    assert config.mission.state_dir == StateLayout.resolve().root  # absolute, $MENDFLOW_HOME
