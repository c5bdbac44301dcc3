"""A fleet's parts for the e2e test and bench/fleet.py: a throwaway PostgreSQL 15 cluster,
a Prefect server on it, workers standing in for hosts, bare repositories served by file://."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from tests.fixtures.sample_project import LIB, TESTS
from tests.helpers.e2e import Server, free_port, start, stop
from tests.helpers.git import GIT_ENV, git, write_files
from tests.helpers.prefect_env import client_env
from tests.helpers.target import target_python

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the ``postgres`` user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class Postgres:
    """A throwaway cluster (``initdb`` in a temporary directory) on a loopback port."""

    data: Path
    port: int
    process: subprocess.Popen

    def url(self, database: str = "prefect", driver: str = "asyncpg") -> str:
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        stop(self.process)


def start_postgres(base: Path) -> Postgres:
    """initdb + postgres + createdb prefect. ``base`` must be writable by ``postgres``."""
    data = base / "pgdata"
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        os.chmod(base, 0o755)
        parent = base.parent
        while parent != parent.parent:  # every parent readable (pytest's tmp dirs are 0700)
            os.chmod(parent, os.stat(parent).st_mode | 0o055)
            parent = parent.parent
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust",
                                 "-U", "postgres", "--no-sync"]),
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    port = free_port()
    process = start(_as_postgres([str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port),
                                  "-k", str(data), "-c", "listen_addresses=127.0.0.1",
                                  "-c", "fsync=off", "-c", "max_connections=200"]),
                    dict(os.environ), base / "postgres.log", cwd=base)
    deadline = time.monotonic() + 60
    while subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                         capture_output=True).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("postgres did not start:\n"
                                 + (base / "postgres.log").read_text()[-3000:])
        time.sleep(0.3)
    for database in ("prefect", "mendflow"):  # the server's; the shared duration history
        subprocess.run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                        "postgres", database], check=True, capture_output=True)
    return Postgres(data=data, port=port, process=process)


def server_env(home: Path, port: int, database_url: str) -> dict[str, str]:
    """The environment of the server, the CLI and the workers (each worker adds its own homes)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "MENDFLOW_"))}
    env.update({
        "PREFECT_HOME": str(home / "prefect"), "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
        "PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY": "PT1S",
        "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "2",
        # held slots' leases on disk (PREFECT_HOME), not in memory: they survive a restart
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE":
            "prefect.server.concurrency.lease_storage.filesystem",
        "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        # a 2-core CI box running the suite on both cores: queries slower than Prefect's
        # 10 s default timeout, and more than its pool's 15 connections, are normal here
        "PREFECT_SERVER_DATABASE_TIMEOUT": "60", "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "30",
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "20",
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": "20",
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_TIMEOUT": "120",
        "MENDFLOW_HOME": str(home / "cli-home"), **client_env(), **GIT_ENV})
    return env


def start_server(home: Path, database_url: str, env: dict[str, str] | None = None) -> Server:
    """``prefect server start`` on PostgreSQL; waits until /health answers. ``env``: more
    settings (of the server, its CLI and its workers)."""
    port = free_port()
    env = {**server_env(home, port, database_url), **(env or {})}
    server = Server(url=f"http://127.0.0.1:{port}/api", env=env, home=home)
    home.mkdir(parents=True, exist_ok=True)
    return _launch_server(server, home / "server.log")


def restart_server(server: Server, down_s: float = 5.0) -> float:
    """Stop the server (SIGTERM to its process group) and start it again on the same port,
    PREFECT_HOME and database, as an operator restarting it would; waits until it is healthy.

    Returns:
        Seconds the API did not answer.
    """
    process = next(p for p in server.processes if "server" in p.args)
    started = time.monotonic()
    stop(process)
    server.processes.remove(process)
    time.sleep(down_s)
    _launch_server(server, server.home / "server-restarted.log")
    return time.monotonic() - started


def _launch_server(server: Server, log: Path) -> Server:
    process = start([sys.executable, "-m", "prefect", "server", "start"], server.env, log)
    server.processes.insert(0, process)
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise AssertionError("prefect server did not start:\n"
                                 + log.read_text()[-3000:])
        time.sleep(0.5)


@dataclass
class Worker:
    """``prefect worker start --pool NAME`` with its own MENDFLOW_HOME and PREFECT_HOME: a host."""

    name: str
    home: Path
    process: subprocess.Popen
    log: Path

    def descendants(self) -> list:
        """The worker's live descendant processes (its flow runs and their tools), psutil."""
        import psutil

        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def owns(self, pid: int) -> bool:
        """Does this worker (its process or a descendant) run ``pid``?"""
        return pid == self.process.pid or any(p.pid == pid for p in self.descendants())

    def kill(self) -> None:
        """SIGKILL the worker and every process below it, whatever their session (a host died)."""
        import signal

        import psutil

        victims = self.descendants()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for victim in victims:
            try:
                victim.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait(10)


def start_worker(server: Server, pool: str, name: str, base: Path, shared_results: Path,
                 history_url: str | None = None, limit: int | None = None) -> Worker:
    """A worker standing in for a host: its own homes; result storage shared (as S3 would be),
    the duration history in ``history_url`` (a database every worker shares) if given, and
    at most ``limit`` flow runs at a time (``prefect worker start --limit``) if given."""
    home = base / name
    home.mkdir(parents=True, exist_ok=True)
    env = {**server.env, "MENDFLOW_HOME": str(home / "mendflow"),
           "PREFECT_HOME": str(home / "prefect"),
           "PREFECT_LOCAL_STORAGE_PATH": str(shared_results),
           "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true"}
    if history_url:
        env["MENDFLOW_HISTORY_URL"] = history_url
    log = home / "worker.log"
    process = start([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool,
                     "--name", name, "--type", "process",
                     *(["--limit", str(limit)] if limit else [])], env, log, cwd=home)
    worker = Worker(name=name, home=home, process=process, log=log)
    server.processes.append(process)
    return worker


def wait_workers(server: Server, pool: str, count: int, timeout_s: float = 120) -> None:
    """Until ``count`` workers of the pool are online."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        workers = server.api("POST", f"/work_pools/{pool}/workers/filter", {})
        if sum(1 for w in workers if w.get("status") == "ONLINE") >= count:
            return
        time.sleep(0.5)
    raise AssertionError(f"fewer than {count} workers online in {pool}")


def make_bare_repos(base: Path, count: int) -> list[Path]:
    """``count`` small bare repositories, each with two ruff-fixable findings (and a unique file)."""
    repos = []
    for index in range(count):
        work = base / f"src-{index}"
        work.mkdir(parents=True)
        git(work, "init", "-q", "-b", "main")
        write_files(work, {"pkg/__init__.py": "", "pkg/lib.py": LIB, "tests/test_lib.py": TESTS,
                           f"pkg/unit{index}.py": f"import os\n\n\ndef unit():\n    return {index}\n"})
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", "initial")
        bare = base / f"repo-{index}.git"
        git(base, "clone", "-q", "--bare", str(work), str(bare))
        repos.append(bare)
    return repos


def mission_overrides(**extra) -> dict:
    """A fast, offline mission config (the running interpreter, ruff only)."""
    return {"environment": {"type": "interpreter", "python": target_python()},
            "tools": {"mypy": {"enabled": False}, "bandit": {"enabled": False}},
            "mission": {"target_score": 100, "max_iterations": 1}, **extra}


def write_fleet(path: Path, urls: list[str], concurrent: int = 4, **extra) -> Path:
    data = {"repositories": [{"url": url, "branch": "main"} for url in urls],
            "limits": {"concurrent_missions": concurrent}, "config": mission_overrides(), **extra}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@dataclass
class Fleet:
    """Everything of one running fleet set-up."""

    postgres: Postgres
    server: Server
    pool: str
    base: Path
    workers: list[Worker] = field(default_factory=list)

    def mendflow(self, *args: str, check: bool = True, timeout: float = 600):
        return self.server.run(sys.executable, "-m", "mendflow.cli", *args, check=check,
                               timeout=timeout)

    def close(self) -> None:
        self.server.close()
        self.postgres.stop()


def wait_polling(workers: list, timeout_s: float = 180) -> None:
    """Until each worker's process has started its polling loop (``Worker 'NAME' started!``
    in its own log, printed once the loop is scheduled). The server's ONLINE status is not
    enough: a worker revived under the name of a killed one is ONLINE at once (the old
    heartbeat), before the new process polls, and one host would take the next runs alone."""
    deadline = time.monotonic() + timeout_s
    for worker in workers:
        while f"Worker '{worker.name}' started!" not in worker.log.read_text(errors="replace"):
            assert worker.process.poll() is None, worker.log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, f"{worker.name} is not polling"
            time.sleep(0.2)


def submissions(fleet, run_id: str, workers: list | None = None) -> int:
    """How many times a worker (of ``workers``, default both) started a process for the run
    (their logs; a worker that lost the race to the other is told by the server to abort, and
    starts nothing)."""
    logs = [w.log.read_text(errors="replace") for w in workers or fleet.workers]
    return sum(log.count(f"submitting flow run '{run_id}'")
               - log.count(f"Aborted submission of flow run '{run_id}'") for log in logs)
