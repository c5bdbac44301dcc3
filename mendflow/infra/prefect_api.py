"""Start Prefect's temporary API server early, before Prefect itself is imported.

Without ``PREFECT_API_URL``, Prefect 3 runs each process against a temporary
API server ("ephemeral mode", :class:`prefect.server.api.server.SubprocessASGIServer`):
a ``uvicorn`` subprocess that it starts on the first client call, after this
process has imported the flows and Prefect's server module. That start is most
of the fixed cost of a short command such as ``mendflow mission resume``.

:func:`spawn_server` starts the very same subprocess (the same command line and
environment Prefect uses) as the CLI's first act, so it boots while the flows
import; :meth:`EarlyServer.adopt` then points Prefect's settings at it, so
every client in this process, in every thread, uses it (without importing
Prefect's server module here) and it is stopped at exit. When a profile names
a server, or the early start fails, the early server is stopped and Prefect
behaves exactly as without it.

The server runs in a session of its own (``start_new_session=True``): a
terminal's Ctrl-C, which signals the whole foreground process group, does not
reach it, so it outlives the flow long enough to record the flow run's final
state; the CLI then stops it (:meth:`EarlyServer.stop`). :func:`drain_services`
bounds the exit-time drain of Prefect's event and log workers, which otherwise
waits without end when the server is gone.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
              "PREFECT__SERVER_FINAL": "1"}
"""What Prefect sets for its temporary server (``SubprocessASGIServer._run_uvicorn_command``)."""


SETTLE_TIMEOUT_S = 10.0
"""How long the CLI waits at exit for its temporary server to record what it was sent, seconds."""
SETTLE_QUIET_S = 0.5
"""How long the count of recorded task runs must stay unchanged to count as settled, seconds."""


@dataclass
class EarlyServer:
    """A temporary Prefect API server started before Prefect was imported.

    Attributes:
        port: its TCP port on 127.0.0.1.
        process: the ``python -m uvicorn ... prefect.server.api.server:create_app`` child.
    """

    port: int
    process: subprocess.Popen[bytes]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def adopt(self) -> bool:
        """Wait until the server answers, then make it the API of every Prefect client here.

        Must run before the first Prefect client call of the process. Prefect's
        process-wide settings (``prefect.context.GLOBAL_SETTINGS_CONTEXT``) get
        ``api.url`` = this server, as if ``PREFECT_API_URL`` named it (the
        environment is left alone, so child processes do not inherit a server
        that dies with this process). Prefect therefore never imports its server
        module (``prefect.server.api.server``: FastAPI, the ORM and every route,
        seconds of CPU) in this process: the subprocess serves, this process is
        only a client. The server is stopped at exit (:func:`spawn_server`).

        Returns:
            True when Prefect will use it; False when it was stopped instead (a
            profile names a server, ephemeral mode is off, or the server did not
            come up within ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``):
            Prefect then does what it does without it.
        """
        import prefect.context
        from prefect.settings import PREFECT_API_URL, get_current_settings

        settings = get_current_settings()
        if settings.api.url or not settings.server.ephemeral.enabled:
            self.stop()
            return False
        if not self._wait_healthy(float(settings.server.ephemeral.startup_timeout_seconds)):
            self.stop()
            return False
        root = prefect.context.GLOBAL_SETTINGS_CONTEXT
        adopted = root.settings.copy_with_update(updates={PREFECT_API_URL: self.api_url})
        adopted.ui_url = None  # a temporary server has no UI (Prefect infers one from api.url)
        prefect.context.GLOBAL_SETTINGS_CONTEXT = root.model_copy(update={"settings": adopted})
        global _ADOPTED_URL
        _ADOPTED_URL = self.api_url
        return True

    def _wait_healthy(self, timeout_s: float) -> bool:
        import httpx

        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    log.info("the early Prefect API server exited with %s", self.process.returncode)
                    return False
                try:
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        return False

    def stop(self, grace_s: float = 5.0) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL after ``grace_s``
        seconds) and reap it."""
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait()


_ADOPTED_URL: str | None = None


def adopted_api_url() -> str | None:
    """The API URL of the temporary server this process adopted (None: none was)."""
    return _ADOPTED_URL


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # the server leads its own session and group
    except (ProcessLookupError, PermissionError):
        pass


def drain_services(timeout_s: float) -> bool:
    """Flush Prefect's event and log workers, waiting at most ``timeout_s`` seconds.

    Prefect drains them at interpreter exit (``_QueueServiceBase.drain`` from
    ``threading._shutdown``) with no time limit: with its API server gone it
    retries for minutes. Draining here first leaves that exit-time drain nothing
    to do; a False return means the process should leave with ``os._exit``.

    Args:
        timeout_s: seconds to wait for all of them together.

    Returns:
        True when every worker finished its queue within the time.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    deadline = time.monotonic() + timeout_s
    for service in (APILogWorker, EventsWorker):
        left = max(0.0, deadline - time.monotonic())
        _done, not_done = service.drain_all(timeout=left, at_exit=True)  # type: ignore[misc]
        if not_done:
            return False
    return True


def settle_records(api_url: str, timeout_s: float = SETTLE_TIMEOUT_S,
                   quiet_s: float = SETTLE_QUIET_S) -> bool:
    """Wait until the temporary server has written down what this process sent it.

    The server records task runs from the events it receives, through an in-memory queue:
    stopping it while that queue still holds events loses those task runs from its database
    (a mission's resumed replay, stopped at once, kept 108 of its 212). This polls the
    number of task runs recorded (``POST /task_runs/count``) until it stays the same for
    ``quiet_s`` seconds.

    Args:
        api_url: the server's API URL.
        timeout_s: give up after this many seconds (the server is stopped anyway).
        quiet_s: how long the count must stay unchanged, seconds.

    Returns:
        True when the count settled within ``timeout_s``.
    """
    import httpx

    deadline, seen, since = time.monotonic() + timeout_s, None, time.monotonic()
    with httpx.Client(base_url=api_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                count = client.post("/task_runs/count", json={}).json()
            except (httpx.HTTPError, ValueError):
                return False
            if count != seen:
                seen, since = count, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return True
            time.sleep(0.1)
    return False


def spawn_server() -> EarlyServer | None:
    """Start Prefect's temporary API server now, unless ``PREFECT_API_URL`` is set.

    Returns:
        The starting server (call :meth:`EarlyServer.adopt` before using
        Prefect), or None when the environment names an API or the start failed.
    """
    if os.environ.get("PREFECT_API_URL"):
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "error",
               "--lifespan", "on"]
    try:
        process = subprocess.Popen(command, env={**os.environ, **SERVER_ENV},
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=_death_signal())
    except OSError as err:
        log.info("could not start Prefect's API server early: %s", err)
        return None
    server = EarlyServer(port=port, process=process)
    atexit.register(server.stop, 2.0)  # whatever way this process ends, the server goes too
    return server


def _death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to SIGTERM the server when the CLI dies, even by
    SIGKILL (``prctl(PR_SET_PDEATHSIG)``), so no orphaned server keeps the CLI's pipes
    open. libc is looked up here, in the parent: nothing but the call runs after fork."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1
