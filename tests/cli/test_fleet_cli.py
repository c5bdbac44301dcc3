"""``mendflow fleet``: bad input and an unreachable server are one clear line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers.e2e import free_port

pytestmark = pytest.mark.slow


def fleet_cli(tmp_path, *args: str, api_url: str | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(tmp_path / "prefect"), "MENDFLOW_HOME": str(tmp_path / "home"),
                "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_CLIENT_MAX_RETRIES": "0"})
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return subprocess.run([sys.executable, "-m", "mendflow.cli", "fleet", *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


def test_invalid_fleet_file_names_the_field(tmp_path):
    (tmp_path / "fleet.yaml").write_text("repositories:\n  - url: x\n    brnch: main\n")
    done = fleet_cli(tmp_path, "run", "fleet.yaml", "--pool", "p")
    assert done.returncode == 1
    assert "repositories.0.brnch" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [("run", "fleet.yaml", "--pool", "p"),
                                     ("status", "fleet.yaml")])
def test_unreachable_server_is_a_clear_error(tmp_path, command):
    (tmp_path / "fleet.yaml").write_text("repositories:\n  - url: file:///srv/a.git\n")
    done = fleet_cli(tmp_path, *command, api_url=f"http://127.0.0.1:{free_port()}/api")
    assert done.returncode == 1, done.stderr
    assert "Prefect server" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_fleet_needs_a_server(tmp_path):
    (tmp_path / "fleet.yaml").write_text("repositories:\n  - url: file:///srv/a.git\n")
    done = fleet_cli(tmp_path, "run", "fleet.yaml", "--pool", "p")
    assert done.returncode == 1 and "PREFECT_API_URL" in done.stderr


def test_deploy_schedule_needs_both_options(tmp_path):
    done = fleet_cli(tmp_path, "deploy", "--pool", "p", "--cron", "0 3 * * *",
                     api_url=f"http://127.0.0.1:{free_port()}/api")
    assert done.returncode == 1 and "--fleet and --cron" in done.stderr
