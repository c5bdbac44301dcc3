"""A real ``prefect server start`` and a served mission deployment, in subprocesses.

Everything talks to the server the way a user would: the real ``prefect`` and
``mendflow`` command lines (``python -m mendflow.cli``), and its REST API for
checks. Processes are started in their own session and their whole group is
killed at the end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import GIT_ENV, git, write_files
from tests.fixtures.sample_project import LIB, TESTS

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    handle = log.open("wb")
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """Stop a process started by :func:`start` and everything in its process group."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # what is left of the group (flow run processes)
    except ProcessLookupError:
        pass
    process.wait(5)


@dataclass
class Server:
    """A running ``prefect server start`` and the environment to reach it."""

    url: str
    env: dict[str, str]
    home: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def ui(self) -> str:
        return self.url.removesuffix("/api")

    def api(self, method: str, path: str, body: dict | None = None):
        response = httpx.request(method, f"{self.url}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def run(self, *command: str, check: bool = True, timeout: float = 120,
            env: dict[str, str] | None = None):
        done = subprocess.run(list(command), cwd=ROOT, env={**self.env, **(env or {})},
                              capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise AssertionError(f"{command} failed ({done.returncode}):\n{done.stdout}\n"
                                 f"{done.stderr}")
        return done

    def mendflow(self, *args: str, check: bool = True):
        return self.run(sys.executable, "-m", "mendflow.cli", *args, check=check)

    def state(self, run_id: str) -> tuple[str, str]:
        run = self.api("GET", f"/flow_runs/{run_id}")
        return run["state_type"], run["state_name"]

    def wait_state(self, run_id: str, state_type: str, timeout_s: float = 240) -> str:
        deadline = time.monotonic() + timeout_s
        seen = None
        while time.monotonic() < deadline:
            seen = self.state(run_id)
            if seen[0] == state_type:
                return seen[1]
            if seen[0] in ("FAILED", "CRASHED", "CANCELLED") and state_type != seen[0]:
                raise AssertionError(f"run {run_id} ended {seen}: {self.logs(run_id)[-3000:]}")
            time.sleep(1)
        raise AssertionError(f"run {run_id} is {seen}, not {state_type} after {timeout_s} s")

    def logs(self, run_id: str) -> str:
        logs = self.api("POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}},
                                                 "limit": 200, "offset": 0})
        return "\n".join(entry["message"] for entry in logs)

    def task_runs(self, run_id: str) -> list[dict]:
        runs, offset = [], 0
        while True:
            page = self.api("POST", "/task_runs/filter", {
                "flow_runs": {"id": {"any_": [run_id]}}, "limit": 200, "offset": offset,
                "sort": "EXPECTED_START_TIME_ASC"})
            runs += page
            offset += len(page)
            if len(page) < 200:
                return runs


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> Server:
    """``prefect server start`` on a free loopback port, with its own PREFECT_HOME."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(home / "prefect"), "PREFECT_SERVER_API_HOST": "127.0.0.1",
                "PREFECT_SERVER_API_PORT": str(port),
                "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                "PREFECT_RUNNER_POLL_FREQUENCY": "2", "MENDFLOW_HOME": str(home / "mendflow"),
                "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
                # proactive automations (the crash automation) evaluated every second, not 5
                "PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY": "PT1S", **GIT_ENV})
    server = Server(url=f"http://127.0.0.1:{port}/api", env=env, home=home)
    process = start([sys.executable, "-m", "prefect", "server", "start"], env,
                    home / "server.log")
    server.processes.append(process)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("prefect server did not start:\n"
                                     + (home / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield server
    finally:
        for running in reversed(server.processes):
            stop(running)


@dataclass
class Served:
    server: Server
    name: str
    config: Path

    @property
    def deployment(self) -> str:
        return f"maintenance-mission/{self.name}"

    def run(self, repo: Path, **params: str) -> str:
        """``prefect deployment run`` (the real CLI); returns the flow run id."""
        args = [f"path={repo}", *(f"{k}={v}" for k, v in params.items())]
        done = self.server.run(sys.executable, "-m", "prefect", "deployment", "run",
                               self.deployment, *[a for p in args for a in ("--param", p)])
        found = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout)
        assert found, done.stdout
        return found.group(1)


def mission_config(path: Path, **approval) -> Path:
    data = {"environment": {"type": "interpreter", "python": sys.executable},
            "tools": {"mypy": {"enabled": False}, "bandit": {"enabled": False}},
            "mission": {"target_score": 100, "max_iterations": 1},
            "approval": approval}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def served(prefect_server: Server, tmp_path_factory) -> Served:
    """``python -m mendflow.deployments.serve`` serving maintenance-mission/<name> against the server."""
    work = tmp_path_factory.mktemp("served")
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    config = mission_config(work / "mendflow.yaml")
    process = start([sys.executable, "-m", "mendflow.deployments.serve", "--config", str(config),
                     "--name", name, "--timeout-sweep-s", "1"], prefect_server.env,
                    work / "serve.log")
    prefect_server.processes.append(process)
    deadline = time.monotonic() + 120
    while True:
        try:
            prefect_server.api("GET", f"/deployments/name/maintenance-mission/{name}")
            break
        except httpx.HTTPStatusError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("serve did not register the deployment:\n"
                                 + (work / "serve.log").read_text()[-3000:])
        time.sleep(0.5)
    return Served(server=prefect_server, name=name, config=config)


def make_target_repo(root: Path) -> Path:
    """A small repository on ``main`` with two ruff-fixable findings (F401, F541)."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "author@example.com")
    git(root, "config", "user.name", "Test Author")
    write_files(root, {"pkg/__init__.py": "", "pkg/lib.py": LIB, "tests/test_lib.py": TESTS})
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def session_of(server: Server, run_id: str) -> dict:
    """The final session_data.json of a flow run (searched in the served MENDFLOW_HOME)."""
    for path in sorted(Path(server.env["MENDFLOW_HOME"]).glob("missions/*/report/session_data.json")):
        data = json.loads(path.read_text())
        if data.get("flow_run_id") == run_id and data.get("status") == "completed":
            return data
    raise AssertionError(f"no completed session_data.json for run {run_id}")


def approved_log(repo: Path, base: str, branch: str = "main") -> list[tuple[str, str]]:
    """(subject, Approved-by) of each commit on ``branch`` after ``base``, newest first."""
    out = git(repo, "log", "--format=%s%x1f%(trailers:key=Approved-by,valueonly,separator=%x2c)%x1e",
              f"{base}..{branch}")
    return [tuple(item.strip().split("\x1f")) for item in out.split("\x1e") if item.strip()]
