"""What the live hook (:mod:`mendflow.heal`) reports of an exception: scrubbed text,
the frames it walks, and the failures an exception group holds.

Standard library only: it is imported into the application being watched.
"""

from __future__ import annotations

import re
import sys
from types import TracebackType

_SECRETS = [
    (re.compile(r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|apikey|auth|"
                r"credentials?|session|cookie)(\s*[=:]\s*)(['\"]?)[^\s'\",;&]+"), r"\1\2\3[redacted]"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer [redacted]"),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "://[redacted]@"),
    (re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_-]{8,}|\bgh[pousr]_[A-Za-z0-9]{16,}|\bAKIA[0-9A-Z]{16}"
                r"|\bxox[abpr]-[A-Za-z0-9-]{8,}|\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9._-]+"),
     "[redacted]"),
    (re.compile(r"\b[A-Fa-f0-9]{32,}\b|\b[A-Za-z0-9+/]{40,}={0,2}"), "[redacted]"),
]


def scrub(text: str, limit: int = 500) -> str:
    """Cut ``text`` to ``limit`` characters and replace anything that looks like a secret."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def type_name(exc: BaseException) -> str:
    """The exception's class as Python prints it (``KeyError``, ``shop.errors.PricingError``)."""
    kind = type(exc)
    return kind.__qualname__ if kind.__module__ in ("builtins", "__main__") \
        else f"{kind.__module__}.{kind.__qualname__}"


def failures(exc: BaseException, limit: int = 50
              ) -> list[tuple[tuple[BaseException, ...], BaseException]]:
    """What to report for ``exc``: itself, or for an exception group (Python 3.11+) each
    distinct leaf (by type and frames) with the groups that hold it, outermost first."""
    group_type = getattr(sys.modules["builtins"], "BaseExceptionGroup", None)
    if group_type is None or not isinstance(exc, group_type):
        return [((), exc)]
    found: dict[tuple, tuple[tuple[BaseException, ...], BaseException]] = {}
    for member in exc.exceptions:
        for holders, leaf in failures(member, limit):
            where = tuple((tb.tb_frame.f_code.co_filename, tb.tb_frame.f_code.co_name)
                          for tb in walk(traceback_of(leaf, (exc, *holders))))
            found.setdefault((type(leaf), where), ((exc, *holders), leaf))
            if len(found) >= limit:
                return list(found.values())
    return list(found.values()) or [((), exc)]


def traceback_of(exc: BaseException, holders: tuple[BaseException, ...]) -> TracebackType | None:
    """``exc``'s traceback; a group member never raised itself has none: its group's."""
    for held in (exc, *reversed(holders)):
        if held.__traceback__ is not None:
            return held.__traceback__
    return None


def walk(tb: TracebackType | None):
    """The traceback's entries, outermost first (at most 64, as the payload keeps)."""
    entries: list[TracebackType] = []
    while tb is not None and len(entries) < 64:
        entries.append(tb)
        tb = tb.tb_next
    return entries
