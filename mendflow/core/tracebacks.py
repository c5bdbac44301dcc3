"""Python tracebacks in log text: parsed into typed events, chained ones included.

Pure code: text in, :class:`TracebackEvent` values out. The parser is a small
state machine over lines, so a log of any size is read as a stream:

- ``Traceback (most recent call last):`` opens a traceback; ``File "…", line N,
  in F`` lines are its frames (the indented line after one is its source line;
  Python 3.11+ caret lines ``^^^^`` are skipped); the first unindented line
  after the frames is the exception (``Type: message`` or ``Type``).
- ``During handling of the above exception, another exception occurred:`` and
  ``The above exception was the direct cause of the following exception:``
  continue the same event: one chained traceback is one event whose
  :attr:`TracebackEvent.last` is the exception that was finally raised (as
  error trackers group them), with the whole chain kept.
- An exception group (``+ Exception Group Traceback``, Python 3.11+) is one
  event per leaf sub-exception: its chain is the group's own traceback (and
  what was chained before it) followed by that sub-exception's, so each
  failing task of an ``asyncio.TaskGroup`` is grouped by its own last frames
  (:mod:`mendflow.core.exception_groups` takes the box-drawn frame apart).
- The event's time is the last timestamp seen on a line before the traceback
  (``2024-05-01 12:00:00,123``, ``2024-05-01T12:00:00Z`` …), normalized to ISO 8601.

JSON-lines logs (one object per line) carry the traceback text in an
``exc_info``, ``traceback`` or ``exception`` field (a string, a list of
strings, or structlog's ``dict_tracebacks`` list of ``{exc_type, exc_value,
frames: [{filename, lineno, name, line}]}``): :func:`parse_json_record`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import Field

from mendflow.core.exception_groups import (
    content,
    is_box_line,
    is_group_start,
    nested_group_start,
    split_group,
)
from mendflow.core.models import Contract

_HEADER = "Traceback (most recent call last):"
_CHAIN_MARKERS = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+))?\s*$')
_EXC_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<msg>.*))?$")
_CARETS = re.compile(r"^\s*[\^~]+\s*$")
_TIMESTAMP = re.compile(r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})"
                        r"(?:[.,](?P<frac>\d+))?(?P<tz>Z|[+-]\d{2}:?\d{2})?")
JSON_TRACEBACK_FIELDS = ("exc_info", "traceback", "exception")
JSON_TIME_FIELDS = ("timestamp", "@timestamp", "time", "asctime", "ts", "created")
MAX_SAMPLE_CHARS = 20000
"""A sample traceback's text is cut to this many characters."""


class Frame(Contract):
    """One frame of a traceback, as Python printed it."""

    file: str = Field(description="the path as printed (another machine's, maybe)")
    line: int | None = None
    function: str = Field(default="<module>", description="the function name ('<module>' at top level)")
    source: str | None = Field(default=None, description="the source line Python printed, stripped")


class ExceptionRecord(Contract):
    """One exception of a (possibly chained) traceback."""

    type: str = Field(description="the exception's class, as printed (e.g. 'KeyError')")
    message: str = ""
    frames: tuple[Frame, ...] = Field(default=(), description="outermost first, as printed")


class TracebackEvent(Contract):
    """One logged error: a traceback and the exceptions chained before it."""

    chain: tuple[ExceptionRecord, ...] = Field(description="oldest first; the last was raised")
    timestamp: str | None = Field(default=None, description="ISO 8601, from the log line before it")
    text: str = Field(default="", description="the traceback as it appeared (cut to MAX_SAMPLE_CHARS)")

    @property
    def last(self) -> ExceptionRecord:
        """The exception that was finally raised (what the event is grouped by)."""
        return self.chain[-1]


def normalize_timestamp(text: str) -> str | None:
    """The first timestamp in ``text`` as ISO 8601 (``YYYY-MM-DDTHH:MM:SS[.ffffff][tz]``), or None."""
    match = _TIMESTAMP.search(text)
    if match is None:
        return None
    frac = f".{match['frac'][:6].ljust(6, '0')}" if match["frac"] else ""
    tz = match["tz"] or ""
    if tz and tz != "Z" and ":" not in tz:
        tz = f"{tz[:3]}:{tz[3:]}"
    return f"{match['date']}T{match['time']}{frac}{tz}"


class _Builder:
    """Accumulates one event while the parser walks its lines."""

    def __init__(self, timestamp: str | None):
        self.timestamp = timestamp
        self.records: list[ExceptionRecord] = []
        self.frames: list[Frame] = []
        self.lines: list[str] = []
        self.in_frames = False

    def add_frame(self, match: re.Match[str]) -> None:
        self.frames.append(Frame(file=match["file"], line=int(match["line"]),
                                 function=(match["func"] or "<module>").strip()))

    def add_source(self, text: str) -> None:
        last = self.frames[-1]
        if last.source is None:
            self.frames[-1] = last.model_copy(update={"source": text.strip()[:500]})

    def close_exception(self, exc_type: str, message: str) -> None:
        self.records.append(ExceptionRecord(type=exc_type, message=message[:2000],
                                            frames=tuple(self.frames)))
        self.frames = []
        self.in_frames = False

    def event(self) -> TracebackEvent | None:
        if not self.records:
            return None
        text = "\n".join(self.lines).strip("\n")
        return TracebackEvent(chain=tuple(self.records), timestamp=self.timestamp,
                              text=text[:MAX_SAMPLE_CHARS])


class TextParser:
    """A push parser: :meth:`feed` it lines, it returns the events they complete.

    Args:
        timestamp: the time of the text when no line carries one (ISO 8601).
    """

    def __init__(self, timestamp: str | None = None):
        self.current: _Builder | None = None
        self.seen_time = timestamp
        self.pending_chain = False  # a chain marker was read: the next traceback continues
        self.group: _Group | None = None  # an exception group's block being read

    def _open(self, line: str) -> None:
        self.current = _Builder(self.seen_time)
        self.current.in_frames = True
        self.current.lines.append(line)

    def feed(self, raw: str) -> list[TracebackEvent]:
        """Read one line; return the events it completed (usually none)."""
        line = raw.rstrip("\r\n")
        stripped = line.strip()
        if self.group is not None:
            if is_box_line(line):
                self.group.block.append(line)
                return []
            return self._finish_group() + self.feed(raw)
        if is_group_start(line):
            return self._open_group(line)
        current = self.current
        if current is None:
            if stripped == _HEADER:
                self._open(line)
            else:
                self.seen_time = normalize_timestamp(line) or self.seen_time
            return []
        if current.in_frames:
            current.lines.append(line)
            frame = _FRAME.match(line)
            if frame:
                current.add_frame(frame)
            elif line[:1].isspace() and current.frames:
                if stripped and not _CARETS.match(line):
                    current.add_source(line)
            elif stripped and stripped != _HEADER:
                exc = _EXC_LINE.match(stripped)
                current.close_exception(exc["type"] if exc else stripped.split(":")[0][:200],
                                        (exc["msg"] or "") if exc else stripped[:2000])
            return []
        # after an exception line: a chain marker, blank lines, or the end of the event
        if stripped in _CHAIN_MARKERS:
            current.lines.append(line)
            self.pending_chain = True
            return []
        if stripped == "":
            current.lines.append(line)
            return []
        if stripped == _HEADER and self.pending_chain:
            current.lines.append(line)
            current.in_frames = True
            self.pending_chain = False
            return []
        done = self.finish()
        if stripped == _HEADER:
            self._open(line)
        else:
            self.seen_time = normalize_timestamp(line) or self.seen_time
        return done

    def _open_group(self, line: str) -> list[TracebackEvent]:
        """An exception group starts: it continues a chain whose marker was just read,
        else it ends the event being read."""
        current = self.current
        if current is not None and self.pending_chain and not current.in_frames:
            self.current, self.pending_chain = None, False
            self.group = _Group(current.timestamp, tuple(current.records), current.lines)
            self.group.block.append(line)
            return []
        done = self.finish()
        self.group = _Group(self.seen_time, (), [])
        self.group.block.append(line)
        return done

    def _finish_group(self) -> list[TracebackEvent]:
        group, self.group = self.group, None
        return group.events() if group is not None else []

    def finish(self) -> list[TracebackEvent]:
        """End of input: return the event being read, if any (a cut-off one too)."""
        if self.group is not None:
            return self._finish_group()
        current, self.current, self.pending_chain = self.current, None, False
        if current is None:
            return []
        if current.in_frames and current.frames:  # a cut-off traceback: keep what was read
            current.close_exception("<truncated>", "")
        event = current.event()
        return [event] if event is not None else []


class _Group:
    """An exception group's printed block, read line by line (:class:`TextParser`)."""

    def __init__(self, timestamp: str | None, before: tuple[ExceptionRecord, ...],
                 lines: list[str]):
        self.timestamp = timestamp
        self.before = before  # the exceptions chained before the group
        self.lines = lines  # their text
        self.block: list[str] = []

    def events(self) -> list[TracebackEvent]:
        """One event per distinct leaf sub-exception (the group alone when it has none)."""
        text = "\n".join([*self.lines, *self.block]).strip("\n")[:MAX_SAMPLE_CHARS]
        chains: dict[tuple, tuple[ExceptionRecord, ...]] = {}
        for chain in _leaf_chains(self.block, self.before):
            chains.setdefault((chain[-1].type, chain[-1].frames), chain)
        return [TracebackEvent(chain=chain, timestamp=self.timestamp, text=text)
                for chain in chains.values()]


def _leaf_chains(block: list[str], before: tuple[ExceptionRecord, ...]
                 ) -> list[tuple[ExceptionRecord, ...]]:
    """The chain of every leaf of a group's block, each preceded by ``before`` and the
    chains of the groups that hold it. A leaf printed without a traceback (never
    raised itself) gets the frames of the group that holds it."""
    parts = split_group(block)
    chain = (*before, *_records(list(parts.own)))
    frames = chain[-1].frames if chain else ()
    leaves: list[tuple[ExceptionRecord, ...]] = []
    for member in parts.members:
        nested = nested_group_start(member)
        if nested is not None:  # a group in the group, maybe after what was chained before it
            cause = _records([content(line) for line in member[:nested]])
            leaves += _leaf_chains(list(member[nested:]), (*chain, *cause))
            continue
        records = _records([content(line) for line in member])
        if records and not records[-1].frames:
            records = (*records[:-1], records[-1].model_copy(update={"frames": frames}))
        leaves.append((*chain, *records))
    return leaves or [chain]


def _records(lines: list[str]) -> tuple[ExceptionRecord, ...]:
    """The exceptions of a traceback's lines; a bare ``Type: message`` line (a
    sub-exception that was never raised) is one record without frames."""
    events = list(parse_lines(lines))
    if events:
        return events[0].chain
    text = next((line.strip() for line in lines if line.strip()), "")
    if not text:
        return ()
    exc = _EXC_LINE.match(text)
    return (ExceptionRecord(type=exc["type"] if exc else text.split(":")[0][:200],
                            message=((exc["msg"] or "") if exc else text)[:2000]),)


def parse_lines(lines: Iterable[str], *, timestamp: str | None = None) -> Iterator[TracebackEvent]:
    """Find every Python traceback in a stream of log lines.

    Args:
        lines: the log's lines (with or without their newlines), in order.
        timestamp: the time of the text when no line carries one (ISO 8601).

    Returns:
        An iterator of events, in the order they appear.
    """
    parser = TextParser(timestamp)
    for line in lines:
        yield from parser.feed(line)
    yield from parser.finish()


def parse_text(text: str, *, timestamp: str | None = None) -> list[TracebackEvent]:
    """Every traceback in a text (see :func:`parse_lines`)."""
    return list(parse_lines(text.splitlines(), timestamp=timestamp))


def parse_json_record(line: str) -> list[TracebackEvent] | None:
    """The tracebacks of one JSON-lines log record.

    Args:
        line: one line of a JSON-lines log.

    Returns:
        None when the line is not a JSON object (the caller reads it as text);
        else the events in its ``exc_info``/``traceback``/``exception`` field
        (an empty list when it has none).
    """
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    when = next((str(record[k]) for k in JSON_TIME_FIELDS if record.get(k)), None)
    stamp = normalize_timestamp(when) if when else None
    for name in JSON_TRACEBACK_FIELDS:
        value = record.get(name)
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            event = _structlog_event(value, stamp)
            return [event] if event else []
        if isinstance(value, list):
            value = "".join(str(v) for v in value)
        if isinstance(value, str) and _HEADER in value:
            return parse_text(value, timestamp=stamp)
    return []


def _structlog_event(items: list[dict[str, Any]], stamp: str | None) -> TracebackEvent | None:
    """structlog's ``dict_tracebacks``: the list is outermost (last raised) first."""
    records = []
    for item in reversed(items):
        frames = tuple(Frame(file=str(f.get("filename", "?")), line=f.get("lineno"),
                             function=str(f.get("name", "<module>")),
                             source=(str(f["line"]).strip() or None) if f.get("line") else None)
                       for f in item.get("frames") or () if isinstance(f, dict))
        records.append(ExceptionRecord(type=str(item.get("exc_type", "Exception")),
                                       message=str(item.get("exc_value", ""))[:2000],
                                       frames=frames))
    if not records:
        return None
    text = "\n".join(format_record(r) for r in records)
    return TracebackEvent(chain=tuple(records), timestamp=stamp, text=text[:MAX_SAMPLE_CHARS])


def format_record(record: ExceptionRecord) -> str:
    """A record printed the way Python prints a traceback."""
    lines = [_HEADER]
    for frame in record.frames:
        lines.append(f'  File "{frame.file}", line {frame.line}, in {frame.function}')
        if frame.source:
            lines.append(f"    {frame.source}")
    lines.append(f"{record.type}: {record.message}" if record.message else record.type)
    return "\n".join(lines)
