"""The e2e tests' parts: a real `prefect server start`, served deployments, target repositories."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from tests.fixtures.sample_project import LIB, TESTS
from tests.helpers.git import git, write_files

ROOT = Path(__file__).resolve().parents[2]


USER_PROJECT = {
    "tasks.py": "raise SystemExit('the user project tasks.py was imported')\n",
    "flows/__init__.py": "raise SystemExit('the user project flows/ was imported')\n",
    "flows/mission.py": "raise SystemExit('the user project flows/mission.py was imported')\n",
    "deployments.py": "raise SystemExit('the user project deployments.py was imported')\n",
    "blocks/__init__.py": "raise SystemExit('the user project blocks/ was imported')\n",
}
"""A user's project whose own ``tasks.py`` / ``flows/`` would shadow generic top-level
packages (each raises when imported)."""


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


def stop_all(processes: list[subprocess.Popen], grace_s: float = 15.0) -> None:
    """Stop several processes started by :func:`start` at once: SIGTERM to every group,
    one shared ``grace_s`` (seconds) for all of them to exit, then SIGKILL to each group
    (what is left of it: flow run processes). One by one, each process that ignores its
    SIGTERM (a worker or server whose database is already gone) costs its own ``grace_s``."""
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
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

    def close(self) -> None:
        """Stop every process of :attr:`processes`: its clients (workers, serve processes) at
        once, then the ``prefect server start`` itself (clients stopped first do not hang
        retrying a server that is gone)."""
        servers = [p for p in self.processes if "server" in p.args]
        # 5 s: at the end nothing waits for a graceful exit (a fleet's workers, their
        # database already stopped, never exit on SIGTERM)
        stop_all([p for p in self.processes if p not in servers], grace_s=5)
        stop_all(servers, grace_s=5)
        self.processes.clear()

    @property
    def ui(self) -> str:
        return self.url.removesuffix("/api")

    def api(self, method: str, path: str, body: dict | None = None):
        """One API call, retried on 429/502/503 as Prefect's own client retries them: the
        server answers 503 for a database error a client can retry (SQLite locked under
        load), with the transaction rolled back. A read (GET, or a POST to a ``/filter``
        endpoint) is also retried on 500: a server on a loaded 2-core box answers 500 when a
        query outlasts its database timeout (a failed test once read that on GET
        /flow_runs/ID), and reading again changes nothing."""
        retried = {429, 502, 503}
        if method == "GET" or path.rstrip("/").endswith("/filter"):
            retried.add(500)
        for wait_s in (1, 2, 4, 8, 16, 0):
            response = httpx.request(method, f"{self.url}{path}", json=body, timeout=30)
            if response.status_code not in retried or not wait_s:
                break
            time.sleep(wait_s)
        response.raise_for_status()
        return response.json()

    # the waits below are bounds on progress, not speed targets: on a 2-core box running
    # the suite (or with other jobs on it) a CLI call took over 120 s and four missions
    # over 240 s to reach their suspend
    def run(self, *command: str, check: bool = True, timeout: float = 300,
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

    def wait_state(self, run_id: str, state_type: str, timeout_s: float = 480) -> str:
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
