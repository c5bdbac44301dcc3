"""TODO-style markers in comments, and the line count used by the quality score.

Comments are found with Python's :mod:`tokenize`, so a ``TODO`` inside a
string is not a finding. Only files tracked by git are read.
"""

from __future__ import annotations

import io
import re
import time
import tokenize
from collections.abc import Iterator
from pathlib import Path

from mendflow.core.config import ToolsConfig
from mendflow.core.findings import SourceIndex, disambiguate, make_finding
from mendflow.core.models import Finding, Sandbox, ToolResult
from mendflow.tasks.detect.common import tracked_python_files

MESSAGE_CHARS = 200


def marker_pattern(markers: list[str]) -> re.Pattern[str] | None:
    """Compile a pattern matching a comment that starts with one of ``markers``.

    ``# TODO: x``, ``#FIXME(bob)`` and ``# XXX`` match; ``# see TODO list`` does not.

    Returns:
        The pattern (group 1 is the marker), or None if there are no markers.
    """
    names = [re.escape(m) for m in markers if m]
    if not names:
        return None
    return re.compile(r"#[#!:\s]*(" + "|".join(names) + r")(?![\w])")


def comments(source: bytes) -> Iterator[tuple[int, int, str]]:
    """Yield ``(line, column, text)`` of every comment in Python source.

    Tokenizing stops quietly at the first error (an unterminated string ...):
    the comments before it are still yielded.

    Args:
        source: the file's bytes (an encoding cookie is honored).
    """
    try:
        for token in tokenize.tokenize(io.BytesIO(source).readline):
            if token.type == tokenize.COMMENT:
                yield token.start[0], token.start[1] + 1, token.string
    except (tokenize.TokenError, SyntaxError):
        return


def scan_todos(sandbox: Sandbox, tools: ToolsConfig) -> ToolResult:
    """Find comments that start with a configured marker (TODO, FIXME ...).

    Args:
        sandbox: the worktree; its tracked ``.py`` files are read.
        tools: the ``tools`` config (``todo.markers``, ``todo.enabled``).

    Returns:
        A ``todo`` :class:`ToolResult`: one ``info`` finding per marked comment,
        rule = the marker.

    Raises:
        ToolError: the worktree is not a git worktree.
    """
    if not tools.todo.enabled:
        return ToolResult(tool="todo", ok=True)
    start = time.monotonic()
    pattern = marker_pattern(tools.todo.markers)
    found: list[Finding] = []
    if pattern is not None:
        index = SourceIndex(sandbox.path)
        for rel in tracked_python_files(sandbox.path):
            found += _file_todos(sandbox.path, rel, pattern, index)
    return ToolResult(tool="todo", findings=tuple(disambiguate(found)),
                      duration_s=time.monotonic() - start)


def _file_todos(root: Path, rel: str, pattern: re.Pattern[str],
                index: SourceIndex) -> list[Finding]:
    try:
        source = (root / rel).read_bytes()
    except OSError:
        return []
    found = []
    for line, column, text in comments(source):
        match = pattern.match(text)
        if match is None:
            continue
        message = " ".join(text.lstrip("#!: ").split())
        found.append(make_finding(
            index, source="todo", rule=match.group(1), path=rel, line=line, column=column,
            severity="info", category="todo",
            message=message if len(message) <= MESSAGE_CHARS else message[:MESSAGE_CHARS - 3]
            + "...",
        ))
    return found


def count_python_loc(root: Path) -> int:
    """Count the non-blank, non-comment lines of the tracked ``.py`` files.

    Args:
        root: a git worktree (or repository) root.

    Returns:
        The number of lines (docstrings count; lines holding only a comment do not).

    Raises:
        ToolError: ``root`` is not a git worktree.
    """
    total = 0
    for rel in tracked_python_files(root):
        try:
            text = (root / rel).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        total += sum(1 for line in text.splitlines()
                     if line.strip() and not line.lstrip().startswith("#"))
    return total
