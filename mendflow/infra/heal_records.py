"""Where healing keeps its records: ``<state>/heal/``.

- ``<fingerprint>.json``: the :class:`~mendflow.core.heal.HealRecord` of one error group
  (the error, its context and traceback, each attempt with its reason, the result);
- ``<fingerprint>.lock``: held (``filelock``) by the one open heal run of that group;
- ``calls.json`` / ``runs.json``: the times (epoch seconds) of recent model calls and
  heal runs, shared by every process, for the per-hour limits.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

from mendflow.core.errors import ConfigError
from mendflow.core.heal import HealRecord
from mendflow.infra.layout import StateLayout

_HOUR_S = 3600.0


def heal_dir(layout: StateLayout) -> Path:
    """``<state>/heal/``, created."""
    path = layout.root / "heal"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _check_fp(fingerprint: str) -> str:
    if not fingerprint or not all(c in "0123456789abcdef" for c in fingerprint) \
            or len(fingerprint) > 64:
        raise ConfigError("not an error-group fingerprint", subject=fingerprint,
                          hint="use a fingerprint printed by `mendflow heal scan`")
    return fingerprint


def read_record(layout: StateLayout, fingerprint: str) -> HealRecord | None:
    """The record of a group, or None when there is none yet."""
    path = heal_dir(layout) / f"{_check_fp(fingerprint)}.json"
    try:
        return HealRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def write_record(layout: StateLayout, record: HealRecord) -> Path:
    """Write a group's record atomically (stamped ``updated_at``); returns its path."""
    record = record.model_copy(update={
        "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    path = heal_dir(layout) / f"{_check_fp(record.fingerprint)}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(record.model_dump_json(indent=2), encoding="utf-8")
    tmp.replace(path)
    return path


def list_records(layout: StateLayout) -> list[HealRecord]:
    """Every recorded group, the most recently updated first."""
    records = []
    for path in heal_dir(layout).glob("*.json"):
        if path.name in ("calls.json", "runs.json"):
            continue
        try:
            records.append(HealRecord.model_validate_json(path.read_text(encoding="utf-8")))
        except ValueError:
            continue
    return sorted(records, key=lambda r: r.updated_at or "", reverse=True)


def group_lock(layout: StateLayout, fingerprint: str) -> FileLock:
    """The lock the one open heal run of a group holds (acquire with ``timeout=0``)."""
    return FileLock(str(heal_dir(layout) / f"{_check_fp(fingerprint)}.lock"))


def try_lock(lock: FileLock) -> bool:
    """Take a lock without waiting; False when another run holds it."""
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    return True


def reserve_slot(layout: StateLayout, kind: str, per_hour: int, *,
                 now: float | None = None) -> str | None:
    """Count one model call (``kind="calls"``) or heal run (``"runs"``) within the hourly cap.

    Args:
        layout: the state directory.
        kind: ``calls`` or ``runs``.
        per_hour: the cap.
        now: the time (epoch seconds); None = now.

    Returns:
        None when counted; else why not (the cap is reached), and nothing is counted.
    """
    now = time.time() if now is None else now
    path = heal_dir(layout) / f"{kind}.json"
    with FileLock(str(path) + ".lock", timeout=30):
        try:
            times = [t for t in json.loads(path.read_text()) if now - t < _HOUR_S]
        except (FileNotFoundError, ValueError, TypeError):
            times = []
        if len(times) >= per_hour:
            wait = _HOUR_S - (now - min(times))
            return (f"the limit of {per_hour} heal {kind} per hour is reached "
                    f"(next in {wait:.0f} s)")
        times.append(now)
        path.write_text(json.dumps(times))
    return None
