"""Writing files so that a reader (or a crash) never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, *, fsync: bool = False) -> Path:
    """Write UTF-8 text to a temporary file beside ``path``, then ``os.replace`` it.

    A reader sees the old file or the new one, whole; a process killed in the
    middle leaves the old file and no temporary one behind (unless SIGKILLed
    between the write and the rename, when a ``.<name>.*.tmp`` file may stay).

    Args:
        path: the destination; its directory is created when missing.
        text: the content.
        fsync: flush the data to disk before the rename (for records that must
            survive a power loss, such as the reports).

    Returns:
        ``path``.

    Raises:
        OSError: the file cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
