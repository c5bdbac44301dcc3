"""A registry of the processes mendflow started, so that none outlives a killed mendflow.

Every tool process group started by :func:`mendflow.infra.runner.run_process` is
recorded in ``<state>/procs/<pid>.json`` right after it starts and removed when
it ends. A temporary Prefect server started by Prefect's ephemeral mode is
recorded too (:func:`register_prefect_server`). When mendflow itself is
SIGKILLed, its records stay behind with a dead owner: :func:`orphans` finds
the processes still running, and :func:`kill_orphan` stops them.

A process is identified by its pid *and* its creation time (from psutil), so a
pid that the system reused for another program is never taken for a recorded
one, and never killed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import psutil
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mendflow.infra.files import write_atomic
from mendflow.infra.layout import StateLayout

log = logging.getLogger(__name__)

CREATE_TIME_TOLERANCE_S = 1.0
"""Two creation times closer than this (seconds) are the same process. psutil derives a
creation time from the boot time, which some kernels and container runtimes report with a
drift of up to a second over a long uptime: a tighter bound took a live owner for a dead
one (a false orphan, seen in a 25-minute test session). A pid reused within a second of
the first process's start is not a practical risk."""
_CORRUPT_GRACE_S = 60.0
_owner_cache: dict[int, float] = {}


class ProcRecord(BaseModel):
    """One recorded process (a tool's process group, or a temporary Prefect server).

    Attributes:
        pid: the process id.
        pgid: its process group id (a tool's group leader has ``pgid == pid``).
        create_time: its creation time, seconds since the epoch (psutil).
        owner_pid: the mendflow process that started it.
        owner_create_time: the owner's creation time (psutil).
        argv: the first three words of its command line.
        started_at: when it was recorded, ISO 8601 UTC.
        kind: ``tool`` or ``prefect-server``.
        path: the record's file (not stored in it).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    pid: int
    pgid: int
    create_time: float
    owner_pid: int
    owner_create_time: float
    argv: tuple[str, ...] = ()
    started_at: str
    kind: Literal["tool", "prefect-server"] = "tool"
    path: Path | None = Field(default=None, exclude=True)


def process_create_time(pid: int) -> float | None:
    """Return the creation time of process ``pid`` (seconds since the epoch, psutil), or None.

    Args:
        pid: a process id.

    Returns:
        The creation time, or None when no such process exists (or it is a zombie).
    """
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except psutil.NoSuchProcess:
        return None


def is_alive(pid: int, create_time: float) -> bool:
    """Return True if process ``pid`` runs and is the one created at ``create_time``.

    A zombie (exited, not yet reaped) is not alive. A process that psutil may
    not inspect (another user's) counts as alive: it is never taken over or killed.

    Args:
        pid: a process id.
        create_time: its recorded creation time (seconds since the epoch).

    Returns:
        Whether that very process still runs (a reused pid gives False).
    """
    try:
        current = process_create_time(pid)
    except psutil.AccessDenied:
        return True
    return current is not None and abs(current - create_time) <= CREATE_TIME_TOLERANCE_S


def current_process() -> tuple[int, float]:
    """Return this process's pid and creation time (psutil; cached per pid, so safe after fork)."""
    pid = os.getpid()
    if pid not in _owner_cache:
        _owner_cache[pid] = psutil.Process(pid).create_time()
    return pid, _owner_cache[pid]


def procs_dir(layout: StateLayout) -> Path:
    """Return ``<state>/procs`` (not created)."""
    return layout.procs


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _write_record(directory: Path, record: ProcRecord) -> Path:
    return write_atomic(directory / f"{record.pid}.json", record.model_dump_json())


def register_process(pid: int, argv: Sequence[str], *, kind: Literal["tool", "prefect-server"] = "tool",
                     layout: StateLayout | None = None) -> ProcRecord | None:
    """Record a process this mendflow process started (one small file write).

    Never raises for a registry problem: a tool run must not fail because the
    registry cannot be written; a warning is logged instead.

    Args:
        pid: the started process (for a tool, the leader of its own session/group).
        argv: its command line (the first three words are kept).
        kind: ``tool`` or ``prefect-server``.
        layout: mendflow's state directory; None for the process's default one
            (``$MENDFLOW_HOME`` or ``~/.mendflow``): the tool runner, which serves every
            layer and knows no mission, registers there.

    Returns:
        The record (pass it to :func:`unregister_process`), or None when the
        process already ended or the registry could not be written.
    """
    try:
        created = process_create_time(pid)
        if created is None:
            return None
        owner_pid, owner_created = current_process()
        record = ProcRecord(pid=pid, pgid=os.getpgid(pid), create_time=created,
                            owner_pid=owner_pid, owner_create_time=owner_created,
                            argv=tuple(str(a) for a in argv[:3]), started_at=_now(), kind=kind)
        path = _write_record(procs_dir(layout or StateLayout.resolve()), record)
    except ProcessLookupError:
        return None
    except (OSError, psutil.Error) as err:
        log.warning("could not record process %s in mendflow's process registry: %s", pid, err)
        return None
    return record.model_copy(update={"path": path})


def unregister_process(record: ProcRecord | None) -> None:
    """Remove a record written by :func:`register_process` (if the file is still that record).

    Never raises: a failure is logged as a warning.

    Args:
        record: the record, or None (nothing to do).
    """
    if record is None or record.path is None:
        return
    try:
        stored = _read_record(record.path)
        if stored is not None and abs(stored.create_time - record.create_time) > CREATE_TIME_TOLERANCE_S:
            return  # the pid was reused and registered again by someone else: not ours
        record.path.unlink(missing_ok=True)
    except OSError as err:
        log.warning("could not remove %s from mendflow's process registry: %s", record.path, err)


def register_prefect_server(layout: StateLayout) -> list[ProcRecord]:
    """Record the temporary Prefect servers this process started (Prefect's ephemeral mode).

    Prefect 3 starts them as ``python -m uvicorn ... prefect.server.api.server:create_app``
    children; they are found among this process's children (psutil) by their
    command line. Call it after the first flow run started. Idempotent.

    Args:
        layout: mendflow's state directory, resolved.

    Returns:
        The records written (empty when no temporary server runs).
    """
    records = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = child.cmdline()
        except psutil.Error:
            continue
        if any("uvicorn" in word for word in cmdline) and any("prefect" in word for word in cmdline):
            record = register_process(child.pid, cmdline, kind="prefect-server", layout=layout)
            if record is not None:
                records.append(record)
    return records


def _read_record(path: Path) -> ProcRecord | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ProcRecord.model_validate(data).model_copy(update={"path": path})
    except FileNotFoundError:
        return None
    except (ValueError, ValidationError):
        return None


def read_records(layout: StateLayout) -> list[ProcRecord]:
    """Return every readable record of the registry (running, orphaned or stale).

    Args:
        layout: mendflow's state directory, resolved.

    Returns:
        The records, ordered by pid.
    """
    directory = procs_dir(layout)
    if not directory.is_dir():
        return []
    records = [r for p in directory.glob("*.json") if (r := _read_record(p)) is not None]
    return sorted(records, key=lambda r: r.pid)


def _drop(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as err:
        log.warning("could not remove stale process record %s: %s", path, err)


def orphans(layout: StateLayout) -> list[ProcRecord]:
    """Return the recorded processes that still run although their mendflow owner died.

    An orphan's owner is dead (or its pid now belongs to another process) and
    the process itself still runs with the recorded creation time. Records of
    processes that ended (and unreadable records older than a minute) are
    deleted on the way.

    Args:
        layout: mendflow's state directory, resolved.

    Returns:
        The orphans' records, ordered by pid.
    """
    directory = procs_dir(layout)
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.json")):
        record = _read_record(path)
        if record is None:
            try:
                if time.time() - path.stat().st_mtime > _CORRUPT_GRACE_S:
                    _drop(path)
            except FileNotFoundError:
                pass
            continue
        if not is_alive(record.pid, record.create_time):
            _drop(path)
        elif not is_alive(record.owner_pid, record.owner_create_time):
            found.append(record)
    return sorted(found, key=lambda r: r.pid)


def _signal(record: ProcRecord, victims: list[psutil.Process], sig: signal.Signals) -> None:
    if record.pgid == record.pid:
        try:
            os.killpg(record.pgid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as err:
            log.warning("cannot signal process group %s: %s", record.pgid, err)
        return
    for proc in victims:
        try:
            proc.send_signal(sig)  # psutil checks the pid still is that process
        except psutil.NoSuchProcess:
            pass
        except psutil.AccessDenied as err:
            log.warning("cannot signal process %s: %s", proc.pid, err)


def _wait_dead(leader: psutil.Process, timeout_s: float) -> bool:
    """Wait (``psutil.wait_procs``) up to ``timeout_s`` seconds for the leader to end."""
    _, alive = psutil.wait_procs([leader], timeout=timeout_s)
    return not alive


def kill_orphan(record: ProcRecord, *, grace_s: float = 5.0) -> bool:
    """Stop an orphaned process: SIGTERM, then SIGKILL after ``grace_s`` seconds.

    A tool (its own group leader) is stopped with its whole process group; a
    process that shares its group with others (a temporary Prefect server
    shares mendflow's) is stopped with its own children only. Nothing is sent
    unless the pid still runs with the recorded creation time and the owner is
    dead: a reused pid is never signalled.

    Args:
        record: a record from :func:`orphans`.
        grace_s: seconds between SIGTERM and SIGKILL.

    Returns:
        True if the process was running and is now stopped; False if it had
        already ended or is not an orphan (its owner runs).
    """
    if is_alive(record.owner_pid, record.owner_create_time):
        return False
    if not is_alive(record.pid, record.create_time):
        if record.path is not None:
            _drop(record.path)
        return False
    try:
        leader = psutil.Process(record.pid)
        victims = [leader, *leader.children(recursive=True)]
        if record.pgid == record.pid and os.getpgid(record.pid) != record.pgid:
            record = record.model_copy(update={"pgid": -1})  # no longer a group leader
    except (psutil.NoSuchProcess, ProcessLookupError):
        return False
    _signal(record, victims, signal.SIGTERM)
    if not _wait_dead(leader, grace_s):
        _signal(record, victims, signal.SIGKILL)
        _wait_dead(leader, grace_s)
    _signal(record, victims, signal.SIGKILL)  # no grandchild of the group survives
    if record.path is not None:
        _drop(record.path)
    return not is_alive(record.pid, record.create_time)
