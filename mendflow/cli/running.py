"""Running a flow from the command line: Prefect's early API server, progress lines,
and the :class:`~mendflow.cli.supervisor.Supervisor`'s bounded exits.

Every command that runs a flow in its own process (``mission run``, ``mission
resume``, ``heal run``, ``evolve run``) goes through :func:`run_flow`, so each one
has the same Ctrl-C behaviour (exit 130 within seconds, one line), the same
one-line report when Prefect's temporary API server dies, and the same CLI
boundary: a :class:`~mendflow.core.errors.MendflowError` or any other exception
becomes one ``error:`` line and an exit code, never a traceback.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Protocol, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape

from mendflow.cli.supervisor import Supervisor
from mendflow.core.errors import MendflowError
from mendflow.infra.prefect_api import EarlyServer, spawn_server
from mendflow.infra.progress import PROGRESS_LOGGER

err = Console(stderr=True, soft_wrap=True, highlight=False)
"""stderr: progress and errors. Lines are never wrapped (a path or a command in
an error stays one piece, to copy), and text from outside is printed with
:func:`rich.markup.escape`, so a ``[`` in a message is not taken for markup."""


class FlowResult(Protocol):
    """What a flow run by :func:`run_flow` returns: a pydantic model with an exit code."""

    @property
    def exit_code(self) -> int: ...

    def model_dump_json(self, *, indent: int | None = None) -> str: ...


ResultT = TypeVar("ResultT", bound=BaseModel)


def prefect_defaults(verbose: bool) -> None:
    """Offline-friendly Prefect settings, applied before Prefect is imported.

    Args:
        verbose: keep Prefect's console log handler (else only CRITICAL reaches stderr;
            the logs still reach the Prefect API and its UI).
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # The ephemeral API migrates a new database on first use: 20 s is too short on a busy box.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        # Prefect's internal services (``prefect._internal``: the events and log workers)
        # print through their own ``debug`` handler: a dead API server's "EventsWorker
        # failed to process item" dump must not reach the terminal either.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_DEBUG_LEVEL", "CRITICAL")


_EARLY_API: EarlyServer | None = None
_ADOPTED_API: EarlyServer | None = None


def start_prefect_api() -> None:
    """Boot Prefect's temporary API server now, while the flows import (see
    :mod:`mendflow.infra.prefect_api`); :func:`wait_for_prefect_api` hands it to Prefect."""
    global _EARLY_API
    if _EARLY_API is None and _ADOPTED_API is None:
        _EARLY_API = spawn_server()


def wait_for_prefect_api() -> None:
    """Make the early server Prefect's own (no-op when none was started)."""
    global _EARLY_API, _ADOPTED_API
    if _EARLY_API is not None:
        if _EARLY_API.adopt():
            _ADOPTED_API = _EARLY_API
        _EARLY_API = None


class ProgressHandler(logging.Handler):
    """Renders mendflow progress events as lines on stderr (and tells the supervisor)."""

    def __init__(self, console: Console, supervisor: Supervisor):
        super().__init__(logging.INFO)
        self.console = console
        self.supervisor = supervisor

    def emit(self, record: logging.LogRecord) -> None:
        stage = getattr(record, "stage", "mission")
        self.supervisor.progress(stage, record.getMessage(), getattr(record, "mission_id", None))
        self.console.print(f"[dim]{stage:>9}[/] {escape(record.getMessage())}")


def fail(error: MendflowError) -> typer.Exit:
    """Print ``error`` as one line on stderr; return the ``typer.Exit`` to raise."""
    err.print(f"[bold red]error:[/] {escape(str(error))}")
    return typer.Exit(error.exit_code)


def run_flow(load: Callable[[], Callable[[], ResultT]], *, as_json: bool, verbose: bool,
             render: Callable[[ResultT], None], mission_id: str | None = None) -> None:
    """Run a flow in this process, render its progress and result, exit with its code.

    Args:
        load: imports the flow (while the early API server boots) and returns a
            call that runs it and returns its result (a pydantic model with an
            ``exit_code`` property).
        as_json: print the result's JSON on stdout (else ``render`` it).
        verbose: show Prefect's logs on stderr.
        render: prints the human summary of the result on stderr.
        mission_id: the mission's id, if known before the flow starts (for the
            Ctrl-C line's resume command).

    Raises:
        typer.Exit: always; with the result's ``exit_code``, a MendflowError's code,
            or 1 for an unexpected error. A Ctrl-C or the API server's death leaves
            through the supervisor (exit 130 or 1, ``os._exit``).
    """
    prefect_defaults(verbose)
    supervisor = Supervisor(err, mission_id=mission_id)
    handler = ProgressHandler(err, supervisor)
    logging.getLogger(PROGRESS_LOGGER).addHandler(handler)
    try:
        with supervisor.signals():  # SIGINT/SIGTERM: a bounded stop, exit 130
            call = load()
            wait_for_prefect_api()
            supervisor.watch_api(_ADOPTED_API)  # its death: one line, exit within 15 s
            result = call()
    except MendflowError as error:
        failure = fail(error)
        supervisor.finish(error.exit_code)
        raise failure from None
    except KeyboardInterrupt:
        supervisor.interrupted()  # one line, exit 130 (os._exit: no exit-time drain)
    except Exception as error:  # the CLI boundary: one clear line, never a traceback
        err.print(f"[bold red]error:[/] unexpected {type(error).__name__}: {escape(str(error))}\n"
                  "  hint: re-run with --verbose for Prefect's logs; a mission is resumable "
                  "with `mendflow mission resume <id>`")
        supervisor.finish(1)
        raise typer.Exit(1) from None
    finally:
        logging.getLogger(PROGRESS_LOGGER).removeHandler(handler)
    code = result.exit_code  # type: ignore[attr-defined]
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        render(result)
    supervisor.finish(code)
    raise typer.Exit(code)
