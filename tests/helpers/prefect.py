"""Reading back what a flow run published in Prefect."""

from __future__ import annotations


def read_artifact(key: str, wait_s: float = 30.0):
    """Read an artifact back from the Prefect API, waiting up to ``wait_s`` seconds
    for it to appear (on a loaded machine the API may record it a moment after the flow
    run's state changed); None if it never does.

    ``prefect.artifacts.Artifact.get`` sends ``offset``/``flow_runs``/``sort`` as null, which
    the Prefect 3.8.8 server (with fastapi 0.154) answers with 422; explicit values work.
    """
    import time

    deadline = time.monotonic() + wait_s
    while (found := _read_artifact(key)) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


def _read_artifact(key: str):
    """The newest artifact of that key (``POST /artifacts/filter`` of the current API).

    No task-run filter: the server applies one as "the artifact's task run exists", and
    the suite's harness does not record task runs (tests/helpers/prefect_env.py).
    """
    import httpx
    from prefect.client.schemas.objects import Artifact
    from prefect.settings import PREFECT_API_URL

    response = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json={
        "artifacts": {"key": {"any_": [key]}}, "flow_runs": {}, "offset": 0, "limit": 1,
        "sort": "UPDATED_DESC"}, timeout=30)
    response.raise_for_status()
    found = response.json()
    return Artifact.model_validate(found[0]) if found else None


def unrecorded_task_runs(prefect_home, flow_run_id: str) -> tuple[int, int]:
    """Of a finished flow run in a stopped server's SQLite database (``<home>/prefect.db``):
    how many of its task runs sent logs, and how many of those have no task-run record.

    Logs reach the database over HTTP (``POST /logs/``) as soon as the client flushes them;
    task runs through the server's in-memory event queue, whose backlog a stopped server
    loses. A task run that logged and has no record is one the server lost.
    """
    import sqlite3
    from pathlib import Path

    with sqlite3.connect(Path(prefect_home) / "prefect.db") as db:
        logged = db.execute("SELECT count(DISTINCT task_run_id) FROM log WHERE flow_run_id = ? "
                            "AND task_run_id IS NOT NULL", (flow_run_id,)).fetchone()[0]
        lost = db.execute("SELECT count(DISTINCT task_run_id) FROM log WHERE flow_run_id = ? "
                          "AND task_run_id IS NOT NULL AND task_run_id NOT IN "
                          "(SELECT id FROM task_run)", (flow_run_id,)).fetchone()[0]
    return logged, lost
