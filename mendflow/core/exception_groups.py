"""The box-drawn layout of an exception group's traceback (Python 3.11+, PEP 654).

Python prints an ``ExceptionGroup`` (``asyncio.TaskGroup``, anyio, trio,
``except*``) inside a frame of ``|`` and ``+`` characters::

      + Exception Group Traceback (most recent call last):
      |   File "app.py", line 16, in <module>
      |     main()
      | ExceptionGroup: many (2 sub-exceptions)
      +-+---------------- 1 ----------------
        | Traceback (most recent call last):
        |   File "app.py", line 3, in fetch
        | KeyError: 'k'
        +---------------- 2 ----------------
        | TypeError: t
        +------------------------------------

Pure text functions: :func:`split_group` strips the frame and returns the
group's own traceback and each sub-exception's text, as Python would print
them alone; a sub-exception may itself be a group (it is split again by the
caller). The parsing into records is :mod:`mendflow.core.tracebacks`'.
"""

from __future__ import annotations

import re

from mendflow.core.models import Contract

TRACEBACK_TAIL = "Exception Group Traceback (most recent call last):"
PLAIN_HEADER = "Traceback (most recent call last):"
_BOX_LINE = re.compile(r"^\s*[|+]")
_UNRAISED = re.compile(r"^\|\s+[A-Za-z_][\w.]*: .*\(\d+ sub-exceptions?\)$")
"""A group printed without a traceback of its own (never raised itself: ``except*``'s
re-raise): ``| ExceptionGroup:  (2 sub-exceptions)``."""


class GroupText(Contract):
    """One exception group's text, out of its frame.

    Attributes:
        own: the group's own traceback (``Traceback (most recent call last):``,
            its frames, ``ExceptionGroup: message``), or only its exception line
            when it has no traceback.
        members: each sub-exception's lines, in the printed order.
    """

    own: tuple[str, ...]
    members: tuple[tuple[str, ...], ...]


def is_group_start(line: str) -> bool:
    """Does this log line open an exception group's printed block?"""
    text = line.strip()
    return text == "+ " + TRACEBACK_TAIL or bool(_UNRAISED.match(text))


def is_box_line(line: str) -> bool:
    """Is this line inside an exception group's frame (it starts with ``|`` or ``+``)?"""
    return bool(_BOX_LINE.match(line))


def nested_group_start(member: tuple[str, ...]) -> int | None:
    """Where a group inside a sub-exception's block starts, or None when the
    sub-exception is no group (no ``+-+`` separator of a frame of its own follows).

    Args:
        member: a sub-exception's block, its ``|`` frame kept (:attr:`GroupText.members`).
    """
    for i, line in enumerate(member):
        if line.startswith("+-+"):
            headers = [j for j in range(i) if content(member[j]).strip() == TRACEBACK_TAIL]
            return headers[-1] if headers else max(i - 1, 0)
    return None


def content(line: str) -> str:
    """A sub-exception's line without its frame's ``| ``."""
    return line[2:] if line[:1] in ("|", "+") else line.lstrip()


def split_group(block: list[str]) -> GroupText:
    """Take an exception group's printed block apart.

    Args:
        block: the lines of one group, as printed: from its header (``+ Exception
            Group Traceback ...`` in a log, ``| Exception Group Traceback ...`` as a
            sub-exception, or the ``| Type: message (N sub-exceptions)`` line of a
            group without traceback) to its frame's last line. Any common
            indentation is allowed.

    Returns:
        The :class:`GroupText`: its own lines without the frame, and each member's
        block with its own ``|`` frame (a member may be a group:
        :func:`nested_group_start`). Python's "... (max_group_depth is 10)" and
        "and N more exceptions" notes are left out.

    Raises:
        ValueError: the block is empty.
    """
    if not block:
        raise ValueError("an empty exception group block")
    head = block[0]
    column = len(head) - len(head.lstrip())
    own = [PLAIN_HEADER if head.strip().endswith(TRACEBACK_TAIL) else head[column + 2:]]
    members: list[list[str]] = []
    for line in block[1:]:
        inner = line[column + 2:]
        if line[column:column + 1] == "+" or (members and inner[:1] == "+"
                                               and not inner.startswith("+-+")):
            members.append([])  # "+-+---- 1 ----" first, "+---- 2 ----" next, the frame's end
        elif not members:
            own.append(inner)
        else:  # a member's line, its own frame (and a nested group's) kept
            members[-1].append(inner)
    kept = tuple(tuple(lines) for lines in members if _holds_exception(lines))
    return GroupText(own=tuple(own), members=kept)


def _holds_exception(lines: list[str]) -> bool:
    text = [content(line).strip() for line in lines if content(line).strip()]
    return bool(text) and not (text[0].startswith("...") or text[0].startswith("and "))
