"""One migrated Prefect SQLite database per test run, copied into each fresh PREFECT_HOME.

A Prefect API server (``prefect server start``, or the temporary server of a CLI run
without ``PREFECT_API_URL``) opens ``$PREFECT_HOME/prefect.db`` and runs Alembic's
``upgrade head`` on it: on an empty file that is every migration, ~7 CPU-seconds of
the 13-16 a server's start costs (7-9 on a database at head: Alembic applies nothing;
building the template once costs ~13). :func:`seed_prefect_home` copies a database
migrated once per test run (by the real ``prefect server database upgrade``; the first
xdist worker that needs it makes it, under a file lock, in the run's shared temp dir)
into a new PREFECT_HOME.
Tests of what a user's first run does on an empty home do not use it.
"""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from filelock import FileLock


def seed_prefect_home(home: Path) -> Path:
    """Create ``home`` (a PREFECT_HOME) holding a copy of the migrated ``prefect.db``.

    Returns:
        ``home``.
    """
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template(), home / "prefect.db")
    return home


@functools.cache
def _template() -> Path:
    """The run's migrated database (made on first use; shared by the xdist workers)."""
    base = Path(os.environ.get("MENDFLOW_TESTS_TMPDIR") or tempfile.gettempdir())
    base = base / "prefect-db-template"
    base.mkdir(exist_ok=True)
    database = base / "prefect.db"
    with FileLock(str(base / ".lock")):
        if not database.exists():
            home = Path(tempfile.mkdtemp(prefix="migrate-", dir=base))
            env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
            env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                       DO_NOT_TRACK="1")
            done = subprocess.run([sys.executable, "-m", "prefect", "server", "database",
                                   "upgrade", "-y"], env=env, capture_output=True, text=True,
                                  timeout=600, stdin=subprocess.DEVNULL)
            if done.returncode != 0:
                raise AssertionError(f"prefect server database upgrade failed:\n{done.stdout}"
                                     f"\n{done.stderr}"[-3000:])
            # one self-contained file (no -wal/-shm beside it), renamed in place when whole
            partial = base / "prefect.db.partial"
            with sqlite3.connect(home / "prefect.db") as source:
                source.execute("VACUUM INTO ?", (str(partial),))
            source.close()
            partial.replace(database)
            shutil.rmtree(home, ignore_errors=True)
    return database
