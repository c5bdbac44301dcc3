"""The ``mendflow`` command line (typer + rich, the same stack as Prefect's CLI).

Exit codes (see README, "Exit codes"): 0 success; 1 general error; 2 a gate
failed or patches were rejected; 3 validation could not run; 130 interrupted.
With ``--json``, stdout carries exactly one JSON object; progress and every
log line (Prefect's included) go to stderr.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mendflow.cli.supervisor import Supervisor
from mendflow.core.errors import MendflowError
from mendflow.core.summary import delivered_text, suite_text
from mendflow.infra.prefect_api import EarlyServer, spawn_server
from mendflow.infra.progress import PROGRESS_LOGGER

app = typer.Typer(help="mendflow: maintenance missions for Python repositories, on Prefect.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
mission_app = typer.Typer(help="Run, inspect and roll back maintenance missions.",
                          no_args_is_help=True)
app.add_typer(mission_app, name="mission")
err = Console(stderr=True, soft_wrap=True, highlight=False)
"""stderr: progress and errors. Lines are never wrapped (a path or a command in
an error stays one piece, to copy), and text from outside is printed with
:func:`rich.markup.escape`, so a ``[`` in a message is not taken for markup."""


def _prefect_defaults(verbose: bool) -> None:
    """Offline-friendly Prefect settings, applied before Prefect is imported."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # The ephemeral API migrates a new database on first use: 20 s is too short on a busy box.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    if not verbose:
        # Logs still reach the Prefect API (and the UI); only the console is quiet.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")


_EARLY_API: EarlyServer | None = None
_ADOPTED_API: EarlyServer | None = None


def _start_prefect_api() -> None:
    """Boot Prefect's temporary API server now, while the flows import (see
    :mod:`mendflow.infra.prefect_api`); :func:`_wait_for_prefect_api` hands it to Prefect."""
    global _EARLY_API
    if _EARLY_API is None:
        _EARLY_API = spawn_server()


def _wait_for_prefect_api() -> None:
    """Make the early server Prefect's own (no-op when none was started)."""
    global _EARLY_API, _ADOPTED_API
    if _EARLY_API is not None:
        if _EARLY_API.adopt():
            _ADOPTED_API = _EARLY_API
        _EARLY_API = None


class _ProgressHandler(logging.Handler):
    """Renders mendflow progress events as lines on stderr (and tells the supervisor)."""

    def __init__(self, console: Console, supervisor: Supervisor):
        super().__init__(logging.INFO)
        self.console = console
        self.supervisor = supervisor

    def emit(self, record: logging.LogRecord) -> None:
        stage = getattr(record, "stage", "mission")
        self.supervisor.progress(stage, record.getMessage(), getattr(record, "mission_id", None))
        self.console.print(f"[dim]{stage:>9}[/] {escape(record.getMessage())}")


def _fail(error: MendflowError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(str(error))}")
    return typer.Exit(error.exit_code)


def _run_flow(parameters: dict, *, as_json: bool, verbose: bool) -> None:
    """Run the mission flow in this process, render progress, exit with its code."""
    _prefect_defaults(verbose)
    supervisor = Supervisor(err, mission_id=parameters.get("mission_id"))
    handler = _ProgressHandler(err, supervisor)
    logging.getLogger(PROGRESS_LOGGER).addHandler(handler)
    try:
        with supervisor.signals():  # SIGINT/SIGTERM: a bounded stop, exit 130
            from mendflow.flows.mission import maintenance_mission

            _wait_for_prefect_api()
            supervisor.watch_api(_ADOPTED_API)  # its death: one line, exit within 15 s
            result = maintenance_mission(**parameters)
    except MendflowError as error:
        failure = _fail(error)
        supervisor.finish(error.exit_code)
        raise failure from None
    except KeyboardInterrupt:
        supervisor.interrupted()  # one line, exit 130 (os._exit: no exit-time drain)
    except Exception as error:  # the CLI boundary: one clear line, never a traceback
        err.print(f"[bold red]error:[/] unexpected {type(error).__name__}: {escape(str(error))}\n"
                  "  hint: re-run with --verbose for Prefect's logs; the mission is resumable "
                  "with `mendflow mission resume <id>`")
        supervisor.finish(1)
        raise typer.Exit(1) from None
    finally:
        logging.getLogger(PROGRESS_LOGGER).removeHandler(handler)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        _print_summary(result)
    supervisor.finish(result.exit_code)
    raise typer.Exit(result.exit_code)


@mission_app.command("run")
def run_mission(
    path: Path = typer.Argument(Path("."), help="a repository, or a directory or file inside one"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
    scope: str | None = typer.Option(None, help="auto | project | directory | file"),
    dry_run: bool = typer.Option(False, "--dry-run", help="detect and propose; commit nothing"),
    backup_only: bool = typer.Option(False, "--backup-only", help="record baseline and backups"),
    max_iterations: int | None = typer.Option(None, min=1, help="M-T-D-V cycles at most"),
    target_score: float | None = typer.Option(None, min=0, max=100, help="stop at this score"),
    mission_id: str | None = typer.Option(None, help="choose the mission id"),
    fixer: str | None = typer.Option(None, help="ruff (offline) | anthropic | chain (ruff, then Claude)"),
    autonomy: str | None = typer.Option(
        None, help="interactive | semi_autonomous | autonomous | full_autonomous: deliver to "
                   "the target branch under that approval policy"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show Prefect's logs on stderr"),
) -> None:
    """Run one maintenance mission (one Prefect flow run) on PATH."""
    _prefect_defaults(verbose)
    _start_prefect_api()
    err.print(f"[bold]mendflow[/] mission on {escape(str(path.resolve()))}")
    _run_flow(dict(path=str(path), config_file=str(config) if config else None,
                   mission_id=mission_id, scope=scope, dry_run=dry_run or None,
                   backup_only=backup_only or None, max_iterations=max_iterations,
                   target_score=target_score, fixer=fixer, autonomy=autonomy),
              as_json=as_json, verbose=verbose)


@mission_app.command("resume")
def resume_mission(
    mission: str = typer.Argument(..., help="the mission id"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show Prefect's logs on stderr"),
) -> None:
    """Resume an interrupted mission: completed steps are re-used (Cached), the rest runs."""
    _prefect_defaults(verbose)
    from mendflow.infra.missions import read_mission

    try:
        record = read_mission(mission)
    except MendflowError as error:
        raise _fail(error) from None
    _start_prefect_api()
    import mendflow.flows.mission  # noqa: F401  (imported while the Prefect API starts)
    from mendflow.infra.flow_runs import mark_crashed_if_dead, resume_parameters

    _wait_for_prefect_api()
    try:
        crashed = mark_crashed_if_dead(record)
        parameters = resume_parameters(mission)
    except MendflowError as error:
        raise _fail(error) from None
    if crashed:
        err.print(f"flow run {crashed} had no live process: marked Crashed")
    err.print(f"[bold]mendflow[/] resuming mission {escape(mission)}")
    _run_flow(parameters, as_json=as_json, verbose=verbose)


@mission_app.command("list")
def list_missions_command(
    as_json: bool = typer.Option(False, "--json", help="print a JSON list on stdout"),
) -> None:
    """List missions with their state, age, repository and progress."""
    _prefect_defaults(False)
    from mendflow.infra.flow_runs import listing

    rows = listing()
    if as_json:
        typer.echo(json.dumps([row.model_dump(mode="json") for row in rows], indent=2))
        return
    table = Table(title="missions")
    for column in ("mission", "status", "age", "steps", "repository"):
        table.add_column(column)
    for row in rows:
        steps = f"{row.steps_done}/{row.steps_started}" if row.steps_started else "-"
        table.add_row(row.mission_id, row.status, _age(row.age_s), steps, row.repository)
    Console().print(table)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _print_summary(result) -> None:
    table = Table(title=f"mission {result.mission_id}", show_header=False)
    by_source = Counter(f.source for f in result.findings)
    statuses = Counter(p.status for p in result.patches)
    table.add_row("status", result.status)
    table.add_row("findings", ", ".join(f"{k} {v}" for k, v in sorted(by_source.items())) or "none")
    table.add_row("patches", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())) or "none")
    table.add_row("score", f"{result.quality_score.before} → {result.quality_score.after}")
    table.add_row("tests", f"{suite_text(result.tests_before)} → {suite_text(result.tests_after)}")
    timings = result.timings
    if timings.baseline_s or timings.validations:
        spent = sum(v.duration_s for v in timings.validations)
        table.add_row("time", f"baseline {timings.baseline_s:.1f} s, "
                              f"{len(timings.validations)} validation(s) {spent:.1f} s")
    table.add_row("stopped", result.stop_reason)
    table.add_row("delivered", delivered_text(result))
    table.add_row("branch", result.branch)
    table.add_row("worktree", result.worktree or "")
    table.add_row("report", result.report_dir)
    err.print(table)


@mission_app.command("rollback")
def rollback(
    mission: str = typer.Argument(..., help="the mission id"),
    to: str | None = typer.Option(None, "--to", help="commit to move the branch back to"),
) -> None:
    """Move the mission branch back (to its base commit by default)."""
    from mendflow.infra.layout import worktree_dir
    from mendflow.infra.missions import read_mission
    from mendflow.tasks.vcs import rollback_mission

    try:
        record = read_mission(mission)
        worktree = Path(record.worktree) if record.worktree else worktree_dir(mission)
        from mendflow.cli.audit import branch_tip, record_revert

        old_tip = branch_tip(Path(record.repository), mission)
        tip = rollback_mission(Path(record.repository), mission, to,
                               worktree if worktree.exists() else None)
    except MendflowError as error:
        raise _fail(error) from None
    err.print(f"mendflow/{mission} now at {tip}")
    for line in record_revert(Path(record.repository), mission, old_tip, tip):
        err.print(escape(line))


def learning_commands() -> None:
    """``stats``, ``audit`` and ``analyze``: what mendflow learned, its audit trail, self-analysis."""
    from mendflow.cli import analyze, audit, stats

    for module in (stats, audit, analyze):
        module.register(app)


def _register_commands() -> None:
    """Commands that live in their own modules."""
    from mendflow.cli import approvals, config, doctor, evolve, fleet, heal
    from mendflow.deployments import serve

    config.register(app)
    doctor.register(app)
    approvals.register(app)  # approvals, approve, reject
    serve.register(app)
    learning_commands()  # stats, audit verify/show, analyze (issue 15)
    fleet.register(app)  # fleet deploy | run | status
    evolve.register(app)  # evolve serve | run | history | status
    heal.register(app)  # heal scan, run, list, serve


_register_commands()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
