"""The live hook and the trigger against a real ``prefect server start``: an application
(a subprocess) raises four errors; their events reach the server, the served heal
deployment's trigger starts one heal run per error group, and each one ends, through the
fake Messages API, in a validated commit with its reproduction test on its heal branch."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from tests.fakes.fake_messages_api import FakeMessagesAPI
from tests.helpers.e2e import Server, start, stop
from tests.helpers.git import git
from tests.helpers.heal import APP_FILES, APP_FIXES, APP_MAIN, app_responder

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def app_repo(root: Path) -> Path:
    from tests.helpers.git import write_files

    write_files(root, {**APP_FILES, "tests/__init__.py": "",
                       "tests/test_catalog.py": "from shop.catalog import mean\n\n\n"
                                                "def test_mean():\n    assert mean([2, 4]) == 3\n"})
    (root / "main.py").write_text(APP_MAIN)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "app")
    return root


def heal_runs(server: Server, deployment_id: str) -> list[dict]:
    return server.api("POST", "/flow_runs/filter", {
        "deployments": {"id": {"any_": [deployment_id]}}, "limit": 50})


def test_events_reach_the_server_and_the_trigger_heals_each_error_into_a_commit(
        prefect_server: Server, tmp_path):
    repo = app_repo(tmp_path / "app")
    fake = FakeMessagesAPI().start()
    fake.respond_with(app_responder)
    config = tmp_path / "mendflow.yaml"
    config.write_text(yaml.safe_dump({
        "environment": {"type": "interpreter", "python": sys.executable},
        "tools": {"mypy": {"enabled": False}, "bandit": {"enabled": False}},  # as the other e2e
        "fixer": {"type": "anthropic", "base_url": fake.root_url, "model": "claude-test"}}))
    name = f"heal-{uuid.uuid4().hex[:6]}"
    serving = start([sys.executable, "-m", "mendflow.cli", "heal", "serve", "--config",
                     str(config), "--name", name, "--path", str(repo)],
                    {**prefect_server.env, "ANTHROPIC_API_KEY": "sk-ant-e2e-Rt5Yu7Io9Pa1"},
                    tmp_path / "serve.log")
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                deployment = prefect_server.api("GET", f"/deployments/name/heal/{name}")
                break
            except httpx.HTTPStatusError:
                pass
            assert serving.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(3)  # the trigger's automation is loaded by the server

        env = {**prefect_server.env, "APP_REPO": str(repo), "APP_API": prefect_server.url,
               "APP_SPOOL": str(tmp_path / "spool"), "PYTHONPATH": str(repo)}
        done = subprocess.run([sys.executable, "main.py"], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and "ZeroDivisionError" in done.stderr
        stats = json.loads(done.stdout.strip().splitlines()[-1])["stats"]
        assert stats["dropped"] == 0, stats

        deadline = time.monotonic() + 60
        while True:  # the server stores received events asynchronously
            events = prefect_server.api("POST", "/events/filter", {
                "filter": {"event": {"name": ["mendflow.exception.raised"]},
                           "resource": {"labels": {"mendflow.repository": [str(repo)]}}},
                "limit": 50})["events"]
            if len(events) >= 4 or time.monotonic() > deadline:
                break
            time.sleep(1)
        kinds = sorted(e["payload"]["type"] for e in events)
        assert kinds == ["AttributeError", "KeyError", "ModuleNotFoundError",
                         "ZeroDivisionError"]

        deadline = time.monotonic() + 900
        while True:
            runs = heal_runs(prefect_server, deployment["id"])
            finished = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]
            if len(finished) >= 4 or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert len(finished) == 4 and all(r["state_type"] == "COMPLETED" for r in finished), \
            [(r["name"], r["state_type"]) for r in runs]
        records = {p.stem: json.loads(p.read_text()) for p in
                   (Path(prefect_server.env["MENDFLOW_HOME"]) / "heal").glob("*.json")
                   if p.stem in {e["payload"]["fingerprint"] for e in events}}
        assert len(records) == 4
        assert {(r["exception_type"], r["function"], r["path"]) for r in records.values()} == {
            (kind, function, "shop/catalog.py") for kind, (function, _) in APP_FIXES.items()}
        for fingerprint, record in records.items():
            assert record["status"] == "fixed", (record["exception_type"], record["reason"],
                                                 record["attempts"])
            branch = f"mendflow/heal-{fingerprint}"
            assert git(repo, "rev-parse", branch) == record["commit"]
            test_file = APP_FIXES[record["exception_type"]][1][0]["path"]
            changed = git(repo, "show", "--name-only", "--format=", record["commit"]).split()
            assert sorted(changed) == sorted(["shop/catalog.py", test_file])
        assert git(repo, "status", "--porcelain") == ""
    finally:
        stop(serving)
        fake.stop()
