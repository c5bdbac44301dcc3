"""Helpers for the outcome-store tests: attempt records, a writer process, a PostgreSQL cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mendflow.core.learning import AttemptRecord, MissionRecord

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def attempt(key: str, *, repository: str = "/repo", strategy: str = "ruff",
            category: str = "lint", result: str = "accepted", cost: float = 0.0,
            mission_id: str = "m1", when: datetime | None = None, **extra) -> AttemptRecord:
    """An attempt record with plausible defaults."""
    return AttemptRecord(
        key=key, mission_id=mission_id, repository=repository, finding_id=f"f-{key}",
        source="ruff", rule="F401", category=category, severity="low", path="pkg/a.py",
        strategy=strategy, fixer=strategy.split("-")[0], result=result, cost_usd=cost,
        tokens_in=100, tokens_out=20, wall_s=0.5,
        created_at=when or datetime.now(timezone.utc), **extra)


def mission(mission_id: str, *, repository: str = "/repo", before: float = 50.0,
            after: float = 60.0, accepted: int = 1, offset_s: float = 0) -> MissionRecord:
    start = datetime(2026, 11, 1, tzinfo=timezone.utc) + timedelta(seconds=offset_s)
    return MissionRecord(mission_id=mission_id, repository=repository, started_at=start,
                         finished_at=start + timedelta(seconds=30), score_before=before,
                         score_after=after, accepted=accepted, attempts=accepted + 1)


WRITER = """
import sys
from pathlib import Path
from mendflow.infra.outcomes import OutcomeStore
from tests.helpers.outcomes import attempt

state, prefix, batches, size = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
store = OutcomeStore.open(None, state)
print("open", flush=True)
for b in range(batches):
    store.record_attempts([attempt(f"{prefix}-{b:06d}-{i:03d}", mission_id=prefix)
                           for i in range(size)])
"""


def start_writer(state: Path, prefix: str, batches: int, size: int) -> subprocess.Popen:
    """A process that writes ``batches`` transactions of ``size`` attempts to the store."""
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [os.sys.executable, "-c", WRITER, str(state), prefix, str(batches), str(size)],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(root)})


class PostgresCluster:
    """A throw-away PostgreSQL 15 cluster in a directory owned by ``postgres`` (it refuses root)."""

    def __init__(self, base: Path, port: int):
        self.dir = base / "pgdata"
        self.port = port
        self.process: subprocess.Popen | None = None

    def _as_postgres(self, *args: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *args]
        return list(args)

    def start(self) -> PostgresCluster:
        self.dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            os.chmod(self.dir.parent, 0o755)
        subprocess.run(self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.dir), "-A",
                                         "trust", "-U", "postgres"),
                       check=True, capture_output=True)
        self.process = subprocess.Popen(
            self._as_postgres(str(PG_BIN / "postgres"), "-D", str(self.dir), "-p",
                              str(self.port), "-k", str(self.dir), "-c",
                              "listen_addresses=127.0.0.1"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p",
                                    str(self.port)], capture_output=True)
            if ready.returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError("postgres did not start within 30 s")

    def create_database(self, name: str) -> str:
        """Create a database; returns its SQLAlchemy URL (psycopg 3 driver)."""
        subprocess.run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "postgres", name], check=True, capture_output=True)
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """``pg_ctl stop -m fast``, then reap the server process."""
        if self.process is None:
            return
        subprocess.run(self._as_postgres(str(PG_BIN / "pg_ctl"), "stop", "-D", str(self.dir),
                                         "-m", "fast", "-w"), capture_output=True, timeout=60)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.dir.parent, ignore_errors=True)


MIGRATOR = """
import sys
from pathlib import Path
import sqlalchemy as sa
from mendflow.infra.outcomes import OutcomeStore

url, state = sys.argv[1], Path(sys.argv[2])
store = OutcomeStore(url, state / "locks", timeout_s=10)
with store.engine.connect() as conn:  # connected and imported: ready
    conn.execute(sa.text("SELECT 1"))
print("ready", flush=True)
sys.stdin.readline()  # both hosts start upgrading at the same moment
print(store.migrate(), flush=True)
"""


def start_migrator(url: str, state: Path) -> subprocess.Popen:
    """A process standing in for a host (its own state dir, so its own file lock) that
    prints ``ready``, then upgrades the store at ``url`` when a line arrives on its stdin."""
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [os.sys.executable, "-c", MIGRATOR, url, str(state)],
        cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONPATH": str(root)})
