"""Serialize schema changes of a database that several hosts share (PostgreSQL advisory locks).

A file lock serializes the processes of one host only. Two workers on two hosts that
open one shared PostgreSQL database at once would both try to create its tables; a
transaction-level advisory lock (``pg_advisory_xact_lock``, PostgreSQL's own
cooperative lock, released at commit or rollback) lets one of them do it while the
other waits, then finds the schema already there. Other backends need nothing here
(SQLite is one file on one host: its callers keep their file lock).
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa


def advisory_key(name: str) -> int:
    """A signed 64-bit key for ``pg_advisory_xact_lock`` from a lock name (SHA-256)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def lock_schema(conn: sa.Connection, name: str, timeout_s: float) -> bool:
    """Inside ``conn``'s transaction, wait for the advisory lock ``name`` (PostgreSQL only).

    Args:
        conn: a connection with a transaction begun (``engine.begin()``).
        name: the lock's name (for example ``mendflow-outcomes-migrations``).
        timeout_s: seconds to wait (PostgreSQL's ``lock_timeout`` for this transaction).

    Returns:
        True when the lock was taken (held until the transaction ends); False on a backend
        that is not PostgreSQL (nothing to take).

    Raises:
        sqlalchemy.exc.OperationalError: the lock was not granted within ``timeout_s``.
    """
    if conn.dialect.name != "postgresql":
        return False
    conn.execute(sa.text(f"SET LOCAL lock_timeout = '{max(1, int(timeout_s * 1000))}ms'"))
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(name)})
    return True
