"""The audit trail: append-only JSON lines at ``<state dir>/audit.jsonl``, hash-chained.

Each line is one JSON object (keys sorted, no spaces)::

    {"details": {...}, "hash": "<sha256 of this entry without 'hash'>", "mission": "m-1",
     "prev": "<sha256 of the previous line's bytes; 64 zeros for the first>",
     "repository": "/path", "seq": 7, "what": "commit", "when": "2026-12-01T17:00:00+00:00",
     "who": {"kind": "automation", "name": "mendflow"},
     "why": {"finding_ids": [...], "gates": [...], "reason": "..."}}

``who.kind`` is ``user`` | ``approver`` | ``automation``; ``what`` is one of :data:`ACTIONS`.
Appends hold a file lock (``audit.jsonl.lock``), so concurrent missions never interleave
or fork the chain. ``audit.head`` records the last sequence number and hash, so that
removing the newest lines is detected too. :func:`verify` names the first bad line.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field

from mendflow.infra.files import write_atomic

GENESIS = "0" * 64
ACTIONS = ("patch-applied", "commit", "approval", "merge", "push", "revert", "config-change")
Action = Literal["patch-applied", "commit", "approval", "merge", "push", "revert",
                 "config-change"]
LOCK_TIMEOUT_S = 10.0


class Actor(BaseModel):
    """Who did it: a person at the CLI, the approver of a paused mission, or mendflow itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["user", "approver", "automation"]
    name: str


AUTOMATION = Actor(kind="automation", name="mendflow")


def current_user() -> Actor:
    """The person running this process (``getpass.getuser()``)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return Actor(kind="user", name=name)


class Why(BaseModel):
    """Why it was done: the findings, the gate verdicts, a free-text reason."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    finding_ids: tuple[str, ...] = ()
    gates: tuple[str, ...] = Field((), description='"gate: passed|failed" lines')
    reason: str = ""


class Verdict(BaseModel):
    """The result of :func:`verify`."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    entries: int
    bad_line: int | None = Field(None, description="1-based number of the first bad line")
    message: str


def audit_path(state_root: Path) -> Path:
    """``<state_root>/audit.jsonl``."""
    return Path(state_root) / "audit.jsonl"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return _digest(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def _last_line(path: Path) -> bytes | None:
    """The last line of a file (without its newline), reading backwards; None when empty."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return None
    with handle:
        handle.seek(0, os.SEEK_END)
        end = handle.tell()
        chunk, data = 4096, b""
        position = end
        while position > 0:
            position = max(0, position - chunk)
            handle.seek(position)
            data = handle.read(end - position)
            if data.rstrip(b"\n").rfind(b"\n") >= 0:
                break
        lines = data.rstrip(b"\n").split(b"\n")
        return lines[-1] if lines and lines[-1] else None


def append(state_root: Path, *, who: Actor, what: Action, why: Why | None = None,
           mission: str | None = None, repository: str | None = None,
           details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Append one entry, chained to the previous one, under the log's file lock.

    Args:
        state_root: the state directory (``StateLayout.root``).
        who: the actor.
        what: the action (one of :data:`ACTIONS`).
        why: finding ids, gate results and a reason.
        mission: the mission id, if any.
        repository: the repository root, if any.
        details: JSON-serialisable facts (commit, branch, remote ...).

    Returns:
        The entry as written.

    Raises:
        OSError: the log cannot be written.
        filelock.Timeout: another process held the lock for ``LOCK_TIMEOUT_S`` seconds.
    """
    path = audit_path(state_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S):
        last = _last_line(path)
        seq = json.loads(last)["seq"] + 1 if last else 1
        entry: dict[str, Any] = {
            "seq": seq, "when": datetime.now(timezone.utc).isoformat(),
            "who": who.model_dump(), "what": what, "why": (why or Why()).model_dump(mode="json"),
            "mission": mission, "repository": repository, "details": details or {},
            "prev": _digest(last) if last else GENESIS,
        }
        entry["hash"] = _entry_hash(entry)
        line = json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        head = path.with_name("audit.head")
        write_atomic(head, json.dumps({"seq": seq, "hash": _digest(line[:-1].encode())}),
                     fsync=True)
    return entry


def has_commit(state_root: Path, mission: str, patch_id: str, commit: str) -> bool:
    """True when the trail already records ``commit`` of ``mission``'s patch ``patch_id``.

    A resumed mission replays the commits made after its checkpoint (re-using the
    very same commits): their ``commit`` entries are written once, not again.

    Args:
        state_root: the state directory.
        mission: the mission id.
        patch_id: the patch's id.
        commit: the commit sha (40 hex).

    Returns:
        Whether such a ``commit`` entry exists (unparsable lines are skipped).
    """
    path = audit_path(state_root)
    if not path.exists():
        return False
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if commit not in line:  # most lines: no JSON parsing
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            details = entry.get("details") or {}
            if entry.get("what") == "commit" and entry.get("mission") == mission and \
                    details.get("commit") == commit and details.get("patch_id") == patch_id:
                return True
    return False


def read(state_root: Path, mission: str | None = None) -> list[dict[str, Any]]:
    """The entries (optionally of one mission), oldest first; unparsable lines are skipped."""
    path = audit_path(state_root)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if mission is None or entry.get("mission") == mission:
            out.append(entry)
    return out


def verify(state_root: Path) -> Verdict:
    """Check the chain; name the first entry that was edited, removed or reordered.

    Per line, in order: it is a JSON object; its ``hash`` matches its content (else it
    was edited); its ``seq`` is its line number (else an entry before it was removed or
    the lines were reordered); its ``prev`` is the SHA-256 of the line before (else the
    line before was edited and re-hashed, or lines were removed). Finally ``audit.head``
    must name the last line (else the newest entries were removed).

    Returns:
        The verdict; ``bad_line`` is 1-based.
    """
    path = audit_path(state_root)
    if not path.exists():
        return Verdict(ok=True, entries=0, message=f"{path}: no audit entries yet")
    raw = path.read_bytes().split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    prev = GENESIS
    for number, line in enumerate(raw, start=1):
        problem = _check_line(line, number, prev)
        if problem:
            return Verdict(ok=False, entries=len(raw), bad_line=number,
                           message=f"{path}: line {number}: {problem}")
        prev = _digest(line)
    head = path.with_name("audit.head")
    if head.exists():
        try:
            recorded = json.loads(head.read_text(encoding="utf-8"))
        except ValueError:
            recorded = {}
        if recorded.get("seq", 0) > len(raw) or (recorded.get("seq") == len(raw)
                                                  and recorded.get("hash") != prev):
            return Verdict(ok=False, entries=len(raw), bad_line=len(raw) + 1,
                           message=f"{path}: line {len(raw) + 1}: missing: "
                           f"{recorded.get('seq')} entries were written, {len(raw)} remain "
                           "(the newest entries were removed)")
    return Verdict(ok=True, entries=len(raw),
                   message=f"{path}: {len(raw)} entries, the chain is intact")


def _check_line(line: bytes, number: int, prev: str) -> str | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return "not a JSON object (the entry was edited or truncated)"
    if not isinstance(entry, dict):
        return "not a JSON object (the entry was edited)"
    if entry.get("hash") != _entry_hash(entry):
        return "edited: its content does not match its hash"
    if entry.get("seq") != number:
        return (f"entry #{entry.get('seq')} where #{number} belongs: an entry was removed "
                "or the lines were reordered")
    if entry.get("prev") != prev:
        return ("its 'prev' is not the SHA-256 of the line before: that line was edited "
                "(and re-hashed), or entries were removed")
    return None
