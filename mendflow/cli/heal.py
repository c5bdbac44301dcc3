"""``mendflow heal``: scan logs for error groups, heal one, list them, serve the trigger.

- ``mendflow heal scan FILE... [--repo PATH] [--json]`` prints
  ``{"groups": [{"fingerprint", "exception_type", "message", "count", "first_seen",
  "last_seen", "path", "function", "line"}]}``, largest group first (no Prefect needed);
- ``mendflow heal run REPO --log FILE [--fingerprint FP] [--fixer ...] [--autonomy ...]
  [--json]`` runs the ``heal`` flow; its JSON has the mission fields plus
  ``fingerprint`` and ``reproduction_test``;
- ``mendflow heal list [--json]`` lists the recorded groups;
- ``mendflow heal serve`` serves the ``heal`` deployment and its event trigger
  (:mod:`mendflow.deployments.heal_trigger`).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mendflow.cli.running import err, fail, prefect_defaults, run_flow, start_prefect_api
from mendflow.core.config_fixers import command_line_help
from mendflow.core.errors import MendflowError

heal_app = typer.Typer(help="Heal errors from logs or a live application: reproduce, fix, "
                            "validate, commit.", no_args_is_help=True)
_fail = fail


def _git_root(start: Path) -> Path | None:
    proc = subprocess.run(["git", "-C", str(start), "rev-parse", "--show-toplevel"],
                          capture_output=True, text=True, check=False)
    return Path(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None


@heal_app.command("scan")
def scan(
    files: list[Path] = typer.Argument(..., help="log files (plain, rotated .1, .gz, JSON lines)"),
    repo: Path | None = typer.Option(None, "--repo", help="repository to locate frames in "
                                     "(default: the one around the current directory)"),
    as_json: bool = typer.Option(False, "--json", help="print the groups as JSON on stdout"),
) -> None:
    """Group the Python tracebacks of log files by fingerprint, largest group first."""
    from mendflow.tasks.detect.log_scan import scan_log_files

    root = repo.resolve() if repo else _git_root(Path.cwd())
    try:
        groups = scan_log_files(files, root)
    except MendflowError as error:
        raise _fail(error) from None
    if as_json:
        typer.echo(json.dumps({"groups": [g.summary() for g in groups]}, indent=2))
        return
    table = Table(title=f"{len(groups)} error group(s)")
    for column in ("fingerprint", "count", "exception", "where", "last seen"):
        table.add_column(column)
    for g in groups:
        where = f"{g.path}:{g.line} {g.function}" if g.path else "-"
        table.add_row(g.fingerprint, str(g.count), escape(f"{g.exception_type}: {g.message}"[:80]),
                      escape(where), g.last_seen or "-")
    Console().print(table)


@heal_app.command("run")
def run(
    repo: Path = typer.Argument(..., help="the repository"),
    log: list[str] = typer.Option(..., "--log", help="a log file or glob (repeatable)"),
    fingerprint: str | None = typer.Option(None, "--fingerprint", help="the group (default: "
                                           "the largest)"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
    fixer: str | None = typer.Option(None, help=command_line_help() + "; ruff: no model, nothing healed"),
    autonomy: str | None = typer.Option(None, help="interactive | semi_autonomous | "
                                        "autonomous | full_autonomous"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show Prefect's logs"),
) -> None:
    """Heal one error group of the log: reproduce it, fix it, validate, commit."""
    prefect_defaults(verbose)
    start_prefect_api()
    logs = [str(Path(p).resolve()) if Path(p).exists() else p for p in log]

    def load():
        from mendflow.flows.heal import heal

        return lambda: heal(repo=str(repo), log_files=logs, fingerprint=fingerprint,
                            config_file=str(config) if config else None, fixer=fixer,
                            autonomy=autonomy)

    run_flow(load, as_json=as_json, verbose=verbose, render=_print_heal)


def _print_heal(result) -> None:
    err.print(f"{result.heal_status}: {escape(result.reason or '')}\nbranch {result.branch}"
              + (f", commit {result.commit}" if result.commit else "")
              + (f", test {result.reproduction_test}" if result.reproduction_test else ""))


@heal_app.command("list")
def list_groups(
    as_json: bool = typer.Option(False, "--json", help="print a JSON list on stdout"),
) -> None:
    """List the recorded error groups: count, first and last seen, status."""
    from mendflow.infra.heal_records import list_records
    from mendflow.infra.layout import StateLayout

    records = list_records(StateLayout.resolve())
    fields = ("fingerprint", "exception_type", "message", "count", "first_seen", "last_seen",
              "path", "function", "line", "status", "reason", "branch", "commit", "repository",
              "updated_at")
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json", include=set(fields)) for r in records],
                              indent=2))
        return
    table = Table(title="error groups")
    for column in ("fingerprint", "status", "count", "exception", "last seen"):
        table.add_column(column)
    for r in records:
        table.add_row(r.fingerprint, r.status, str(r.count), escape(r.exception_type),
                      r.last_seen or "-")
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add the ``heal`` command group to ``app``."""
    from mendflow.deployments.heal_trigger import serve_heal_command

    heal_app.command("serve")(serve_heal_command)
    app.add_typer(heal_app, name="heal")
