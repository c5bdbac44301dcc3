"""Reading log files: plain text, rotated (``app.log.1``) and gzip-compressed (``.gz``).

Each file is read as a stream of lines (UTF-8, undecodable bytes replaced). A
file is gzip when its first two bytes are gzip's magic (``1f 8b``), whatever its
name. A line that is a JSON object is a JSON-lines record
(:func:`mendflow.core.tracebacks.parse_json_record`); any other line goes to the
plain-text traceback parser, so a file may mix both.
"""

from __future__ import annotations

import glob
import gzip
import io
from collections.abc import Iterable, Iterator
from pathlib import Path

from mendflow.core.errors import ConfigError
from mendflow.core.tracebacks import TextParser, TracebackEvent, parse_json_record

_GZIP_MAGIC = b"\x1f\x8b"


def open_log(path: Path) -> io.TextIOBase:
    """Open a log file for reading text, gunzipping it if it is gzip.

    Raises:
        ConfigError: the file cannot be read.
    """
    try:
        with path.open("rb") as probe:
            magic = probe.read(2)
        if magic == _GZIP_MAGIC:
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
        return path.open("r", encoding="utf-8", errors="replace")
    except OSError as err:
        raise ConfigError(f"cannot read the log file: {err.strerror or err}", subject=str(path),
                          hint="pass a readable log file") from None


def read_events(path: Path) -> Iterator[TracebackEvent]:
    """Every traceback logged in one file (text and JSON-lines records alike).

    Args:
        path: a log file (plain, rotated or ``.gz``).

    Returns:
        An iterator of events in file order.

    Raises:
        ConfigError: the file cannot be read, or it is a corrupt gzip file.
    """
    parser = TextParser()
    with open_log(path) as handle:
        try:
            for line in handle:
                records = parse_json_record(line) if line.lstrip().startswith("{") else None
                if records is None:
                    yield from parser.feed(line)
                else:
                    yield from parser.finish()
                    yield from records
        except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
            raise ConfigError(f"the log file is corrupt: {err}", subject=str(path),
                              hint="check the file (a rotated .gz cut short?)") from None
    yield from parser.finish()


def expand_paths(patterns: Iterable[str], base: Path | None = None) -> list[Path]:
    """The files that glob patterns name (``**`` recurses), sorted, without duplicates.

    Args:
        patterns: file names or globs (``logs/app.log*``, ``/var/log/app/**/*.log``).
        base: the directory relative patterns start from; None = the current directory.

    Returns:
        The existing regular files.
    """
    found: set[Path] = set()
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() or base is None else str(base / pattern)
        found.update(Path(p) for p in glob.glob(full, recursive=True) if Path(p).is_file())
    return sorted(found)


def read_all(paths: Iterable[Path]) -> Iterator[TracebackEvent]:
    """Every traceback of every file, file after file.

    Raises:
        ConfigError: a file is missing or unreadable.
    """
    for path in paths:
        if not path.is_file():
            raise ConfigError("no such log file", subject=str(path),
                              hint="pass an existing file (rotated .1 and .gz files are read too)")
        yield from read_events(path)
