"""A cycle of the evolution loop SIGKILLed in the middle (issue #12, "Bad input and faults"):
the next cycle resumes the same mission from its cached steps, completes, and delivers once.

The cycles run as real `mendflow evolve run` subprocesses against the session's Prefect API;
delivery goes to the suite's fake GitHub (the real PyGithub over loopback) and a bare remote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mendflow.infra.flow_runs import read_task_runs
from tests.fakes.fake_forges import FakeGitHub
from tests.helpers.evolution import setup_loop
from tests.helpers.git import git
from tests.helpers.processes import kill_when

# an API whose server records task runs (the test reads them back): tests/conftest.py
pytestmark = [pytest.mark.usefixtures("recording_api"), pytest.mark.slow]

CLI = [sys.executable, "-m", "mendflow.cli"]


def _env(home: Path) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "MENDFLOW_HOME": str(home),
            "GITHUB_TOKEN": "ghp-test-token"}


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=600)


def test_killed_cycle_resumes_from_cached_steps_and_delivers_once(tmp_path):
    env = _env(tmp_path / "home")
    with FakeGitHub("acme/widgets") as github:
        work, _, config = setup_loop(tmp_path, github)
        run = ["evolve", "run", str(work), "--config", str(config), "--json"]

        proc = subprocess.Popen([*CLI, *run], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        kill_when(proc, "candidate ")  # the baseline is measured; a patch is being validated
        assert github.pulls() == [], "the killed cycle got as far as a PR"

        done = _cli(run, env)
        assert done.returncode == 0, done.stderr
        record = json.loads(done.stdout)
        assert record["status"] == "completed" and record["error"] is None, record
        assert record["patches_accepted"] >= 1 and record["prs_opened"] == 1, record

        # the same mission, resumed: the steps finished before the kill came from the cache
        mission = json.loads((tmp_path / "home" / "missions" / record["mission_id"] /
                              "mission.json").read_text())
        assert len(mission["flow_run_ids"]) >= 2, "the mission was started afresh"
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            runs = read_task_runs(client, mission["flow_run_ids"][-1:])
        cached = {r.name.rsplit("-", 1)[0] for r in runs if r.state and r.state.name == "Cached"}
        assert any(name.startswith("run-pytest") for name in cached), sorted(cached)
        assert any(name.startswith("run-ruff") for name in cached), sorted(cached)

        # delivered once: one PR, its branch pushed once
        [pull] = github.pulls()
        branches = git(tmp_path / "remote.git", "branch", "--list", "mendflow/*").split()
        assert branches == [pull["head"]["ref"]], branches

    # `evolve history` in this process (typer's CliRunner): the same command, without a
    # subprocess's ~3 CPU-seconds of imports
    from typer.testing import CliRunner

    from mendflow.cli import app

    history = CliRunner().invoke(app, ["evolve", "history", str(work), "--config", str(config),
                                       "--json"], env={"MENDFLOW_HOME": env["MENDFLOW_HOME"]})
    assert history.exit_code == 0, history.output
    records = json.loads(history.stdout)
    assert [r["status"] for r in records] == ["completed"], records
    assert records[0]["mission_id"] == record["mission_id"]
