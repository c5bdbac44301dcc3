"""Learned step durations in a database every worker shares (SQLAlchemy).

Set ``MENDFLOW_HISTORY_URL`` (any SQLAlchemy URL, for example
``postgresql+psycopg://mendflow@db/mendflow``, the database of the outcome store
when there is one) on every worker, and the adaptive timeouts
(:mod:`mendflow.infra.timeouts`) read and write one table there instead of
``<state>/history/*.json``::

    mendflow_step_durations(id, repo_key, step, seconds, recorded_at)

A repository is keyed by its ``origin`` URL (:func:`mendflow.core.fleet.repository_key`)
when it has one, so two hosts' clones of a repository share their history;
else by its real path. A database that cannot be reached never stops a
mission: the read returns no history (the configured defaults apply) and the
write is skipped, each with a warning.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from mendflow.core.fleet import repository_key
from mendflow.infra.db_locks import lock_schema
from mendflow.infra.gitops import run_git

log = logging.getLogger(__name__)
URL_ENV = "MENDFLOW_HISTORY_URL"
_META = MetaData()
DURATIONS = Table(
    "mendflow_step_durations", _META,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repo_key", String(80), nullable=False, index=True),
    Column("step", String(64), nullable=False),
    Column("seconds", Float, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False))


def configured_url() -> str | None:
    """The shared history's URL (``$MENDFLOW_HISTORY_URL``), or None for the JSON files."""
    return os.environ.get(URL_ENV) or None


@lru_cache(maxsize=4)
def _engine(url: str) -> Engine:
    engine = create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2,
                           connect_args=_connect_args(url))
    with engine.begin() as conn:  # hosts creating the tables at once: one at a time
        lock_schema(conn, "mendflow-shared-history-schema", 30)
        _META.create_all(conn, checkfirst=True)
    return engine


def _connect_args(url: str) -> dict[str, object]:
    if url.startswith("postgresql"):
        return {"connect_timeout": 5}
    if url.startswith("sqlite"):
        return {"timeout": 5}
    return {}


def shared_key(repo_root: Path) -> str:
    """The repository's key in the shared history: its ``origin`` URL's key, else its path's."""
    origin = run_git(repo_root, "config", "--get", "remote.origin.url", check=False).strip()
    return repository_key(origin or str(repo_root))


def load(url: str, repo_root: Path, keep: int) -> dict[str, list[float]]:
    """The newest ``keep`` durations of each step of a repository, oldest first.

    Returns:
        Step name -> seconds; empty when the database cannot be read (logged).
    """
    try:
        key = shared_key(repo_root)
        with _engine(url).connect() as connection:
            rows = connection.execute(
                select(DURATIONS.c.step, DURATIONS.c.seconds)
                .where(DURATIONS.c.repo_key == key).order_by(DURATIONS.c.id.desc())
                .limit(keep * 64)).all()
    except (SQLAlchemyError, OSError) as err:
        log.warning("the shared duration history %s cannot be read (%s): default timeouts apply",
                    _redact(url), type(err).__name__)
        return {}
    history: dict[str, list[float]] = {}
    for step, seconds in rows:
        values = history.setdefault(step, [])
        if len(values) < keep:
            values.append(float(seconds))
    return {step: values[::-1] for step, values in history.items()}


def record(url: str, repo_root: Path, step: str, seconds: float, keep: int) -> None:
    """Add a duration; drop the step's rows beyond the newest ``keep``. Never raises (logged)."""
    try:
        key = shared_key(repo_root)
        with _engine(url).begin() as connection:
            connection.execute(DURATIONS.insert().values(
                repo_key=key, step=step, seconds=float(seconds),
                recorded_at=datetime.now(timezone.utc)))
            old = select(DURATIONS.c.id).where(DURATIONS.c.repo_key == key,
                                               DURATIONS.c.step == step) \
                .order_by(DURATIONS.c.id.desc()).offset(keep)
            stale = [row[0] for row in connection.execute(old)]
            if stale:
                connection.execute(delete(DURATIONS).where(DURATIONS.c.id.in_(stale)))
    except (SQLAlchemyError, OSError) as err:
        log.warning("could not record %s in the shared duration history %s (%s)", step,
                    _redact(url), type(err).__name__)


def _redact(url: str) -> str:
    """The URL without its password (for logs)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported by the caller's error already
        return "(invalid URL)"
