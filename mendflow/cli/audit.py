"""``mendflow audit verify`` and ``mendflow audit show``: the tamper-evident audit trail.

``verify`` exits 0 when the chain of ``<state dir>/audit.jsonl`` is intact and 1 when it is
broken, naming the first bad line by its number (see :func:`mendflow.infra.audit.verify`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mendflow.core.config import load_config
from mendflow.core.errors import MendflowError
from mendflow.infra import audit
from mendflow.infra.layout import StateLayout

audit_app = typer.Typer(help="Verify and show the audit trail (<state dir>/audit.jsonl).",
                        no_args_is_help=True)


def _root(config_file: Path | None) -> Path:
    return StateLayout.resolve(load_config(config_file).mission.state_dir).root


def _error(error: MendflowError) -> typer.Exit:
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(str(error))}")
    return typer.Exit(error.exit_code)


@audit_app.command("verify")
def verify_command(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
) -> None:
    """Check the hash chain; exit 1 naming the first edited, removed or reordered line."""
    try:
        verdict = audit.verify(_root(config))
    except MendflowError as error:
        raise _error(error) from None
    if verdict.ok:
        typer.echo(verdict.message)
        raise typer.Exit(0)
    typer.echo(f"audit trail broken: {verdict.message}", err=True)
    raise typer.Exit(1)


@audit_app.command("show")
def show_command(
    mission: str | None = typer.Option(None, "--mission", help="only this mission's entries"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON list on stdout"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
) -> None:
    """List the audit entries: when, who, what, why."""
    try:
        entries = audit.read(_root(config), mission)
    except MendflowError as error:
        raise _error(error) from None
    if as_json:
        sys.stdout.write(json.dumps(entries, indent=2) + "\n")
        return
    table = Table(title=f"audit trail{f' of {mission}' if mission else ''}")
    for column in ("#", "when", "who", "what", "mission", "why", "details"):
        table.add_column(column)
    for entry in entries:
        who = entry.get("who") or {}
        why = entry.get("why") or {}
        reason = why.get("reason") or ""
        if why.get("finding_ids"):
            reason = f"{reason} [{', '.join(why['finding_ids'][:3])}]".strip()
        details = entry.get("details") or {}
        table.add_row(str(entry.get("seq")), str(entry.get("when", ""))[:19],
                      f"{who.get('kind')}: {who.get('name')}", str(entry.get("what")),
                      str(entry.get("mission") or ""), escape(reason),
                      escape(", ".join(f"{k}={v}" for k, v in details.items() if v)[:80]))
    Console(highlight=False, soft_wrap=True).print(table)


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command group (``verify``, ``show``)."""
    app.add_typer(audit_app, name="audit")
