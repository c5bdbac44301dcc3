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
from rich.table import Table

from mendflow.errors import MendflowError, RepositoryError
from mendflow.progress import PROGRESS_LOGGER

app = typer.Typer(help="mendflow: maintenance missions for Python repositories, on Prefect.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
mission_app = typer.Typer(help="Run, inspect and roll back maintenance missions.",
                          no_args_is_help=True)
app.add_typer(mission_app, name="mission")
err = Console(stderr=True)


def _prefect_defaults(verbose: bool) -> None:
    """Offline-friendly Prefect settings, applied before Prefect is imported."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if not verbose:
        # Logs still reach the Prefect API (and the UI); only the console is quiet.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")


class _ProgressHandler(logging.Handler):
    """Renders mendflow progress events as lines on stderr."""

    def __init__(self, console: Console):
        super().__init__(logging.INFO)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        stage = getattr(record, "stage", "mission")
        self.console.print(f"[dim]{stage:>9}[/] {record.getMessage()}", highlight=False)


def _fail(error: MendflowError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {error}", highlight=False)
    return typer.Exit(error.exit_code)


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
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show Prefect's logs on stderr"),
) -> None:
    """Run one maintenance mission (one Prefect flow run) on PATH."""
    _prefect_defaults(verbose)
    handler = _ProgressHandler(err)
    logging.getLogger(PROGRESS_LOGGER).addHandler(handler)
    try:
        from flows.mission import maintenance_mission

        err.print(f"[bold]mendflow[/] mission on {path.resolve()}", highlight=False)
        result = maintenance_mission(
            path=str(path), config_file=str(config) if config else None, mission_id=mission_id,
            scope=scope, dry_run=dry_run or None, backup_only=backup_only or None,
            max_iterations=max_iterations, target_score=target_score, fixer=fixer,
        )
    except MendflowError as error:
        raise _fail(error) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted:[/] the sandbox was left consistent; "
                  "the mission branch keeps every accepted commit")
        raise typer.Exit(130) from None
    finally:
        logging.getLogger(PROGRESS_LOGGER).removeHandler(handler)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        _print_summary(result)
    raise typer.Exit(result.exit_code)


def _print_summary(result) -> None:
    table = Table(title=f"mission {result.mission_id}", show_header=False)
    by_source = Counter(f.source for f in result.findings)
    statuses = Counter(p.status for p in result.patches)
    table.add_row("status", result.status)
    table.add_row("findings", ", ".join(f"{k} {v}" for k, v in sorted(by_source.items())) or "none")
    table.add_row("patches", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())) or "none")
    table.add_row("score", f"{result.quality_score.before} → {result.quality_score.after}")
    table.add_row("stopped", result.stop_reason)
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
    from mendflow.state import state_dir
    from tasks.vcs import rollback_mission

    try:
        session = state_dir() / "missions" / mission / "report" / "session_data.json"
        if not session.is_file():
            raise RepositoryError("no such mission (no session_data.json)", subject=mission,
                                  hint=f"check the id; missions live in {state_dir() / 'missions'}")
        data = json.loads(session.read_text(encoding="utf-8"))
        worktree = Path(data["worktree"]) if data.get("worktree") else None
        tip = rollback_mission(Path(data["repository"]), mission, to, worktree)
    except MendflowError as error:
        raise _fail(error) from None
    err.print(f"mendflow/{mission} now at {tip}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
