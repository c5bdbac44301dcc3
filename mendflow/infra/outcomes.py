"""The outcome store: every attempt and mission, in a real database (SQLAlchemy 2 + Alembic).

SQLite at ``<state dir>/mendflow.db`` by default, in WAL mode (readers never block the
writer; a process killed in the middle of a write leaves the last committed state);
any SQLAlchemy URL through ``learning.database_url`` (PostgreSQL included). The schema
is created and upgraded by the Alembic revisions shipped in
``mendflow/infra/migrations/`` when a store is opened.

A store's errors are :class:`sqlalchemy.exc.SQLAlchemyError` or :class:`OSError`; the
mission's tasks (``mendflow.tasks.learn``) report them and go on, so a store that is down
never fails or blocks a mission for more than ``learning.connect_timeout_s``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from filelock import FileLock

from mendflow.core.learning import AttemptRecord, MissionRecord, Prior, StrategyStats
from mendflow.infra.db_locks import lock_schema
from mendflow.infra.outcomes_schema import ATTEMPTS, MISSIONS

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
STORE_ERRORS = (sa.exc.SQLAlchemyError, OSError, TimeoutError)
"""What a store operation may raise (a database that is down, locked or unreachable)."""

MIGRATION_LOCK = "mendflow-outcomes-migrations"
"""The PostgreSQL advisory lock's name (:func:`mendflow.infra.db_locks.lock_schema`)."""

_ENGINES: dict[str, sa.Engine] = {}
_MIGRATED: set[str] = set()
_GUARD = threading.Lock()


def default_url(state_root: Path) -> str:
    """``sqlite:///<state_root>/mendflow.db``: the default store."""
    return f"sqlite:///{Path(state_root) / 'mendflow.db'}"


def _utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes: every stored time is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def _make_engine(url: str, timeout_s: float) -> sa.Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": timeout_s},
                                  poolclass=sa.pool.NullPool)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" below issues BEGIN
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:
            # take the write lock at once: a deferred transaction that later writes can
            # fail with SQLITE_BUSY_SNAPSHOT without waiting for busy_timeout
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    connect_args = {"connect_timeout": max(1, int(timeout_s))} \
        if parsed.get_backend_name() == "postgresql" else {}
    return sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True,
                            pool_timeout=timeout_s)


class OutcomeStore:
    """Attempts and missions in one database.

    Args:
        url: a SQLAlchemy URL (``sqlite:///...``, ``postgresql+psycopg://...``).
        lock_dir: where the migration lock file lives (one process migrates at a time).
        timeout_s: seconds to wait for a lock or a connection.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the URL is invalid or the driver is missing.
    """

    def __init__(self, url: str, lock_dir: Path, timeout_s: float = 5.0):
        self.url = url
        self.lock_dir = Path(lock_dir)
        self.timeout_s = timeout_s
        with _GUARD:
            if url not in _ENGINES:
                _ENGINES[url] = _make_engine(url, timeout_s)
            self.engine = _ENGINES[url]

    @classmethod
    def open(cls, url: str | None, state_root: Path, timeout_s: float = 5.0) -> OutcomeStore:
        """Open (and migrate) the configured store.

        Args:
            url: ``learning.database_url``; None = SQLite in the state directory.
            state_root: the state directory (``StateLayout.root``).
            timeout_s: ``learning.connect_timeout_s``.

        Returns:
            The store, its schema at the newest revision.

        Raises:
            sqlalchemy.exc.SQLAlchemyError, OSError, TimeoutError: the database is unusable.
        """
        store = cls(url or default_url(state_root), Path(state_root) / "locks", timeout_s)
        store.migrate()
        return store

    def migrate(self) -> str:
        """Upgrade the schema to the newest Alembic revision (once per process and URL).

        Serialized by a file lock per host and, on PostgreSQL, by an advisory lock
        (``pg_advisory_xact_lock``) across hosts: the first upgrades, the others wait
        and find the schema at the head revision.

        Returns:
            The head revision.
        """
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        head = ScriptDirectory.from_config(config).get_current_head() or ""
        if self.url in _MIGRATED:
            return head
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        # the file lock serializes this host's processes; on PostgreSQL (a database other
        # hosts share) an advisory lock held for the upgrade's transaction serializes hosts
        with FileLock(str(self.lock_dir / f"outcomes-{name}.lock"), timeout=self.timeout_s * 6):
            with self.engine.begin() as conn:
                lock_schema(conn, MIGRATION_LOCK, self.timeout_s * 6)
                if MigrationContext.configure(conn).get_current_revision() != head:
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
        _MIGRATED.add(self.url)
        return head

    # --- writes ---------------------------------------------------------------------

    def record_attempts(self, records: Sequence[AttemptRecord]) -> int:
        """Insert attempts whose key is not stored yet (a replay records nothing twice).

        Returns:
            How many rows were inserted.
        """
        if not records:
            return 0
        with self.engine.begin() as conn:
            keys = [r.key for r in records]
            known = set(conn.scalars(sa.select(ATTEMPTS.c.key).where(ATTEMPTS.c.key.in_(keys))))
            rows = [r.model_dump() for r in records if r.key not in known]
            if rows:
                conn.execute(ATTEMPTS.insert(), rows)
        return len(rows)

    def record_mission(self, record: MissionRecord) -> None:
        """Insert or replace one mission's row."""
        row = record.model_dump()
        with self.engine.begin() as conn:
            conn.execute(MISSIONS.delete().where(MISSIONS.c.mission_id == record.mission_id))
            conn.execute(MISSIONS.insert(), [row])

    def record_approval(self, mission_id: str, *, decision: str, approved: Iterable[str],
                        asked: Iterable[str], timed_out: bool, autonomy: str | None,
                        requested_at: datetime | None, decided_at: datetime | None) -> None:
        """The approval outcome of a mission's accepted attempts (approved, rejected, timed out).

        Args:
            mission_id: the mission.
            decision: ``ApprovalRecord.decision``.
            approved: patch ids approved for delivery.
            asked: patch ids a human was asked about (the others were auto-approved).
            timed_out: the approval wait timed out.
            autonomy: the autonomy level.
            requested_at, decided_at: when approval was asked and answered.
        """
        approved, asked = set(approved), set(asked)
        with self.engine.begin() as conn:
            conn.execute(MISSIONS.update().where(MISSIONS.c.mission_id == mission_id).values(
                approval_decision=decision, autonomy=autonomy, requested_at=requested_at,
                decided_at=decided_at))
            for patch_id in approved | asked:
                outcome = ("approved" if patch_id in approved
                           else "timed_out" if timed_out else "rejected")
                conn.execute(ATTEMPTS.update().where(
                    ATTEMPTS.c.mission_id == mission_id, ATTEMPTS.c.patch_id == patch_id,
                    ATTEMPTS.c.result == "accepted").values(approval=outcome))

    def record_post_merge(self, repository: str, commits: Iterable[str], outcome: str,
                          patches: Iterable[tuple[str, str]] = ()) -> int:
        """Mark accepted attempts as ``kept`` or ``reverted`` after their commit landed.

        Args:
            repository: the repository (as recorded in attempts).
            commits: the attempts' commits (shas on the mission branch, the same after a
                fast-forward or merge-commit delivery).
            outcome: ``kept`` or ``reverted``.
            patches: ``(mission id, patch id)`` pairs from the landed commits' trailers (they
                match after a squash or rebase too).

        Returns:
            Rows updated. ``kept`` never replaces ``reverted``; ``reverted`` replaces ``kept``
            (a revert that comes later wins).
        """
        commits = [c for c in commits if c]
        pairs = [(m, p) for m, p in patches if m and p]
        if not commits and not pairs:
            return 0
        a = ATTEMPTS.c
        which = [a.commit.in_(commits)] if commits else []
        which += [sa.and_(a.mission_id == m, a.patch_id == p) for m, p in pairs]
        filters = [a.repository == repository, a.result == "accepted", sa.or_(*which)]
        if outcome == "kept":
            filters.append(sa.or_(a.post_merge.is_(None), a.post_merge != "reverted"))
        with self.engine.begin() as conn:
            result = conn.execute(ATTEMPTS.update().where(*filters).values(post_merge=outcome))
            return int(result.rowcount or 0)

    # --- reads ----------------------------------------------------------------------

    def _filters(self, table: sa.Table, repository: str | None, since: datetime | None,
                 time_column: str = "created_at") -> list:
        filters = []
        if repository is not None:
            filters.append(table.c.repository == repository)
        if since is not None:
            filters.append(table.c[time_column] >= since)
        return filters

    def priors(self, repository: str) -> dict[tuple[str, str], Prior]:
        """Per (strategy, category) of one repository: accepted, failed, cost, last failure.

        Over-budget attempts are left out: the budget, not the strategy, stopped them.
        """
        a = ATTEMPTS.c
        accepted = sa.func.sum(sa.case((a.result == "accepted", 1), else_=0))
        last_failure = sa.func.max(sa.case((a.result != "accepted", a.created_at), else_=None))
        query = (sa.select(a.strategy, a.category, accepted, sa.func.count(), sa.func.sum(a.cost_usd),
                           last_failure)
                 .where(a.repository == repository, a.result != "over_budget")
                 .group_by(a.strategy, a.category))
        with self.engine.begin() as conn:
            rows = conn.execute(query).all()
        out = {}
        for strategy, category, ok, count, cost, last in rows:
            if isinstance(last, str):  # SQLite's max() of a CASE returns the stored text
                last = datetime.fromisoformat(last)
            out[(strategy, category)] = Prior(
                strategy=strategy, category=category, accepted=int(ok or 0),
                failed=int(count) - int(ok or 0), cost_usd=float(cost or 0), last_failure=_utc(last))
        return out

    def strategy_stats(self, repository: str | None = None,
                       since: datetime | None = None) -> list[StrategyStats]:
        """Attempts, accepted, accept rate, tokens and cost per (strategy, category)."""
        a = ATTEMPTS.c
        accepted = sa.func.sum(sa.case((a.result == "accepted", 1), else_=0))
        query = (sa.select(a.strategy, a.category, sa.func.count(), accepted,
                           sa.func.sum(a.tokens_in), sa.func.sum(a.tokens_out),
                           sa.func.sum(a.cost_usd))
                 .where(*self._filters(ATTEMPTS, repository, since))
                 .group_by(a.strategy, a.category).order_by(a.strategy, a.category))
        with self.engine.begin() as conn:
            rows = conn.execute(query).all()
        return [StrategyStats(strategy=s, category=c, attempts=int(n), accepted=int(ok or 0),
                              accept_rate=round(int(ok or 0) / int(n), 4) if n else 0.0,
                              tokens_in=int(ti or 0), tokens_out=int(to or 0),
                              cost_usd=round(float(cost or 0), 6))
                for s, c, n, ok, ti, to, cost in rows]

    def attempts(self, repository: str | None = None, since: datetime | None = None,
                 mission_id: str | None = None) -> list[AttemptRecord]:
        """Attempts in insertion order (optionally of one repository, since a time, one mission)."""
        filters = self._filters(ATTEMPTS, repository, since)
        if mission_id is not None:
            filters.append(ATTEMPTS.c.mission_id == mission_id)
        columns = [c for c in ATTEMPTS.c if c.name not in ("id", "approval", "post_merge")]
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(*columns).where(*filters).order_by(ATTEMPTS.c.id)).all()
        return [AttemptRecord.model_validate({**row._asdict(),
                                              "created_at": _utc(row.created_at)})
                for row in rows]

    def outcome_counts(self, repository: str | None = None,
                       since: datetime | None = None) -> dict[str, int]:
        """Counts of accepted attempts by approval and post-merge outcome (for insights)."""
        a = ATTEMPTS.c
        query = (sa.select(a.approval, a.post_merge, sa.func.count())
                 .where(a.result == "accepted", *self._filters(ATTEMPTS, repository, since))
                 .group_by(a.approval, a.post_merge))
        counts: dict[str, int] = {}
        with self.engine.begin() as conn:
            for approval, post_merge, n in conn.execute(query).all():
                counts[f"approval:{approval}"] = counts.get(f"approval:{approval}", 0) + n
                counts[f"merge:{post_merge}"] = counts.get(f"merge:{post_merge}", 0) + n
        return counts

    def missions(self, repository: str | None = None,
                 since: datetime | None = None) -> list[MissionRecord]:
        """Missions, oldest first."""
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(MISSIONS).where(
                *self._filters(MISSIONS, repository, since, "started_at"))
                .order_by(MISSIONS.c.started_at)).all()
        out = []
        for row in rows:
            data = row._asdict()
            for key in ("started_at", "finished_at", "requested_at", "decided_at"):
                data[key] = _utc(data[key])
            out.append(MissionRecord.model_validate(data))
        return out


def dispose_engines() -> None:
    """Close every pooled connection of this process (tests; after a fork)."""
    with _GUARD:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()
        _MIGRATED.clear()
