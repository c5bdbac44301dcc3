"""The mission registry: what mendflow knows about each mission, outside Prefect.

One JSON file per mission, ``<state>/missions/<id>/mission.json``, written when
the mission starts and updated when it ends. It records what ``resume`` needs
to run the same mission again (its parameters), what ``rollback`` needs (the
repository), the mission's fixed start time (every commit of the mission is
dated with it, so a replay re-creates identical commits), and every flow run
the mission has had.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mendflow.core.errors import RepositoryError
from mendflow.infra.files import write_atomic
from mendflow.infra.layout import StateLayout

RECORD = "mission.json"


class MissionRecord(BaseModel):
    """One mission's registry entry."""

    model_config = ConfigDict(extra="ignore")

    mission_id: str
    repository: str
    started_at: str = Field(description="ISO 8601 UTC; the date of every commit of the mission")
    parameters: dict[str, Any] = Field(default_factory=dict,
                                       description="the flow parameters, for resume")
    flow_run_ids: list[str] = Field(default_factory=list)
    pid: int | None = None
    status: str = "running"
    report_dir: str | None = None
    worktree: str | None = None
    updated_at: str | None = None
    interrupted: str | None = Field(
        None, description="the signal that stopped the last run (SIGINT: Ctrl-C, SIGTERM); "
                          "None when it ended otherwise; cleared when a run starts")


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _write(path: Path, record: MissionRecord) -> None:
    write_atomic(path, record.model_dump_json(indent=2))


def read_mission(mission_id: str, layout: StateLayout) -> MissionRecord:
    """Read a mission's record.

    Args:
        mission_id: the mission.
        layout: mendflow's state directory, resolved.

    Raises:
        RepositoryError: no mission with that id is known.
    """
    path = layout.missions / mission_id / RECORD
    try:
        return MissionRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RepositoryError("no such mission", subject=mission_id,
                              hint="`mendflow mission list` shows the known missions") from None
    except ValueError as err:
        raise RepositoryError(f"the mission record is unreadable: {err}", subject=str(path),
                              hint="remove the file; the mission cannot be resumed") from None


def start_mission(mission_id: str, repository: str, parameters: dict[str, Any],
                  flow_run_id: str | None, layout: StateLayout) -> MissionRecord:
    """Create the record, or, for a resumed mission, add this flow run to it.

    The start time of the first run is kept: it dates every commit of the mission.

    Returns:
        The record as written.
    """
    path = layout.mission(mission_id) / RECORD
    try:
        record = MissionRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        record = MissionRecord(mission_id=mission_id, repository=repository, started_at=_now())
    runs = record.flow_run_ids + ([flow_run_id] if flow_run_id and
                                  flow_run_id not in record.flow_run_ids else [])
    record = record.model_copy(update={
        "parameters": parameters or record.parameters, "flow_run_ids": runs, "pid": os.getpid(),
        "status": "running", "updated_at": _now(), "interrupted": None})
    _write(path, record)
    return record


def mark_interrupted(mission_id: str, signal_name: str, layout: StateLayout) -> None:
    """Record that a signal stopped the mission's run (``mendflow mission list`` says so).

    The record's status stays ``running`` (its process is gone, so the listing
    reports the documented state ``crashed``); a missing or unreadable record
    is left alone.
    """
    path = layout.mission(mission_id) / RECORD
    try:
        record = MissionRecord.model_validate_json(path.read_text(encoding="utf-8"))
        _write(path, record.model_copy(update={"interrupted": signal_name,
                                               "updated_at": _now()}))
    except (OSError, ValueError):
        return


def finish_mission(mission_id: str, status: str, report_dir: str | None, worktree: str | None,
                   layout: StateLayout) -> None:
    """Record how the mission ended (completed, failed, awaiting_approval, ...)."""
    path = layout.mission(mission_id) / RECORD
    try:
        record = MissionRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return
    _write(path, record.model_copy(update={"status": status, "report_dir": report_dir,
                                           "worktree": worktree, "pid": None,
                                           "updated_at": _now()}))


def list_missions(layout: StateLayout) -> list[MissionRecord]:
    """Every readable mission record, newest first."""
    records = []
    for path in layout.missions.glob(f"*/{RECORD}"):
        try:
            records.append(MissionRecord.model_validate_json(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda r: r.started_at, reverse=True)


def session_path(record: MissionRecord) -> Path | None:
    """Where the mission's session_data.json is, if it finished once."""
    if record.report_dir:
        return Path(record.report_dir) / "session_data.json"
    return None


def load_session(record: MissionRecord) -> dict[str, Any] | None:
    path = session_path(record)
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
