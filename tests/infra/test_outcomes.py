"""The outcome store: SQLite in WAL mode survives SIGKILL and concurrent writers; PostgreSQL too."""

from __future__ import annotations

import signal
import sqlite3
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mendflow.infra.outcomes import OutcomeStore, default_url
from tests.helpers.e2e import free_port
from tests.helpers.outcomes import (
    PostgresCluster,
    attempt,
    mission,
    start_migrator,
    start_writer,
)


def exercise(store: OutcomeStore) -> None:
    """The store's whole interface, on any database."""
    old = datetime.now(timezone.utc) - timedelta(days=40)
    store.record_attempts([
        attempt("a1", strategy="model-big", category="type", cost=0.4, patch_id="p1",
                commit="c1"),
        attempt("a2", strategy="model-big", category="type", result="rejected", cost=0.4,
                gate="no-new-findings"),
        attempt("a3", strategy="ruff", category="lint", when=old),
        attempt("a4", strategy="model-big", category="type", result="over_budget"),
    ])
    assert store.record_attempts([attempt("a1", strategy="model-big")]) == 0  # a replay
    priors = store.priors("/repo")
    big = priors[("model-big", "type")]
    assert (big.accepted, big.failed, round(big.cost_usd, 6)) == (1, 1, 0.8)
    assert big.last_failure is not None and big.last_failure.tzinfo is not None
    stats = {(s.strategy, s.category): s for s in store.strategy_stats("/repo")}
    assert stats[("model-big", "type")].attempts == 3
    assert stats[("model-big", "type")].accept_rate == round(1 / 3, 4)
    assert stats[("model-big", "type")].tokens_in == 300
    recent = store.strategy_stats("/repo", since=datetime.now(timezone.utc) - timedelta(days=7))
    assert ("ruff", "lint") not in {(s.strategy, s.category) for s in recent}
    store.record_mission(mission("m1"))
    store.record_mission(mission("m1", after=70.0))  # replaced, not duplicated
    store.record_approval("m1", decision="partial", approved=["p1"], asked=["p1", "p9"],
                          timed_out=False, autonomy="interactive",
                          requested_at=datetime.now(timezone.utc), decided_at=None)
    [only] = store.missions("/repo")
    assert only.score_after == 70.0 and only.approval_decision == "partial"
    assert store.record_post_merge("/repo", ["c1"], "reverted") == 1
    counts = store.outcome_counts("/repo")
    assert counts["approval:approved"] == 1 and counts["merge:reverted"] == 1
    assert [a.key for a in store.attempts(mission_id="m1")] == ["a1", "a2", "a3", "a4"]


def test_sqlite_store_in_wal_mode(tmp_path):
    store = OutcomeStore.open(None, tmp_path)
    assert store.url == default_url(tmp_path)
    exercise(store)
    with sqlite3.connect(tmp_path / "mendflow.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)


@pytest.mark.slow
def test_store_survives_sigkill_in_the_middle_of_writing(tmp_path):
    writer = start_writer(tmp_path, "killed", batches=100_000, size=50)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "open"
    db = tmp_path / "mendflow.db"
    deadline = datetime.now() + timedelta(seconds=60)
    rows = 0
    while rows < 2000 and datetime.now() < deadline:  # many transactions in, still writing
        with sqlite3.connect(db, timeout=10) as conn:
            rows = conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert writer.returncode == -signal.SIGKILL

    store = OutcomeStore.open(None, tmp_path)  # a fresh process would open it just so
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    keys = [a.key for a in store.attempts()]
    assert len(keys) >= 2000 and len(keys) % 50 == 0  # whole transactions only
    batches = sorted({k.rsplit("-", 1)[0] for k in keys})
    assert batches == [f"killed-{b:06d}" for b in range(len(keys) // 50)]  # a prefix
    store.record_attempts([attempt("after-the-kill")])
    assert store.attempts()[-1].key == "after-the-kill"


@pytest.mark.slow
def test_two_processes_write_at_once(tmp_path):
    OutcomeStore.open(None, tmp_path)  # each writer also migrates; both race on the rest
    writers = [start_writer(tmp_path, name, batches=40, size=10) for name in ("one", "two")]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    keys = [a.key for a in OutcomeStore.open(None, tmp_path).attempts()]
    assert len(keys) == len(set(keys)) == 800
    assert {k.split("-")[0] for k in keys} == {"one", "two"}


@pytest.mark.slow
def test_two_processes_migrate_a_new_store_at_once(tmp_path):
    writers = [start_writer(tmp_path, name, batches=5, size=5) for name in ("x", "y")]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    assert len(OutcomeStore.open(None, tmp_path).attempts()) == 50


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL 15 cluster for the module (stopped after its last test)."""
    base = Path(tempfile.mkdtemp(prefix="mendflow-pg-"))
    cluster = PostgresCluster(base, free_port()).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.e2e
def test_the_same_store_on_postgresql(postgres, tmp_path):
    url = postgres.create_database("outcomes")
    store = OutcomeStore.open(url, tmp_path)
    exercise(store)
    assert OutcomeStore.open(url, tmp_path).migrate() == "0001"


@pytest.mark.e2e
def test_two_hosts_migrate_one_postgresql_store_at_once(postgres, tmp_path):
    """Two processes with separate state dirs (no shared file lock) upgrade one new database
    at the same moment: the advisory lock lets one create the schema, the other waits."""
    import sqlalchemy as sa

    url = postgres.create_database("two_hosts")
    hosts = [start_migrator(url, tmp_path / name) for name in ("host-a", "host-b")]
    for host in hosts:
        assert host.stdout is not None and host.stdout.readline().strip() == "ready"
    for host in hosts:  # go
        assert host.stdin is not None
        host.stdin.write("go\n")
        host.stdin.flush()
    for host in hosts:
        out, err = host.communicate(timeout=120)
        assert host.returncode == 0, err[-2000:]
        assert out.strip() == "0001"
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [("0001",)]
        tables = set(sa.inspect(conn).get_table_names())
    assert {"attempts", "missions", "alembic_version"} <= tables
    engine.dispose()


def test_a_store_that_is_down_raises_a_store_error(tmp_path):
    from mendflow.infra.outcomes import STORE_ERRORS

    with pytest.raises(STORE_ERRORS):
        OutcomeStore.open(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none",
                          tmp_path, timeout_s=1)
