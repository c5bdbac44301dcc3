"""The crash automations' e2e scenarios (tests/e2e/test_crash_automation.py), run in a thread.

Two ``mendflow serve`` processes of their own (deployments distinct from the session's
``served`` one) run one mission each against the e2e ``prefect server start``, at the
same time; each is SIGKILLed (serve and its flow run process) inside its pytest step,
after its first heartbeat; then Prefect's wait: heartbeats every 30 s (Prefect's minimum)
and a run silent for three periods is marked Crashed (and, with ``auto_resume_crashed``,
rescheduled and run again by a restarted ``mendflow serve``).

That wait is ~2 minutes of an idle test worker, so :class:`CrashScenarios` runs the whole
sequence in a background thread: the e2e module that runs before the crash module on the
same server (the deployment approvals) starts it (:func:`crash_tests_follow`), and the
crash module's tests collect its outcome (:meth:`CrashScenarios.outcome`), most of the wait
already spent beside the approvals' missions. Alone, the crash module starts it itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from mendflow.deployments.automation import MIN_HEARTBEAT_S, SILENT_PERIODS
from tests.helpers.e2e import Server, make_target_repo, mission_config, start, stop
from tests.helpers.git import git, write_files

CRASH_TESTS = "tests/e2e/test_crash_automation.py"
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


def until(what: str, probe, timeout_s: float, every_s: float = 0.5):
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


def heartbeats(server: Server, run_id: str) -> list[dict]:
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


def _kill_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # serve and its flow run process
    process.wait(10)


class CrashScenarios:
    """Both scenarios, run side by side up to their outcome, in a background thread."""

    def __init__(self, server: Server, work: Path):
        self.server = server
        self.crash = _scenario(work, "plain", False)
        self.resume = _scenario(work, "resume", True)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="crash-scenarios", daemon=True)

    def start(self) -> CrashScenarios:
        if not self._thread.is_alive() and not self._thread.ident:
            self._thread.start()
        return self

    def outcome(self, timeout_s: float = 900) -> dict:
        """Wait for the scenarios' end: ``{"crash": Scenario, "resume": Scenario, "server"}``.

        Raises:
            AssertionError: a scenario did not reach its outcome (the thread's error).
        """
        self.start()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"the crash scenarios still run after {timeout_s} s"
        if self._error is not None:
            raise self._error
        return {"crash": self.crash, "resume": self.resume, "server": self.server}

    def close(self) -> None:
        """Stop the serve processes (after :meth:`outcome`, or at the package's end)."""
        for scenario in (self.crash, self.resume):
            scenario.hold.unlink(missing_ok=True)
        if self._thread.ident:
            self._thread.join(5)  # after outcome(): at once; else it gives up with the server
        for scenario in (self.crash, self.resume):
            if scenario.process is not None:
                stop(scenario.process)

    def _run(self) -> None:
        try:
            _play(self.server, self.crash, self.resume)
        except BaseException as error:  # handed to the tests by outcome()
            self._error = error


def _play(server: Server, crash: Scenario, resume: Scenario) -> None:
    both = (crash, resume)
    for scenario in both:
        scenario.hold.touch()
        scenario.serve(server, "serve.log")
    for scenario in both:
        scenario.deployment_id = until(
            f"{scenario.name} registered", lambda s=scenario: _deployment_id(server, s), 180)
        until(f"{scenario.name}'s automations", lambda s=scenario: len(
            _automations(server, s.deployment_id)) == 1 + s.auto_resume, 60)
        scenario.run_id = until(f"a run of {scenario.name}", lambda s=scenario: server.api(
            "POST", f"/deployments/{s.deployment_id}/create_flow_run", {})["id"], 30)
    for scenario in both:
        until(f"{scenario.name} running its pytest step",
              lambda s=scenario: _in_pytest(server, s), 240)
        scenario.heartbeat = until(f"{scenario.name} heartbeat",
                                   lambda s=scenario: heartbeats(server, s.run_id), 30)[0]
        _kill_group(scenario.process)
        scenario.hold.unlink()  # the orphaned pytest (own session) finishes at once
    resume.serve(server, "serve-again.log")  # restarted at once, as a supervisor would
    until(f"{crash.name} marked Crashed",
          lambda: server.state(crash.run_id)[0] == "CRASHED", SILENT_PERIODS * HEARTBEAT_S + 60)
    until(f"{resume.name} resumed and completed",
          lambda: server.state(resume.run_id)[0] == "COMPLETED", 300, every_s=1)


def crash_tests_follow(request: pytest.FixtureRequest) -> bool:
    """Will this process run the crash module's tests after the requesting test's module
    (selected, later in the run's order, and, in an xdist worker, in the same e2e group of
    ``--dist loadfile``: tests/helpers/schedule.py)?"""
    from tests.helpers.schedule import file_of, units

    items = [item.nodeid for item in request.session.items]
    crash = [index for index, nodeid in enumerate(items) if file_of(nodeid) == CRASH_TESTS]
    here = file_of(request.node.nodeid)
    mine = [index for index, nodeid in enumerate(items) if file_of(nodeid) == here]
    if not crash or not mine or crash[0] < mine[-1]:
        return False
    if not hasattr(request.config, "workerinput"):
        return True  # one process runs every selected test, in this order
    unit = units(items)
    return unit[CRASH_TESTS] == unit[here]
