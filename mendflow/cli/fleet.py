"""``mendflow fleet deploy | run | status``: many repositories on a Prefect server's work pool.

All three talk to the Prefect API named by ``PREFECT_API_URL`` (a ``prefect
server start``, PostgreSQL-backed in production); the missions run on the pool's
workers (``prefect worker start --pool NAME``), never in this process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mendflow.core.errors import MendflowError

fleet_app = typer.Typer(help="Run missions on many repositories through a Prefect work pool.",
                        no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def _defaults() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    # Prefect's client retries 429/502/503 with backoff; a busy server on PostgreSQL also
    # answers 500 for a query that timed out: retry that too, before giving up with one line
    os.environ.setdefault("PREFECT_CLIENT_RETRY_EXTRA_CODES", "500")


def _fail(error: MendflowError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(str(error))}")
    return typer.Exit(error.exit_code)


def _require_server() -> None:
    """Fleets need a server that workers share: an ephemeral API would see no worker."""
    from mendflow.core.errors import EngineUnavailable

    if not os.environ.get("PREFECT_API_URL"):
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            raise EngineUnavailable("no Prefect server is configured", subject="PREFECT_API_URL",
                                    hint="set PREFECT_API_URL to the server the workers use "
                                         "(http://HOST:4200/api)")


@fleet_app.command("deploy")
def deploy_command(
    pool: str = typer.Option(..., "--pool", help="the work pool (created as type process)"),
    heartbeat_s: int = typer.Option(30, "--heartbeat-s", min=30,
                                    help="seconds between a run's heartbeats (crash detection)"),
    fleet_file: Path | None = typer.Option(None, "--fleet", help="a fleet.yaml to schedule"),
    cron: str | None = typer.Option(None, "--cron", help='schedule, e.g. "0 3 * * *"'),
) -> None:
    """Create the work pool if missing and register the mission deployment on it."""
    _defaults()
    try:
        _require_server()
        from mendflow.deployments.fleet import deploy

        names = deploy(pool, heartbeat_s=heartbeat_s, fleet_file=fleet_file, cron=cron)
        from mendflow.infra.engine_limits import lease_storage_warning

        warning = lease_storage_warning()
    except MendflowError as error:
        raise _fail(error) from None
    if warning:
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    for name in names:
        err.print(f"deployment {escape(name)} on work pool {escape(pool)}")
    err.print(f"start workers with: prefect worker start --pool {escape(pool)}")


@fleet_app.command("run")
def run_command(
    fleet_file: Path = typer.Argument(..., help="the fleet.yaml"),
    pool: str = typer.Option(..., "--pool", help="the work pool (see `fleet deploy`)"),
    wait: bool = typer.Option(False, "--wait", help="wait until every mission has finished"),
    as_json: bool = typer.Option(False, "--json", help="print JSON on stdout"),
    timeout_s: float | None = typer.Option(None, "--timeout-s", min=1,
                                           help="with --wait: stop waiting after N seconds"),
) -> None:
    """Submit one mission flow run per repository of FLEET_FILE to the pool."""
    _defaults()
    try:
        from mendflow.core.fleet import load_fleet

        fleet = load_fleet(fleet_file)
        _require_server()
        from mendflow.infra.fleet_submit import submit_fleet, wait_for_runs

        submitted = submit_fleet(fleet, pool)
        err.print(f"fleet {fleet.name}: {len(submitted)} missions submitted to {escape(pool)}")
        if not wait:
            _print_runs([run.model_dump() for run in submitted], as_json)
            return
        summaries = wait_for_runs([run.flow_run_id for run in submitted], timeout_s=timeout_s)
    except MendflowError as error:
        raise _fail(error) from None
    rows = [{"repository": sub.repository, "flow_run_id": s.flow_run_id, "state": s.state,
             "mission_id": s.mission_id, "quality_score": s.quality_score,
             "patches_accepted": s.patches_accepted}
            for sub, s in zip(submitted, summaries, strict=True)]
    _print_runs(rows, as_json)
    raise typer.Exit(0 if all(row["state"] == "COMPLETED" for row in rows) else 1)


def _print_runs(rows: list[dict], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"runs": rows}, indent=2))
        return
    table = Table(title="fleet")
    columns = list(rows[0]) if rows else ["repository", "flow_run_id"]
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    Console().print(table)


@fleet_app.command("status")
def status_command(
    fleet_file: Path = typer.Argument(..., help="the fleet.yaml"),
    as_json: bool = typer.Option(False, "--json", help="print JSON on stdout"),
) -> None:
    """Each repository's latest mission flow run: state, score, accepted patches, approvals."""
    _defaults()
    try:
        from mendflow.core.fleet import load_fleet

        fleet = load_fleet(fleet_file)
        _require_server()
        from mendflow.infra.fleet_runs import latest_by_repository

        latest = latest_by_repository(None, [repo.key for repo in fleet.repositories])
    except MendflowError as error:
        raise _fail(error) from None
    rows = []
    for repo in fleet.repositories:
        run = latest[repo.key]
        rows.append({
            "repository": repo.url, "branch": repo.branch,
            "flow_run_id": run.flow_run_id if run else None,
            "state": run.state if run else None,
            "state_name": run.state_name if run else None,
            "mission_id": run.mission_id if run else None,
            "quality_score": run.quality_score if run else None,
            "patches_accepted": run.patches_accepted if run else None,
            "awaiting_approval": bool(run and run.state == "PAUSED"),
            "started": run.started if run else None})
    _print_runs(rows, as_json)


def register(app: typer.Typer) -> None:
    """Add the ``fleet`` command group to ``app``."""
    app.add_typer(fleet_app, name="fleet")
