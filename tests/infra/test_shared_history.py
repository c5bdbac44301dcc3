"""Learned durations in one database shared by every worker (SQLAlchemy; SQLite here, PostgreSQL
in tests/e2e/test_fleet.py)."""

from __future__ import annotations

import logging

from mendflow.core.config import TimeoutsConfig
from mendflow.infra import shared_history
from mendflow.infra.layout import StateLayout
from mendflow.infra.timeouts import adaptive_timeout, load_history, record_duration
from tests.helpers.git import git

home = StateLayout.resolve  # the $MENDFLOW_HOME layout (isolated per test by conftest)


def clone(tmp_path, name: str, origin: str):
    path = tmp_path / name
    path.mkdir()
    git(path, "init", "-q")
    git(path, "remote", "add", "origin", origin)
    return path


def test_two_hosts_clones_share_one_history(tmp_path, monkeypatch):
    monkeypatch.setenv(shared_history.URL_ENV, f"sqlite:///{tmp_path / 'shared.db'}")
    host_a = clone(tmp_path, "a", "https://example.org/acme/api.git")
    host_b = clone(tmp_path, "b", "https://example.org/acme/api")
    other = clone(tmp_path, "c", "https://example.org/acme/web.git")
    for seconds in (10.0, 12.0, 11.0):
        record_duration(host_a, "pytest", seconds, layout=StateLayout.resolve(tmp_path / "state-a"))
    record_duration(other, "pytest", 99.0, layout=StateLayout.resolve(tmp_path / "state-c"))
    assert load_history(host_b, StateLayout.resolve(tmp_path / "state-b")) == {"pytest": [10.0, 12.0, 11.0]}
    assert not (tmp_path / "state-a" / "history").exists()  # nothing on the host's disk
    config = TimeoutsConfig(min_samples=3, factor=2.0, floor_s=1, ceiling_s=600)
    learned = adaptive_timeout(host_b, "pytest", default_s=1800, config=config,
                               layout=StateLayout.resolve(tmp_path / "state-b"))
    assert 20 <= learned <= 24


def test_only_the_newest_are_kept(tmp_path, monkeypatch):
    monkeypatch.setenv(shared_history.URL_ENV, f"sqlite:///{tmp_path / 'shared.db'}")
    repo = clone(tmp_path, "a", "file:///srv/x.git")
    for index in range(60):
        record_duration(repo, "ruff", float(index), layout=home())
    assert load_history(repo, home())["ruff"] == [float(i) for i in range(10, 60)]


def test_an_unreachable_database_never_stops_a_mission(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(shared_history.URL_ENV,
                       "postgresql+psycopg://nobody:secret@127.0.0.1:9/none")
    repo = clone(tmp_path, "a", "file:///srv/x.git")
    with caplog.at_level(logging.WARNING):
        record_duration(repo, "pytest", 3.0, layout=home())
        assert load_history(repo, home()) == {}
    text = caplog.text
    assert "cannot be read" in text and "could not record" in text
    assert "secret" not in text
