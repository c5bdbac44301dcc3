"""A mission run's bounded exits: Ctrl-C, SIGTERM, and the death of Prefect's API server.

A terminal's Ctrl-C sends SIGINT to the whole foreground process group. The
temporary Prefect API server runs in a session of its own
(:mod:`mendflow.infra.prefect_api`), and so does every tool
(:mod:`mendflow.infra.runner`), so the signal reaches only the CLI. The
:class:`Supervisor` then, within :data:`INTERRUPT_DEADLINE_S` seconds:

1. stops every tool process group (the ones in Prefect's worker threads too),
   so no thread waits for a test suite, and no killed tool's output is cached;
2. lets the ``KeyboardInterrupt`` unwind the flow: a half-validated candidate
   is rolled back and Prefect records the flow run as Crashed on the server,
   which is still up;
3. drains Prefect's event and log workers for at most
   :data:`DRAIN_TIMEOUT_S` seconds, stops the API server, prints one line (where
   the mission stopped and the resume command) and leaves with exit code 130,
   through ``os._exit`` so that no exit-time drain can hang. A watchdog thread
   does the same if the unwinding takes too long, and a second Ctrl-C leaves
   at once.

If the API server dies while a mission runs, a watcher thread notices within a
second, stops the tools, prints one line and leaves with exit code 1
(:data:`API_GONE_EXIT`) within :data:`API_GONE_DEADLINE_S` seconds; the dead
flow run is marked Crashed by ``mendflow mission resume``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

from mendflow.infra.layout import StateLayout
from mendflow.infra.missions import mark_interrupted
from mendflow.infra.prefect_api import EarlyServer, drain_services, settle_records
from mendflow.infra.runner import stop_all_processes

INTERRUPTED_EXIT = 130
API_GONE_EXIT = 1
INTERRUPT_DEADLINE_S = 8.0
"""Seconds after a Ctrl-C before the watchdog leaves, whatever the flow is doing."""
API_GONE_DEADLINE_S = 10.0
"""Seconds after the API server's death is noticed before the process leaves."""
DRAIN_TIMEOUT_S = 3.0
"""Seconds for Prefect's event and log workers to flush on the way out."""
TOOLS_GRACE_S = 1.5
"""Seconds between SIGTERM and SIGKILL to the tools' process groups."""
_WATCH_INTERVAL_S = 0.25


class Supervisor:
    """Watches one mission run of the CLI and makes every way out bounded.

    Attributes:
        console: where the final line goes (stderr).
        mission_id: the mission's id once known (from the progress events).
        stage: the last progress stage (``detect``, ``validate``, ``approve`` ...).
        step: the last progress message.
    """

    def __init__(self, console: Console, mission_id: str | None = None):
        self.console = console
        self.mission_id = mission_id
        self.stage: str | None = None
        self.step: str | None = None
        self.server: EarlyServer | None = None
        self._leaving = threading.Lock()
        self._interrupted = False
        self._signal: str | None = None
        self._done = threading.Event()

    # --- what the CLI tells it ----------------------------------------------------

    def progress(self, stage: str, message: str, mission_id: str | None) -> None:
        """Record a progress event (called by the CLI's progress handler)."""
        self.stage, self.step = stage, message
        if mission_id:
            self.mission_id = mission_id

    def watch_api(self, server: EarlyServer | None) -> None:
        """Watch the temporary API server: its death ends the run within seconds.

        Args:
            server: the adopted early server, or None (nothing to watch).
        """
        self.server = server
        if server is not None:
            threading.Thread(target=self._watch, name="mendflow-api-watch", daemon=True).start()

    @contextmanager
    def signals(self) -> Iterator[None]:
        """Handle SIGINT and SIGTERM as an interruption while the flow runs."""
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            self._done.set()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # --- the ways out ---------------------------------------------------------------

    def interrupted(self) -> NoReturn:
        """The flow unwound after a Ctrl-C: flush, stop the server, say where, leave (130)."""
        self._done.set()
        self._leave(INTERRUPTED_EXIT, self.interruption_line(), drain=True)

    def finish(self, code: int) -> None:
        """The flow returned: flush Prefect's workers (bounded), let the temporary server
        record what they sent (:func:`~mendflow.infra.prefect_api.settle_records`), and stop
        watching.

        Args:
            code: the exit code the CLI is about to leave with.

        Leaves with ``os._exit(code)`` only if the workers could not flush in
        time (the server is gone), because Prefect's own exit-time drain would hang.
        """
        self._done.set()
        if self.server is None:
            return
        if not drain_services(DRAIN_TIMEOUT_S):
            self._flush()
            self.server.stop(grace_s=2.0)
            os._exit(code)
        self._flush()  # the result is out before the wait
        settle_records(self.server.api_url)  # its database gets every task run before it stops

    def interruption_line(self) -> str:
        """One line: where the mission stopped, and how to resume it."""
        where = f" during {self.stage} ({self.step})" if self.stage else ""
        if self.mission_id is None:
            return (f"[yellow]interrupted[/]{escape(where)} before the mission was registered; "
                    "nothing to resume: run it again")
        return (f"[yellow]interrupted:[/] mission {escape(self.mission_id)} stopped"
                f"{escape(where)}; the sandbox is consistent; resume with: "
                f"mendflow mission resume {escape(self.mission_id)}")

    def api_gone_line(self, returncode: int | None) -> str:
        """One line: the API server died, where the mission stopped, how to resume."""
        how = (f"was killed by signal {-returncode}" if returncode is not None and returncode < 0
               else f"exited with status {returncode}")
        where = f" during {self.stage} ({self.step})" if self.stage else ""
        resume = (f"resume with: mendflow mission resume {escape(self.mission_id)}"
                  if self.mission_id else "run it again")
        pid = self.server.process.pid if self.server else "?"
        return (f"[bold red]error:[/] Prefect's temporary API server (pid {pid}) "
                f"{how}; mission {escape(self.mission_id or '?')} stopped{escape(where)}; {resume}")

    # --- internals ------------------------------------------------------------------

    def _on_signal(self, signum, frame) -> None:
        if self._interrupted:  # a second Ctrl-C: leave now
            self._leave(INTERRUPTED_EXIT, self.interruption_line(), drain=False)
        self._interrupted = True
        self._signal = signal.Signals(signum).name
        logging.disable(logging.CRITICAL)  # no Prefect log dump on the terminal
        threading.Thread(target=stop_all_processes, args=(TOOLS_GRACE_S,),
                         name="mendflow-stop-tools", daemon=True).start()
        threading.Thread(target=self._watchdog, name="mendflow-watchdog", daemon=True).start()
        raise KeyboardInterrupt

    def _watchdog(self) -> None:
        time.sleep(INTERRUPT_DEADLINE_S)
        self._leave(INTERRUPTED_EXIT, self.interruption_line(), drain=False)

    def _watch(self) -> None:
        server = self.server
        assert server is not None
        while not self._done.wait(_WATCH_INTERVAL_S):
            code = server.process.poll()
            if code is None or self._done.is_set() or self._interrupted:
                continue
            logging.disable(logging.CRITICAL)
            threading.Timer(API_GONE_DEADLINE_S, os._exit, args=(API_GONE_EXIT,)).start()
            stop_all_processes(TOOLS_GRACE_S)
            self._leave(API_GONE_EXIT, self.api_gone_line(code), drain=False)

    def _leave(self, code: int, line: str, *, drain: bool) -> NoReturn:
        """Print ``line``, stop the tools and the server, leave with ``code`` (``os._exit``)."""
        if not self._leaving.acquire(blocking=False):  # another thread is leaving already
            while True:
                time.sleep(60)
        logging.disable(logging.CRITICAL)
        stop_all_processes(TOOLS_GRACE_S)
        if code == INTERRUPTED_EXIT and self.mission_id and self._signal:
            try:  # `mission list`: crashed, interrupted (Ctrl-C)
                mark_interrupted(self.mission_id, self._signal, StateLayout.resolve())
            except Exception:  # noqa: BLE001 - never in the way of leaving
                pass
        if drain and self.server is not None and self.server.process.poll() is None:
            if drain_services(DRAIN_TIMEOUT_S):
                settle_records(self.server.api_url, timeout_s=1.5)  # inside the 10 s promise
        self.console.print(line)
        self._flush()
        if self.server is not None:
            self.server.stop(grace_s=2.0)
        os._exit(code)

    @staticmethod
    def _flush() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
