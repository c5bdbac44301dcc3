"""The crash automations of ``mendflow serve`` fire on a real server when a served run is killed.

Two ``mendflow serve`` processes of their own (deployments distinct from the
session's ``served`` one) run one mission each against the session's
``prefect server start``, at the same time, since the wait is Prefect's:
heartbeats every 30 s (Prefect's minimum) and a run silent for three periods
is marked Crashed. The target repository's test suite blocks on a hold file,
so that each mission is inside its pytest step when its whole serve process
group (the flow run process included) is SIGKILLed:

* ``auto_resume_crashed: false``: the automation marks the run Crashed, and
  nothing reschedules it;
* ``auto_resume_crashed: true``: the run goes Crashed, then Scheduled, and a
  restarted ``mendflow serve`` (started right after the kill, as a supervisor
  would; it reinstalls the automations without losing the pending silence
  window) runs the *same* flow run again: the mission resumes from its cached
  steps and completes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from mendflow.deployments.automation import MIN_HEARTBEAT_S, SILENT_PERIODS, crash_message
from tests.helpers.e2e import Server, make_target_repo, mission_config, session_of, start, stop
from tests.helpers.git import git, write_files

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HEARTBEAT_S = MIN_HEARTBEAT_S
HOLD_TEST = '''import os
import time

HOLD = {hold!r}


def test_waits_while_the_hold_file_exists():
    deadline = time.monotonic() + 150
    while os.path.exists(HOLD) and time.monotonic() < deadline:
        time.sleep(0.2)
'''


@dataclass
class Scenario:
    """One served deployment, its mission run and what happened to it."""

    name: str
    auto_resume: bool
    config: Path
    repo: Path
    hold: Path
    log_dir: Path
    process: subprocess.Popen | None = None
    deployment_id: str = ""
    run_id: str = ""
    heartbeat: dict | None = None

    def serve(self, server: Server, log: str) -> subprocess.Popen:
        """Start ``mendflow serve --config ...`` (the real CLI) in its own process group."""
        self.process = start([sys.executable, "-m", "mendflow.cli", "serve", "--config",
                              str(self.config)], server.env, self.log_dir / log)
        server.processes.append(self.process)
        return self.process


def _scenario(work: Path, label: str, auto_resume: bool) -> Scenario:
    root = work / label
    repo = make_target_repo(root / "repo")
    hold = root / "hold"
    write_files(repo, {"tests/test_hold.py": HOLD_TEST.format(hold=str(hold))})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a test that waits while a hold file exists")
    config = mission_config(root / "mendflow.yaml")
    data = yaml.safe_load(config.read_text())
    name = f"crash-{label}-{uuid.uuid4().hex[:6]}"
    data["deployment"] = {"name": name, "path": str(repo), "heartbeat_s": HEARTBEAT_S,
                          "auto_resume_crashed": auto_resume}
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    return Scenario(name=name, auto_resume=auto_resume, config=config, repo=repo, hold=hold,
                    log_dir=root)


def _until(what: str, probe, timeout_s: float, every_s: float = 0.5):
    """Poll ``probe()`` until it returns something truthy; fail naming ``what``.

    A server error or a dropped connection counts as "not yet": the SQLite
    server answers 503 "database is locked" while several processes write.
    """
    deadline = time.monotonic() + timeout_s
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            found = probe()
        except (httpx.TransportError, httpx.HTTPStatusError) as failed:
            if isinstance(failed, httpx.HTTPStatusError) and failed.response.status_code < 500:
                raise
            found, error = None, failed
        if found:
            return found
        time.sleep(every_s)
    raise AssertionError(f"{what}: not within {timeout_s} s (last error: {error!r})")


def _deployment_id(server: Server, scenario: Scenario) -> str | None:
    if scenario.process is not None and scenario.process.poll() is not None:
        raise AssertionError("mendflow serve exited:\n"
                             + (scenario.log_dir / "serve.log").read_text()[-3000:])
    try:
        return server.api("GET", f"/deployments/name/maintenance-mission/{scenario.name}")["id"]
    except httpx.HTTPStatusError:
        return None


def _automations(server: Server, deployment_id: str) -> list[dict]:
    every = server.api("POST", "/automations/filter", {"limit": 200})
    return [a for a in every if f"prefect.deployment.{deployment_id}" in str(a["trigger"])]


def _heartbeats(server: Server, run_id: str) -> list[dict]:
    page = server.api("POST", "/events/filter", {"filter": {
        "event": {"name": ["prefect.flow-run.heartbeat"]},
        "resource": {"id": [f"prefect.flow-run.{run_id}"]}}, "limit": 50})
    return page["events"]


def _in_pytest(server: Server, scenario: Scenario) -> bool:
    state_type, _ = server.state(scenario.run_id)
    assert state_type in ("SCHEDULED", "PENDING", "RUNNING"), \
        f"{scenario.name}: run ended {state_type} before the kill: {server.logs(scenario.run_id)}"
    return state_type == "RUNNING" and any(
        t["name"].startswith("run-pytest") and t["state_type"] == "RUNNING"
        for t in server.task_runs(scenario.run_id))


def _history(server: Server, run_id: str) -> list[dict]:
    states = server.api("GET", f"/flow_run_states/?flow_run_id={run_id}")
    return sorted(states, key=lambda s: s["timestamp"])


def _kill_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # serve and its flow run process
    process.wait(10)


@pytest.fixture(scope="module")
def killed(prefect_server: Server, tmp_path_factory):
    """Both scenarios, run side by side, up to their outcome."""
    server = prefect_server
    work = tmp_path_factory.mktemp("crash")
    crash, resume = _scenario(work, "plain", False), _scenario(work, "resume", True)
    both = (crash, resume)
    try:
        for scenario in both:
            scenario.hold.touch()
            scenario.serve(server, "serve.log")
        for scenario in both:
            scenario.deployment_id = _until(
                f"{scenario.name} registered", lambda s=scenario: _deployment_id(server, s), 120)
            _until(f"{scenario.name}'s automations", lambda s=scenario: len(
                _automations(server, s.deployment_id)) == 1 + s.auto_resume, 60)
            scenario.run_id = _until(f"a run of {scenario.name}", lambda s=scenario: server.api(
                "POST", f"/deployments/{s.deployment_id}/create_flow_run", {})["id"], 30)
        for scenario in both:
            _until(f"{scenario.name} running its pytest step",
                   lambda s=scenario: _in_pytest(server, s), 120)
            scenario.heartbeat = _until(f"{scenario.name} heartbeat",
                                        lambda s=scenario: _heartbeats(server, s.run_id), 30)[0]
            _kill_group(scenario.process)
            scenario.hold.unlink()  # the orphaned pytest (own session) finishes at once
        resume.serve(server, "serve-again.log")  # restarted at once, as a supervisor would
        _until(f"{crash.name} marked Crashed",
               lambda: server.state(crash.run_id)[0] == "CRASHED", SILENT_PERIODS * HEARTBEAT_S
               + 60)
        _until(f"{resume.name} resumed and completed",
               lambda: server.state(resume.run_id)[0] == "COMPLETED", 300, every_s=1)
        yield {"crash": crash, "resume": resume, "server": server}
    finally:
        for scenario in both:
            scenario.hold.unlink(missing_ok=True)
            if scenario.process is not None:
                stop(scenario.process)


def test_real_heartbeats_carry_the_labels_the_automation_matches(killed):
    for scenario in (killed["crash"], killed["resume"]):
        heartbeat = scenario.heartbeat
        assert heartbeat["resource"]["prefect.resource.id"] == f"prefect.flow-run.{scenario.run_id}"
        related = [{k: v for k, v in r.items() if k in ("prefect.resource.id",
                                                       "prefect.resource.role")}
                   for r in heartbeat["related"]]
        assert {"prefect.resource.id": f"prefect.deployment.{scenario.deployment_id}",
                "prefect.resource.role": "deployment"} in related


def test_a_killed_run_is_marked_crashed_after_three_silent_heartbeats(killed):
    server, scenario = killed["server"], killed["crash"]
    history = _history(server, scenario.run_id)
    crashed = history[-1]

    assert crashed["type"] == "CRASHED"
    assert crashed["message"] == crash_message(HEARTBEAT_S)
    assert [s["type"] for s in history].count("CRASHED") == 1  # and nothing rescheduled it
    last_beat = max(e["occurred"] for e in _heartbeats(server, scenario.run_id))
    silent_s = (_parse(crashed["timestamp"]) - _parse(last_beat))
    assert SILENT_PERIODS * HEARTBEAT_S <= silent_s < SILENT_PERIODS * HEARTBEAT_S + 30


def test_auto_resume_reruns_the_same_flow_run_from_its_cache(killed):
    server, scenario = killed["server"], killed["resume"]
    history = [(s["type"], s["message"]) for s in _history(server, scenario.run_id)]
    types = [t for t, _ in history]

    crashed = types.index("CRASHED")
    assert history[crashed][1] == crash_message(HEARTBEAT_S)
    assert types[crashed + 1] == "SCHEDULED" and "rescheduled by mendflow" in history[crashed + 1][1]
    again = types[crashed + 1:]
    assert again[-1] == "COMPLETED" and again.count("RUNNING") == 1, history
    assert "CRASHED" not in again and types[:crashed].count("RUNNING") == 1, history

    session = session_of(server, scenario.run_id)
    assert session["status"] == "completed" and session["flow_run_id"] == scenario.run_id
    assert session["mission_id"].endswith(scenario.run_id.replace("-", "")[:8])
    assert any(p["status"] == "accepted" for p in session["patches"])
    cached = {t["name"].rsplit("-", 1)[0] for t in server.task_runs(scenario.run_id)
              if t["state_name"] == "Cached"}
    assert "new-mission-id" in cached  # the steps done before the kill came from the cache


def _parse(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
