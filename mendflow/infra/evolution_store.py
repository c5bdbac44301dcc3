"""Where the evolution loop keeps its history and state: ``<state root>/evolution/<repo key>/``.

* ``evolution_history.json``: a JSON list of :class:`CycleRecord`, oldest first;
* ``evolution_memory.json``: the :class:`LoopMemory` (what the loop remembers);
* ``repo/``: the loop's own clone when it was pointed at a git URL.

Writes are atomic (a temporary file renamed over) under a file lock, so a
killed cycle never leaves a half-written history.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from filelock import FileLock

from mendflow.core.errors import ConfigError
from mendflow.core.evolution import CycleRecord, LoopMemory
from mendflow.infra.layout import StateLayout

HISTORY_FILE = "evolution_history.json"
MEMORY_FILE = "evolution_memory.json"
_OLD_MEMORY_FILE = "evolution_state.json"
"""The file's name before 2026-12 (read when the new one is missing)."""


def is_git_url(target: str) -> bool:
    """True for ``https://…``, ``ssh://…``, ``git@host:…`` and ``file://…`` targets."""
    return bool(re.match(r"^(https?|ssh|git|file)://", target) or
                re.match(r"^[\w.-]+@[\w.-]+:", target))


def loop_key(target: str) -> str:
    """A filename-safe key of a repository path or URL: ``<name>-<hash8>``."""
    text = target.rstrip("/")
    if not is_git_url(text):
        text = str(Path(text).expanduser().resolve())
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", Path(text.removesuffix(".git")).name) or "repo"
    return f"{name[:40]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def loop_dir(layout: StateLayout, target: str) -> Path:
    """The loop's directory for ``target`` (created)."""
    path = layout.root / "evolution" / loop_key(target)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def read_history(folder: Path) -> list[CycleRecord]:
    """The cycle records, oldest first (empty when none).

    Raises:
        ConfigError: the history file is not valid JSON of records.
    """
    path = folder / HISTORY_FILE
    if not path.exists():
        return []
    try:
        return [CycleRecord.model_validate(x) for x in json.loads(path.read_text("utf-8"))]
    except (ValueError, TypeError) as err:
        raise ConfigError(f"unreadable evolution history: {err}", subject=str(path),
                          hint="move the file away; the next cycle starts a new one") from None


def append_record(folder: Path, record: CycleRecord) -> CycleRecord:
    """Append ``record`` (its ``cycle`` renumbered to follow the last) and return it."""
    with FileLock(str(folder / (HISTORY_FILE + ".lock")), timeout=60):
        records = read_history(folder)
        record = record.model_copy(update={"cycle": (records[-1].cycle + 1) if records else 1})
        data = [r.model_dump(mode="json") for r in [*records, record]]
        _write_atomic(folder / HISTORY_FILE, json.dumps(data, indent=1))
    return record


def read_memory(folder: Path) -> LoopMemory:
    """What the loop remembers (defaults when there is nothing yet or it is unreadable)."""
    path = folder / MEMORY_FILE
    if not path.exists() and (folder / _OLD_MEMORY_FILE).exists():
        path = folder / _OLD_MEMORY_FILE
    try:
        return LoopMemory.model_validate_json(path.read_text("utf-8"))
    except (OSError, ValueError):
        return LoopMemory()


def write_memory(folder: Path, memory: LoopMemory) -> None:
    """Replace what the loop remembers, atomically."""
    with FileLock(str(folder / (MEMORY_FILE + ".lock")), timeout=60):
        _write_atomic(folder / MEMORY_FILE, memory.model_dump_json(indent=1))
