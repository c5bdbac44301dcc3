"""`doctor` as a typer command (CliRunner), registered on an app the way mendflow/cli.py will."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import psutil
import pytest
import typer
import yaml
from typer.testing import CliRunner

from mendflow.cli.doctor import register
from mendflow.infra.layout import StateLayout
from mendflow.infra.lock import LockInfo, lock_path, read_locks

home = StateLayout.resolve  # the $MENDFLOW_HOME layout (isolated per test by conftest)


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A stand-in for mendflow's app."""

    register(app)
    return app


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(autouse=True)
def _ephemeral(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)


def stale_lock(repo) -> None:
    proc = subprocess.Popen(["true"])
    created = psutil.Process(proc.pid).create_time()
    proc.wait()
    lock_path(repo, home()).write_text(LockInfo(
        mission_id="m-crashed", pid=proc.pid, hostname=socket.gethostname(), create_time=created,
        started_at="2020-01-01T00:00:00+00:00", repo=os.path.realpath(repo)).model_dump_json())


def test_doctor_prints_one_line_per_check(app, runner):
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("[ok] disk: state dir: ") and "MiB free" in lines[0]
    assert any(line.startswith("[ok] tool: ruff: ruff ") for line in lines)
    assert lines[-1] == "[ok] orphaned processes: none"
    assert all(line.startswith(("[ok] ", "[warn] ")) for line in lines)


def test_doctor_json_is_a_list_of_checks(app, runner):
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    checks = json.loads(result.output)
    assert {"name", "status", "found", "action"} == set(checks[0])
    assert {c["name"] for c in checks} >= {"memory", "tool: git", "prefect api", "locks"}


def test_a_failing_check_exits_1(app, runner, tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"health": {"min_free_disk_mb": 10**9,
                                                 "warn_free_disk_mb": 10**9}}))
    result = runner.invoke(app, ["doctor", "--config", str(config)])
    assert result.exit_code == 1
    assert "[FAIL] disk: state dir: " in result.output and "— free disk space" in result.output


def test_a_bad_config_is_one_error_line(app, runner, tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text("health: {min_free_disk_mb: -1}\n")
    result = runner.invoke(app, ["doctor", "--config", str(config)])
    assert result.exit_code == 1
    assert "min_free_disk_mb" in result.output and "Traceback" not in result.output


def test_repair_removes_a_stale_lock(app, runner, make_repo):
    repo = make_repo({"a.py": "x = 1\n"})
    stale_lock(repo)
    found = runner.invoke(app, ["doctor"])
    assert found.exit_code == 0
    assert "[warn] locks: no mission running; stale: m-crashed" in found.output
    assert "--repair" in found.output
    repaired = runner.invoke(app, ["doctor", "--repair"])
    assert repaired.exit_code == 0
    assert "[ok] locks: " in repaired.output and "removed the stale locks of m-crashed" in repaired.output
    assert read_locks(home()) == []
