"""The live hook: report an application's exceptions to Prefect as events.

In the application::

    import mendflow.heal
    mendflow.heal.install(repository="/srv/checkout/of/the/repo")   # once, at start-up

:func:`install` sets ``sys.excepthook``, ``threading.excepthook``, optionally the
running asyncio loop's exception handler (``loop=``) and a ``logging.Handler``
(``logging_handler=True``: records logged with ``logger.exception``), chaining
to the hooks that were there before. Each exception becomes a Prefect event
``mendflow.exception.raised``:

- resource: ``{"prefect.resource.id": "mendflow.error.<fingerprint>",
  "mendflow.repository": <repository>, "mendflow.fingerprint": <fingerprint>}``;
- payload: ``type``, ``message`` (cut to ``max_message_chars`` and scrubbed of
  secret-looking text), ``frames`` (file, line, function, source line; no
  local variables), ``chain`` (the causes, oldest first), ``timestamp``,
  ``repeats`` (repeats held back by the rate limit since the last event), ``source``.
  An exception group (``asyncio.TaskGroup``, ``except*``) is one event per distinct
  failing member (nested groups included), its chain starting with the groups that
  held it, as the log scanner reads a printed group.

The fingerprint is the one the log scanner computes
(:func:`mendflow.core.error_groups.event_fingerprint`), so a group is the same
whether it was logged or raised.

It never raises into the application and never blocks it: the hook builds the
payload (measured: :attr:`Hook.stats`) and hands it to a bounded queue; a
daemon thread POSTs it to the Prefect API (``<api_url>/events``). A fingerprint
sends at most one event per ``rate_limit_s``. When the API is unreachable, the
event is written to ``spool_dir`` and delivered later (by the thread, every
``retry_s``, and by the next process that installs the hook). At exit, what is
still queued is spooled.

Importing this module imports nothing but the standard library; :func:`install`
imports mendflow's core models (pydantic) and ``httpx`` (both Prefect's own
dependencies), never Prefect itself.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import queue
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from mendflow.heal_report import failures as _failures
from mendflow.heal_report import scrub
from mendflow.heal_report import traceback_of as _traceback_of
from mendflow.heal_report import type_name as _type_name
from mendflow.heal_report import walk as _walk

EVENT_NAME = "mendflow.exception.raised"
@dataclass
class HookStats:
    """What the hook did and what it cost the application (seconds of the raising thread)."""

    exceptions: int = 0
    sent: int = 0
    spooled: int = 0
    rate_limited: int = 0
    dropped: int = 0
    hook_s: float = 0.0
    max_hook_s: float = 0.0

    @property
    def mean_hook_s(self) -> float:
        return self.hook_s / self.exceptions if self.exceptions else 0.0


@dataclass
class Hook:
    """An installed hook (returned by :func:`install`; :meth:`uninstall` restores the old hooks)."""

    repository: str
    api_url: str | None
    spool_dir: Path
    rate_limit_s: float
    max_message_chars: int
    retry_s: float
    stats: HookStats = field(default_factory=HookStats)
    _queue: queue.Queue = field(default_factory=lambda: queue.Queue(maxsize=1000))
    _last: dict[str, float] = field(default_factory=dict)
    _held: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _restore: list[Any] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _inflight: list[dict[str, Any]] | None = None

    # --- in the application's thread: fast, never raises ----------------------------
    def report(self, exc: BaseException, source: str) -> None:
        """Turn one exception into an event on the queue (rate-limited per fingerprint)."""
        if getattr(exc, "__mendflow_reported__", False):
            return  # seen by another hook already (asyncio's handler logs what it got)
        started = time.perf_counter()
        try:
            try:
                exc.__mendflow_reported__ = True  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            for holders, failure in _failures(exc):
                self._report(failure, source, holders)
        except Exception:  # noqa: BLE001  (never raise into the application)
            self.stats.dropped += 1
        finally:
            spent = time.perf_counter() - started
            self.stats.exceptions += 1
            self.stats.hook_s += spent
            self.stats.max_hook_s = max(self.stats.max_hook_s, spent)

    def _report(self, exc: BaseException, source: str,
                holders: tuple[BaseException, ...] = ()) -> None:
        from mendflow.core.error_groups import fingerprint_of

        # the fingerprint first, from code objects only (no source lines read), so that a
        # repeat held back by the rate limit costs little
        frames = [(tb.tb_frame.f_code.co_filename, tb.tb_frame.f_code.co_name)
                  for tb in _walk(_traceback_of(exc, holders))]
        fingerprint = fingerprint_of(_type_name(exc), frames)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(fingerprint)
            if last is not None and now - last < self.rate_limit_s:
                self._held[fingerprint] = self._held.get(fingerprint, 0) + 1
                self.stats.rate_limited += 1
                return
            self._last[fingerprint] = now
            repeats = self._held.pop(fingerprint, 0)
        payload = self.payload(exc, holders)
        payload.update(fingerprint=fingerprint, repeats=repeats, source=source,
                       repository=self.repository)
        event = {"id": str(uuid.uuid4()), "occurred": payload["timestamp"], "event": EVENT_NAME,
                 "resource": {"prefect.resource.id": f"mendflow.error.{fingerprint}",
                              "prefect.resource.name": payload["type"],
                              "mendflow.repository": self.repository,
                              "mendflow.fingerprint": fingerprint},
                 "payload": payload, "related": []}
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.stats.dropped += 1

    def payload(self, exc: BaseException,
                holders: tuple[BaseException, ...] = ()) -> dict[str, Any]:
        """Type, scrubbed message, frames and the chain of causes (oldest first); for a
        member of an exception group, the groups that hold it (outermost first) and their
        causes come first in the chain, and a member never raised itself takes the frames
        of its group."""
        records = [record for held in (*holders, exc) for record in self._causes(held)]
        last = records.pop()
        if not last["frames"] and holders:
            last["frames"] = records[-1]["frames"]
        return {**last, "chain": records,
                "timestamp": datetime.now(timezone.utc).isoformat()}

    def _causes(self, exc: BaseException) -> list[dict[str, Any]]:
        chain: list[BaseException] = []
        current: BaseException | None = exc
        while current is not None and current not in chain and len(chain) < 10:
            chain.append(current)
            current = current.__cause__ or (None if current.__suppress_context__
                                            else current.__context__)
        return [self._record(e) for e in reversed(chain)]

    def _record(self, exc: BaseException) -> dict[str, Any]:
        name = _type_name(exc)
        frames = [{"file": f.filename, "line": f.lineno, "function": f.name,
                   "source": scrub(f.line or "", 300) or None}
                  for f in traceback.extract_tb(exc.__traceback__, limit=64)]
        return {"type": name, "message": scrub(str(exc), self.max_message_chars),
                "frames": frames}

    # --- the sender thread ----------------------------------------------------------
    def _run(self) -> None:
        self._deliver_spool()
        next_retry = time.monotonic() + self.retry_s
        while not self._stop.is_set():
            try:
                event = self._queue.get(timeout=0.2)
            except queue.Empty:
                event = None
            if event is not None:
                batch = [event]
                while len(batch) < 100:  # one request for what is queued
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                self._inflight = batch
                if not self._post(batch):
                    for item in batch:
                        self._spool(item)
                self._inflight = None
            if time.monotonic() >= next_retry:
                self._deliver_spool()
                next_retry = time.monotonic() + self.retry_s

    def _post(self, events: list[dict[str, Any]], timeout_s: float = 5.0) -> bool:
        if not self.api_url:
            return False
        import httpx

        headers = {"Authorization": f"Bearer {key}"} if (key := os.environ.get(
            "PREFECT_API_KEY")) else {}
        try:
            response = httpx.post(f"{self.api_url.rstrip('/')}/events", json=events,
                                  headers=headers, timeout=timeout_s)
        except Exception:  # noqa: BLE001  (unreachable: spool)
            return False
        if response.status_code < 300:
            self.stats.sent += len(events)
            return True
        return False

    def _spool(self, event: dict[str, Any]) -> None:
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            name = f"{time.time_ns()}-{event['id']}.json"
            tmp = self.spool_dir / f".{name}.tmp"
            tmp.write_text(json.dumps(event), encoding="utf-8")
            tmp.replace(self.spool_dir / name)
            self.stats.spooled += 1
        except OSError:
            self.stats.dropped += 1

    def _deliver_spool(self) -> None:
        try:
            files = sorted(self.spool_dir.glob("*.json"))
        except OSError:
            return
        for path in files[:200]:
            try:
                event = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not self._post([event]):
                return  # still unreachable: try again later
            path.unlink(missing_ok=True)

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait (at most ``timeout_s``) until the queue is empty; for tests and shutdown."""
        deadline = time.monotonic() + timeout_s
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.02)

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Also report the exceptions an asyncio loop's handler receives."""
        _install_asyncio(self, loop)

    def _at_exit(self) -> None:
        """The process is ending: one short attempt to send what is queued, else spool it."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        left = list(self._inflight or [])
        while True:
            try:
                left.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if left and not self._post(left, timeout_s=2.0):
            for event in left:
                self._spool(event)

    def uninstall(self) -> None:
        """Restore the previous hooks and stop the sender (queued events are spooled)."""
        for restore in reversed(self._restore):
            restore()
        self._restore.clear()
        self._at_exit()


def install(repository: str | os.PathLike[str], *, api_url: str | None = None,
            spool_dir: str | os.PathLike[str] | None = None, rate_limit_s: float = 60.0,
            max_message_chars: int = 500, retry_s: float = 10.0, logging_handler: bool = False,
            logger: logging.Logger | None = None,
            loop: asyncio.AbstractEventLoop | None = None) -> Hook:
    """Install the hooks (see the module docstring).

    Args:
        repository: the repository the application runs from (the resource of the events).
        api_url: the Prefect API (``.../api``); None = ``PREFECT_API_URL``.
        spool_dir: where undeliverable events wait; None = ``$MENDFLOW_HOME/spool``
            (default ``~/.mendflow/spool``).
        rate_limit_s: at most one event per fingerprint in this many seconds.
        max_message_chars: the message is cut to this many characters.
        retry_s: seconds between attempts to deliver the spool.
        logging_handler: also report records logged with ``logger.exception``.
        logger: the logger the handler is added to (default: the root logger).
        loop: an asyncio loop whose exception handler to set (None: none).

    Returns:
        The :class:`Hook`.
    """
    import mendflow.core.error_groups  # noqa: F401  (imported now, not at the first exception)

    home = Path(os.environ.get("MENDFLOW_HOME") or Path.home() / ".mendflow")
    hook = Hook(repository=str(repository), api_url=api_url or os.environ.get("PREFECT_API_URL"),
                spool_dir=Path(spool_dir) if spool_dir else home / "spool",
                rate_limit_s=rate_limit_s, max_message_chars=max_message_chars, retry_s=retry_s)
    _install_sys(hook)
    _install_threading(hook)
    if loop is not None:
        hook.watch(loop)
    if logging_handler:
        handler = _ExceptionHandler(hook)
        target = logger or logging.getLogger()
        target.addHandler(handler)
        hook._restore.append(lambda: target.removeHandler(handler))
    hook._thread = threading.Thread(target=hook._run, name="mendflow-heal-events", daemon=True)
    hook._thread.start()
    atexit.register(hook._at_exit)
    return hook


def _install_sys(hook: Hook) -> None:
    previous = sys.excepthook

    def excepthook(kind: type[BaseException], exc: BaseException,
                   tb: TracebackType | None) -> None:
        if not issubclass(kind, KeyboardInterrupt):
            hook.report(exc, "excepthook")
        previous(kind, exc, tb)

    sys.excepthook = excepthook
    hook._restore.append(lambda: setattr(sys, "excepthook", previous))


def _install_threading(hook: Hook) -> None:
    previous = threading.excepthook

    def excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and not isinstance(args.exc_value, SystemExit):
            hook.report(args.exc_value, "thread")
        previous(args)

    threading.excepthook = excepthook
    hook._restore.append(lambda: setattr(threading, "excepthook", previous))


def _install_asyncio(hook: Hook, loop: asyncio.AbstractEventLoop) -> None:
    previous = loop.get_exception_handler()

    def handler(the_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            hook.report(exc, "asyncio")
        if previous is not None:
            previous(the_loop, context)
        else:
            the_loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    hook._restore.append(lambda: loop.set_exception_handler(previous))


class _ExceptionHandler(logging.Handler):
    """Reports the exception of records logged with ``exc_info`` (``logger.exception``)."""

    def __init__(self, hook: Hook):
        super().__init__(logging.ERROR)
        self.hook = hook

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and isinstance(record.exc_info[1], BaseException):
            self.hook.report(record.exc_info[1], "logging")
