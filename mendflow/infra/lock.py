"""One mission per repository: an flock held for the whole mission, plus a record of its holder.

The mutual exclusion is ``filelock.FileLock`` (``flock(2)``) on
``<state>/locks/<key>.lock``, where ``key`` is the first 16 hex digits of the
SHA-256 of the repository's real path. It is taken when the mission starts and
held (the file stays open) until it ends; when the holder dies, even by
SIGKILL, the kernel releases it, so no crash can leave the repository locked.

Beside it, ``<state>/locks/<key>.json`` records the holder: the mission id, the
pid, host name and creation time (psutil) of the process that runs it, when it
started and the repository. Only the flock's holder writes it (atomically). It
names the holder in :class:`~mendflow.core.errors.MissionLocked`, lets a mission
re-enter its own lock, and lists the locks for ``mendflow doctor``. A record
whose process is dead, or whose pid now belongs to another process (its
creation time differs), is *stale*: the next mission takes it over and says so.
A record of a live process, or of a process on another host (which cannot be
checked from here), keeps the repository locked even when the flock is free (a
holder that does not use it, or a filesystem without flock across hosts).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mendflow.core.errors import MissionLocked
from mendflow.infra.files import write_atomic
from mendflow.infra.layout import StateLayout
from mendflow.infra.owned_processes import current_process, is_alive

log = logging.getLogger(__name__)


class LockInfo(BaseModel):
    """The content of a lock file.

    Attributes:
        mission_id: the mission that holds the repository.
        pid: the process that runs it.
        hostname: the host that process runs on.
        create_time: the process's creation time, seconds since the epoch (psutil).
        started_at: when the lock was taken, ISO 8601 UTC.
        repo: the repository's real path.
        path: the lock file (not stored in it).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    mission_id: str
    pid: int
    hostname: str
    create_time: float
    started_at: str
    repo: str
    path: Path | None = Field(default=None, exclude=True)


def repo_key(repo_root: Path) -> str:
    """Return the key of a repository: SHA-256 of its real path, first 16 hex digits."""
    return hashlib.sha256(os.path.realpath(repo_root).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def locks_dir(layout: StateLayout) -> Path:
    """Return ``<state>/locks``, creating it."""
    layout.locks.mkdir(parents=True, exist_ok=True)
    return layout.locks


def lock_path(repo_root: Path, layout: StateLayout) -> Path:
    """Return the holder record of a repository's lock (``<key>.json``; it may not exist)."""
    return locks_dir(layout) / f"{repo_key(repo_root)}.json"


def _flock(record: Path) -> FileLock:
    """The flock beside a holder record (``<key>.lock``), not yet taken.

    Not thread-local: a mission takes it in one task and releases it in another,
    possibly on another thread of the same process.
    """
    return FileLock(record.with_suffix(".lock"), timeout=0, thread_local=False)


def _try_flock(lock: FileLock) -> bool:
    """Take the flock without waiting; False if another open file holds it."""
    try:
        lock.acquire()
    except Timeout:
        return False
    return True


def is_stale(info: LockInfo) -> bool:
    """Return True if the lock's process is gone (dead, or its pid reused by another process).

    A lock taken on another host cannot be checked from here and is never stale.

    Args:
        info: a lock, from :func:`read_locks` or :attr:`MissionLock.info`.

    Returns:
        Whether the lock may be taken over or removed.
    """
    if info.hostname != socket.gethostname():
        return False
    return not is_alive(info.pid, info.create_time)


def _read(path: Path) -> LockInfo | None:
    """Read a lock file; None if it is missing. Raises ValueError if it is unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return LockInfo.model_validate(json.loads(text)).model_copy(update={"path": path})
    except (ValueError, ValidationError) as err:
        raise ValueError(f"unreadable lock file {path}: {err}") from None


def read_locks(layout: StateLayout) -> list[LockInfo]:
    """Return every readable lock of the state directory (live and stale).

    Args:
        layout: mendflow's state directory, resolved.

    Returns:
        The locks, ordered by start time. Unreadable files are skipped with a warning.
    """
    locks = []
    for path in sorted(locks_dir(layout).glob("*.json")):
        try:
            info = _read(path)
        except ValueError as err:
            log.warning("%s", err)
            continue
        if info is not None:
            locks.append(info)
    return sorted(locks, key=lambda info: info.started_at)


def remove_stale_lock(info: LockInfo, layout: StateLayout) -> bool:
    """Delete a lock file if it is (still) stale: the same content, and its process gone.

    Args:
        info: the lock, from :func:`read_locks`.
        layout: mendflow's state directory, resolved (unused: the record's own path
            names its flock; kept so every call names the layout it works on).

    Returns:
        True if the file was removed; False when the flock is held (its mission runs) or
        the record changed or is not stale.
    """
    if info.path is None:
        return False
    flock = _flock(info.path)
    if not _try_flock(flock):
        return False
    try:
        try:
            current = _read(info.path)
        except ValueError:
            return False
        if current is None or current.model_dump() != info.model_dump() or not is_stale(current):
            return False
        info.path.unlink(missing_ok=True)
        return True
    finally:
        flock.release()


def _locked_error(holder: LockInfo | None, repo: str) -> MissionLocked:
    if holder is None:  # the holder has the flock but has not written its record yet
        return MissionLocked("another mission is starting on this repository", subject=repo,
                             hint="re-run when it has finished; `mendflow doctor` lists the locks")
    return MissionLocked(
        f"mission {holder.mission_id} is running on this repository (pid {holder.pid} on "
        f"{holder.hostname}, started {holder.started_at})",
        subject=repo, holder=holder,
        hint=f"wait for mission {holder.mission_id} to finish or stop it (`kill {holder.pid}`), "
             f"then re-run; `mendflow doctor` lists the locks",
    )


class MissionLock:
    """Context manager: hold the repository's mission lock for the ``with`` block.

    Args:
        repo_root: the repository (its real path names the lock).
        mission_id: the mission taking the lock.
        layout: mendflow's state directory, resolved.

    Attributes:
        info: the lock held (after :meth:`acquire`).
        stale: the stale lock that was taken over, or None.
    """

    def __init__(self, repo_root: Path, mission_id: str, layout: StateLayout):
        self.repo = os.path.realpath(repo_root)
        self.mission_id = mission_id
        self.layout = layout
        self.path = lock_path(Path(self.repo), layout)
        self.info: LockInfo | None = None
        self.stale: LockInfo | None = None
        self._flock = _flock(self.path)

    def acquire(self) -> LockInfo:
        """Take the flock (for as long as this object holds it) and record the holder.

        A record of this same process and mission is re-entered (nothing is taken,
        and the matching :meth:`release` frees nothing). A record left by a dead
        process is taken over (``stale``).

        Returns:
            The lock now held.

        Raises:
            MissionLocked: another process holds the flock, or a live process (or a
                process on another host) is recorded; the message names its
                mission, pid, host and start time.
        """
        pid, created = current_process()
        held = self._read_record()
        if held is not None and not is_stale(held) and \
                (held.pid, held.hostname, held.mission_id) == (pid, socket.gethostname(),
                                                               self.mission_id):
            self.info = held  # this process already holds it: re-entrant, not ours to free
            return held
        if not _try_flock(self._flock):
            raise _locked_error(self._read_record(), self.repo)
        held = self._read_record()  # what the last holder left, read under the flock
        if held is not None and not is_stale(held):
            self._flock.release()
            raise _locked_error(held, self.repo)
        if held is not None:
            log.warning("taking over the stale lock of mission %s (pid %s, started %s, "
                        "no longer running) on %s", held.mission_id, held.pid,
                        held.started_at, self.repo)
            self.stale = held
        info = LockInfo(mission_id=self.mission_id, pid=pid, hostname=socket.gethostname(),
                        create_time=created, repo=self.repo,
                        started_at=datetime.now(timezone.utc).replace(microsecond=0).isoformat())
        try:
            write_atomic(self.path, info.model_dump_json(indent=2), fsync=True)
        except BaseException:
            self._flock.release()
            raise
        self.info = info.model_copy(update={"path": self.path})
        return self.info

    def _read_record(self) -> LockInfo | None:
        """The holder record, None if missing; a corrupt one is removed (it protects nothing)."""
        try:
            return _read(self.path)
        except ValueError as err:
            log.warning("%s; taking the lock over", err)
            self.path.unlink(missing_ok=True)
            return None

    def release(self) -> bool:
        """Remove the holder record if it still is ours, and free the flock.

        Returns:
            True if the record was removed; False when this object holds nothing
            (a re-entry) or the record is no longer ours (it is then left alone).
        """
        if not self._flock.is_locked or self.info is None:
            return False
        try:
            try:
                held = _read(self.path)
            except ValueError:
                return False
            if held is None or (held.pid, held.hostname, held.mission_id, held.started_at) != (
                    self.info.pid, self.info.hostname, self.info.mission_id,
                    self.info.started_at):
                log.warning("the lock of %s is no longer mission %s's; leaving it", self.repo,
                            self.mission_id)
                return False
            self.path.unlink(missing_ok=True)
            return True
        finally:
            self._flock.release(force=True)

    def __enter__(self) -> MissionLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
