"""Where a process's wall time goes: spans of time spent waiting on subprocesses, git and
model calls, recorded only while a benchmark asks for them (``bench/overhead.py``).

:func:`record` is called by :func:`mendflow.infra.runner.run_process` (``"tool"``),
:func:`mendflow.infra.gitops.run_git` (``"git"``) and the model fixers (``"model"``);
it does nothing unless :func:`start` was called, so a long-lived process keeps
no list that grows.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

_lock = threading.Lock()
_spans: list[tuple[str, float, float]] | None = None


def start() -> None:
    """Start recording spans (forgetting earlier ones)."""
    global _spans
    with _lock:
        _spans = []


def stop() -> list[tuple[str, float, float]]:
    """Stop recording; return the spans ``(kind, start, end)`` (``time.monotonic`` seconds)."""
    global _spans
    with _lock:
        spans, _spans = _spans or [], None
    return spans


def record(kind: str, start_s: float, end_s: float) -> None:
    """Record one span of waiting (no-op unless recording)."""
    with _lock:
        if _spans is not None:
            _spans.append((kind, start_s, end_s))


def union_s(spans: Iterable[tuple[str, float, float]]) -> float:
    """Seconds covered by at least one span (concurrent spans count once)."""
    total, end = 0.0, float("-inf")
    for _, a, b in sorted(spans, key=lambda s: s[1]):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total
