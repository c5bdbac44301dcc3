"""One mission per repository: a lock file in mendflow's state directory.

The lock of a repository is ``<state>/locks/<key>.json`` where ``key`` is the
first 16 hex digits of the SHA-256 of the repository's real path. It holds the
mission id, the pid, host name and creation time (psutil) of the process that
runs it, when it started and the repository. It is created atomically
(``O_CREAT | O_EXCL``), so two missions can never both hold it.

A lock whose process is dead, or whose pid now belongs to another process
(its creation time differs), is *stale*: the next mission takes it over and
says so. A lock held by a live process raises :class:`~mendflow.core.errors.MissionLocked`.
Checks and changes are serialised between processes by ``flock`` on
``<state>/locks/.guard``, so two missions taking over the same stale lock
cannot both win.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mendflow.core.errors import MissionLocked
from mendflow.infra.layout import StateLayout
from mendflow.infra.owned_processes import current_process, is_alive

log = logging.getLogger(__name__)
_GUARD = ".guard"


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
    """Return the lock file of a repository (it may not exist)."""
    return locks_dir(layout) / f"{repo_key(repo_root)}.json"


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


@contextlib.contextmanager
def guarded(layout: StateLayout) -> Iterator[Path]:
    """Hold the exclusive ``flock`` on ``<state>/locks/.guard``; yield the locks directory."""
    directory = locks_dir(layout)
    with open(directory / _GUARD, "a+b") as guard:
        fcntl.flock(guard.fileno(), fcntl.LOCK_EX)
        try:
            yield directory
        finally:
            fcntl.flock(guard.fileno(), fcntl.LOCK_UN)


def remove_stale_lock(info: LockInfo, layout: StateLayout) -> bool:
    """Delete a lock file if it is (still) stale: the same content, and its process gone.

    Args:
        info: the lock, from :func:`read_locks`.
        layout: mendflow's state directory, resolved.

    Returns:
        True if the file was removed.
    """
    if info.path is None:
        return False
    with guarded(layout):
        try:
            current = _read(info.path)
        except ValueError:
            return False
        if current is None or current.model_dump() != info.model_dump() or not is_stale(current):
            return False
        info.path.unlink(missing_ok=True)
        return True


def _locked_error(holder: LockInfo, repo: str) -> MissionLocked:
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
        self._owned = False

    def acquire(self) -> LockInfo:
        """Take the lock (or take over a stale one).

        Returns:
            The lock now held.

        Raises:
            MissionLocked: a live process (or a process on another host) holds
                it; the message names its mission, pid and start time.
        """
        pid, created = current_process()
        with guarded(self.layout):
            try:
                held = _read(self.path)
            except ValueError as err:  # written under the guard, so never half-written: corrupt
                log.warning("%s; taking the lock over", err)
                held = None
                self.path.unlink(missing_ok=True)
            if held is not None:
                if (held.pid, held.hostname, held.mission_id) == (pid, socket.gethostname(),
                                                                  self.mission_id) \
                        and not is_stale(held):
                    self.info = held  # this process already holds it: re-entrant, not ours to free
                    return held
                if not is_stale(held):
                    raise _locked_error(held, self.repo)
                log.warning("taking over the stale lock of mission %s (pid %s, started %s, "
                            "no longer running) on %s", held.mission_id, held.pid,
                            held.started_at, self.repo)
                self.stale = held
                self.path.unlink(missing_ok=True)
            self.info = self._create(pid, created)
            self._owned = True
            return self.info

    def _create(self, pid: int, created: float) -> LockInfo:
        info = LockInfo(mission_id=self.mission_id, pid=pid, hostname=socket.gethostname(),
                        create_time=created, repo=self.repo,
                        started_at=datetime.now(timezone.utc).replace(microsecond=0).isoformat())
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:  # a process that does not use the guard (another host) won
            held = _read(self.path)
            raise _locked_error(held, self.repo) if held else MissionLocked(
                "the repository's lock was taken concurrently", subject=self.repo,
                hint="re-run when the other mission has finished") from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(info.model_dump_json(indent=2))
            handle.flush()
            os.fsync(handle.fileno())
        return info.model_copy(update={"path": self.path})

    def release(self) -> bool:
        """Remove the lock file if this object created it and it still is ours.

        Returns:
            True if the file was removed.
        """
        if not self._owned or self.info is None:
            return False
        self._owned = False
        with guarded(self.layout):
            try:
                held = _read(self.path)
            except ValueError:
                return False
            if held is None or (held.pid, held.hostname, held.mission_id, held.started_at) != (
                    self.info.pid, self.info.hostname, self.info.mission_id, self.info.started_at):
                log.warning("the lock of %s is no longer mission %s's; leaving it", self.repo,
                            self.mission_id)
                return False
            self.path.unlink(missing_ok=True)
            return True

    def __enter__(self) -> MissionLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
