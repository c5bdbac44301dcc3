"""Finding missions' flow runs in Prefect, marking dead ones Crashed, and listing missions.

A SIGKILLed flow run stays RUNNING forever in open-source Prefect
(no server-side timeout marks it). Before a mission is resumed, its last flow run is checked:
if it is still RUNNING (or PENDING) but the process recorded in the mission
registry is gone, the run is marked Crashed so that the UI tells the truth.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import TaskRunSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed
from pydantic import BaseModel

from mendflow.core.errors import RepositoryError
from mendflow.infra.layout import StateLayout
from mendflow.infra.missions import MissionRecord, list_missions, read_mission

CRASH_MARK = "(mendflow crash automation)"
"""How the message of a Crashed state set by the crash automation ends
(:func:`mendflow.deployments.automation.crash_message`)."""


def pid_alive(pid: int | None) -> bool:
    """Is a process with this pid alive on this machine? (signal 0 probes it)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class MissionListing(BaseModel):
    """One row of ``mendflow mission list``."""

    mission_id: str
    repository: str
    status: str
    flow_run_id: str | None
    age_s: float
    steps_done: int | None = None
    steps_started: int | None = None
    detail: str | None = None
    """Why a crashed mission stopped, when known: ``interrupted (Ctrl-C)`` after a SIGINT,
    ``interrupted (SIGTERM)``."""


def _flow_run_state(client, flow_run_id: str | None) -> str | None:
    if not flow_run_id:
        return None
    try:
        run = client.read_flow_run(UUID(flow_run_id))
    except (ObjectNotFound, ValueError):
        return None
    return run.state.type.value if run.state else None


def mark_crashed_if_dead(record: MissionRecord) -> str | None:
    """Mark the mission's last flow run Crashed when its process is gone.

    Args:
        record: the mission's registry entry.

    Returns:
        The id of the flow run that was marked Crashed, or None.

    Raises:
        RepositoryError: the mission's process is still alive (it is running).
    """
    if not record.flow_run_ids:
        return None
    last = record.flow_run_ids[-1]
    with get_client(sync_client=True) as client:
        state = _flow_run_state(client, last)
        if state not in ("RUNNING", "PENDING", "SCHEDULED"):
            return None
        if record.status == "running" and pid_alive(record.pid) and record.pid != os.getpid():
            raise RepositoryError(
                f"the mission is still running (pid {record.pid}, flow run {last})",
                subject=record.mission_id, hint="wait for it, or stop it (SIGINT) first")
        client.set_flow_run_state(UUID(last), Crashed(message="the mission's process is gone; "
                                                            "marked by `mendflow mission resume`"),
                                  force=True)
    return last


def heartbeat_crashes(flow_run_id: str) -> int:
    """How often the crash automation marked this flow run Crashed (Prefect's state history).

    Each time it did, the auto-resume automation rescheduled the same flow run
    (a resume by hand starts a new flow run, whose count starts at 0).

    Args:
        flow_run_id: the flow run.

    Returns:
        The number of Crashed states in the run's history whose message ends
        with :data:`CRASH_MARK`.

    Raises:
        prefect.exceptions.ObjectNotFound: no such flow run on the Prefect API.
        httpx.HTTPError: the Prefect API is unreachable.
    """
    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(UUID(flow_run_id))
    return sum(1 for state in states
               if state.is_crashed() and (state.message or "").endswith(CRASH_MARK))


def resume_parameters(mission_id: str, layout: StateLayout) -> dict[str, Any]:
    """The flow parameters to re-run a mission with (its own, plus its id).

    Args:
        mission_id: the mission.
        layout: mendflow's state directory, resolved (where the registry is).

    Raises:
        RepositoryError: no such mission.
    """
    record = read_mission(mission_id, layout)
    params = {k: v for k, v in record.parameters.items() if v is not None}
    params["mission_id"] = record.mission_id
    params.setdefault("path", record.repository)
    return params


def listing(layout: StateLayout, now: datetime | None = None) -> list[MissionListing]:
    """Every known mission with its state, for ``mendflow mission list``.

    The state comes from Prefect for runs that did not finish (crashed,
    paused for approval, failed), from the registry otherwise; a mission whose
    process is gone while its run is still RUNNING is reported as crashed.
    With ``PREFECT_API_URL`` set (a shared server), the missions that other hosts
    ran (fleet workers) are added from the server's flow runs (tags and labels).
    """
    rows = []
    with get_client(sync_client=True) as client:
        # after the client started (an ephemeral API takes seconds): a mission
        # registered meanwhile must not come out younger than zero
        now = now or datetime.now(timezone.utc)
        for record in list_missions(layout):
            last = record.flow_run_ids[-1] if record.flow_run_ids else None
            status = _status(record, _flow_run_state(client, last))
            done, started = _progress(client, last)
            started_at = datetime.fromisoformat(record.started_at)
            rows.append(MissionListing(
                mission_id=record.mission_id, repository=record.repository, status=status,
                flow_run_id=last, age_s=max(0.0, (now - started_at).total_seconds()),
                steps_done=done, steps_started=started, detail=_detail(record, status)))
        if os.environ.get("PREFECT_API_URL"):  # a shared server: missions of every host
            rows.extend(_server_missions(client, {row.mission_id for row in rows}, now))
    return rows


_STATUS = {"PAUSED": "awaiting approval", "CRASHED": "crashed", "FAILED": "failed",
           "CANCELLED": "crashed", "COMPLETED": "completed", "RUNNING": "running",
           "PENDING": "running", "SCHEDULED": "scheduled", "CANCELLING": "running"}


def _server_missions(client, known: set[str], now: datetime) -> list[MissionListing]:
    """Missions known only to the Prefect server (run on other hosts), from their flow runs'
    tags and labels (:mod:`mendflow.infra.fleet_runs`): the newest run of each mission."""
    from mendflow.infra.fleet_runs import LABEL, TAG, read_runs

    rows: dict[str, MissionListing] = {}
    for run in read_runs(client, [TAG]):
        labels = dict(run.labels or {})
        mission_id = labels.get(f"{LABEL}mission_id")
        if not mission_id or mission_id in known or mission_id in rows:
            continue
        state = run.state.type.value if run.state else "UNKNOWN"
        since = run.start_time or run.expected_start_time or run.created or now
        rows[mission_id] = MissionListing(
            mission_id=str(mission_id), status=_STATUS.get(state, state.lower()),
            repository=str(labels.get(f"{LABEL}repository") or run.parameters.get("path", "")),
            flow_run_id=str(run.id), age_s=max(0.0, (now - since).total_seconds()))
    return list(rows.values())


def _detail(record: MissionRecord, status: str) -> str | None:
    """``interrupted (Ctrl-C)`` for a crashed mission whose run a signal stopped."""
    if status != "crashed" or not record.interrupted:
        return None
    return f"interrupted ({'Ctrl-C' if record.interrupted == 'SIGINT' else record.interrupted})"


def _status(record: MissionRecord, state: str | None) -> str:
    if state == "PAUSED" or record.status == "awaiting_approval":
        return "awaiting approval"
    if state in ("CRASHED", "CANCELLED"):
        return "crashed"
    if state == "FAILED":
        return "failed"
    if record.status == "running":
        return "running" if pid_alive(record.pid) else "crashed"
    return record.status


def read_task_runs(client, flow_run_ids: list[str]) -> list[Any]:
    """Every task run of the given flow runs (the API serves at most 200 a page).

    Args:
        client: a synchronous Prefect client.
        flow_run_ids: flow run ids (strings).

    Returns:
        Prefect ``TaskRun`` objects.
    """
    flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(i) for i in flow_run_ids]))
    runs: list[Any] = []
    while True:
        # An explicit sort: this fastapi rejects the null the client sends by default.
        page = client.read_task_runs(flow_run_filter=flow_filter, limit=200, offset=len(runs),
                                     sort=TaskRunSort.EXPECTED_START_TIME_ASC)
        runs.extend(page)
        if len(page) < 200:
            return runs


def _progress(client, flow_run_id: str | None) -> tuple[int | None, int | None]:
    """Task runs finished (Completed or Cached) and started, for a flow run."""
    if not flow_run_id:
        return None, None
    try:
        runs = read_task_runs(client, [flow_run_id])
    except (ObjectNotFound, ValueError):
        return None, None
    done = sum(1 for run in runs if run.state and run.state.is_completed())
    return done, len(runs)


__all__ = ["MissionListing", "listing", "mark_crashed_if_dead", "pid_alive",
           "read_task_runs", "resume_parameters"]
