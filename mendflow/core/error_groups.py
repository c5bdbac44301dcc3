"""Error groups: tracebacks grouped by a fingerprint that survives deploys and noise.

The fingerprint of an event is a SHA-256 (16 hex digits) of:

- the type of the exception finally raised (the last of a chain), and
- its innermost application frames (at most :data:`FINGERPRINT_FRAMES`), each by
  the last two components of its path and its function name.

No line numbers, addresses or values enter it, so an error keeps its
fingerprint when code above it moves, when the message holds an id, and when
the application runs from another checkout (``/srv/app-release-42/pkg/mod.py``
and ``/srv/app-release-43/pkg/mod.py`` agree). Application frames are frames
outside site-packages/dist-packages and the standard library; when they map
into a repository (:class:`RepoFiles`), only those that do.

Frame mapping: a production path maps to the repository file that is its
*longest matching path suffix* (``/srv/app-release-42/pkg/mod.py`` →
``pkg/mod.py``); frames that match no file are left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath, PureWindowsPath

from pydantic import Field

from mendflow.core.findings import fingerprint as hash_parts
from mendflow.core.models import Contract, Finding
from mendflow.core.tracebacks import Frame, TracebackEvent

FINGERPRINT_FRAMES = 3
"""Innermost application frames that enter a fingerprint."""

_LIBRARY = re.compile(r"(^|/)(site-packages|dist-packages)/|(^|/)lib/python\d+(\.\d+)?/|"
                      r"(^|/)lib/pypy\d|(^|/)Lib/")
_SYNTHETIC = re.compile(r"^<.*>$")  # <frozen importlib._bootstrap>, <string>, <stdin>


def _parts(file: str) -> tuple[str, ...]:
    """The path's components, for POSIX and Windows paths alike."""
    if "\\" in file and "/" not in file:
        return tuple(p for p in PureWindowsPath(file).parts if p not in ("\\",))
    return tuple(p for p in PurePosixPath(file).parts if p != "/")


def is_library_file(file: str) -> bool:
    """Is the file in site-packages, dist-packages, the standard library or synthetic code?"""
    return bool(_LIBRARY.search(file.replace("\\", "/")) or _SYNTHETIC.match(file))


def is_library_frame(frame: Frame) -> bool:
    """Is the frame's file a library's (see :func:`is_library_file`)?"""
    return is_library_file(frame.file)


def frame_key(file: str, function: str) -> str:
    """The part of a frame that enters a fingerprint: ``<last two path parts>:<function>``."""
    return f"{'/'.join(_parts(file)[-2:])}:{function}"


def fingerprint_of(exception_type: str, frames: Iterable[tuple[str, str]]) -> str:
    """The fingerprint of an exception type and its frames (``(file, function)``, outermost first).

    Returns:
        16 hex digits (see the module docstring).
    """
    app = [frame for frame in frames if not is_library_file(frame[0])]
    keys = [frame_key(file, function) for file, function in app[-FINGERPRINT_FRAMES:]]
    return hash_parts("traceback", exception_type, *keys)


class RepoFiles:
    """The files of a repository, to map other machines' paths onto.

    Args:
        files: repository-relative POSIX paths (``git ls-files``).
    """

    def __init__(self, files: Iterable[str]):
        self.by_name: dict[str, list[tuple[str, ...]]] = {}
        for rel in files:
            parts = tuple(PurePosixPath(rel).parts)
            if parts:
                self.by_name.setdefault(parts[-1], []).append(parts)
        self._cache: dict[str, str | None] = {}

    def map(self, file: str) -> str | None:
        """The repository file a frame's path names: the longest matching path suffix.

        Args:
            file: the path as printed in the traceback (absolute, another machine's).

        Returns:
            The repository-relative POSIX path, or None when no file matches.
        """
        if file in self._cache:
            return self._cache[file]
        parts = _parts(file)
        best: tuple[str, ...] | None = None
        for candidate in self.by_name.get(parts[-1], []) if parts else []:
            if len(candidate) <= len(parts) and parts[-len(candidate):] == candidate \
                    and (best is None or len(candidate) > len(best)):
                best = candidate
        found = "/".join(best) if best else None
        self._cache[file] = found
        return found


class LocatedFrame(Contract):
    """An application frame, with the repository file it maps to (if any)."""

    frame: Frame
    path: str | None = Field(default=None, description="repository-relative POSIX path; None = unmapped")


def app_frames(event: TracebackEvent, repo: RepoFiles | None = None) -> list[LocatedFrame]:
    """The raised exception's application frames, outermost first.

    Args:
        event: the event.
        repo: the repository's files; when given and some frames map into it,
            only those frames count.

    Returns:
        The frames outside libraries (mapped ones only, when any map).
    """
    frames = [f for f in event.last.frames if not is_library_frame(f)]
    located = [LocatedFrame(frame=f, path=repo.map(f.file) if repo else None) for f in frames]
    if repo is not None and any(lf.path for lf in located):
        located = [lf for lf in located if lf.path]
    return located


def event_fingerprint(event: TracebackEvent) -> str:
    """The event's group fingerprint (see the module docstring): 16 hex digits."""
    return fingerprint_of(event.last.type, ((f.file, f.function) for f in event.last.frames))


class ErrorGroup(Contract):
    """One group of identical errors: how often, when, and one sample."""

    fingerprint: str
    exception_type: str
    message: str = Field(description="the message of the most recent event")
    count: int
    first_seen: str | None = Field(default=None, description="ISO 8601; None when no time was logged")
    last_seen: str | None = None
    path: str | None = Field(default=None, description="the innermost application frame's file "
                             "(repository-relative when mapped, else as printed)")
    function: str | None = None
    line: int | None = None
    sample: TracebackEvent = Field(description="the most recent event, with its whole chain")

    def summary(self) -> dict[str, object]:
        """The fields of ``mendflow heal scan --json`` (no sample)."""
        return self.model_dump(mode="json", exclude={"sample"})


def group_events(events: Iterable[TracebackEvent], repo: RepoFiles | None = None
                 ) -> list[ErrorGroup]:
    """Group events by fingerprint.

    Args:
        events: parsed events, any order.
        repo: the repository's files, to locate the innermost frame.

    Returns:
        The groups, largest first (then the most recent first).
    """
    groups: dict[str, ErrorGroup] = {}
    for event in events:
        fp = event_fingerprint(event)
        old = groups.get(fp)
        stamp = event.timestamp
        if old is None:
            frames = app_frames(event, repo)
            inner = frames[-1] if frames else None
            groups[fp] = ErrorGroup(
                fingerprint=fp, exception_type=event.last.type, message=event.last.message,
                count=1, first_seen=stamp, last_seen=stamp,
                path=(inner.path or inner.frame.file) if inner else None,
                function=inner.frame.function if inner else None,
                line=inner.frame.line if inner else None, sample=event)
            continue
        newer = stamp is None or old.last_seen is None or stamp >= old.last_seen
        update: dict[str, object] = {"count": old.count + 1}
        if stamp is not None and (old.first_seen is None or stamp < old.first_seen):
            update["first_seen"] = stamp
        if newer:
            update.update(last_seen=stamp or old.last_seen, sample=event,
                          message=event.last.message)
        groups[fp] = old.model_copy(update=update)
    return sorted(groups.values(), key=lambda g: (-g.count, _neg(g.last_seen)))


def _neg(stamp: str | None) -> tuple[int, str]:
    return (1, "") if stamp is None else (0, "".join(chr(0x10FFFF - ord(c)) for c in stamp))


def group_finding(group: ErrorGroup, repo: RepoFiles) -> Finding | None:
    """A ``source: log`` finding for a group whose innermost frame is in the repository.

    Args:
        group: the group.
        repo: the repository's files.

    Returns:
        The finding (id = the group fingerprint, rule = the exception type,
        severity high, category runtime), or None when no frame maps into the repository.
    """
    frames = app_frames(group.sample, repo)
    inner = frames[-1] if frames else None
    if inner is None or inner.path is None:
        return None
    seen = f"{group.first_seen} .. {group.last_seen}" if group.first_seen else "no time logged"
    return Finding(
        id=group.fingerprint, source="log", rule=group.exception_type, severity="high",
        category="runtime", path=inner.path, line=inner.frame.line, symbol=inner.frame.function,
        message=f"{group.exception_type}: {group.message[:200]} (logged {group.count}x, {seen})",
        detail=group.sample.text)
