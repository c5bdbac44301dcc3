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


def branch_tip(repository: Path, mission: str) -> str | None:
    """The mission branch's tip before a rollback (None when there is none)."""
    from mendflow.infra.gitops import rev_parse

    try:
        return rev_parse(repository, f"refs/heads/mendflow/{mission}")
    except MendflowError:
        return None


def record_revert(repository: Path, mission: str, old_tip: str | None, new_tip: str) -> list[str]:
    """After ``mission rollback``: an audit ``revert`` entry, and the rolled-back commits marked
    ``reverted`` in the outcome store. Never raises: returns warning lines instead.

    Returns:
        Lines to show (empty when everything was recorded).
    """
    from mendflow.infra.gitops import run_git
    from mendflow.infra.outcomes import STORE_ERRORS, OutcomeStore

    if not old_tip or old_tip == new_tip:
        return []
    warnings = []
    try:
        commits = run_git(repository, "rev-list", f"{new_tip}..{old_tip}").split()
    except MendflowError as error:
        return [f"warning: the reverted commits are not recorded: {error}"]
    config = load_config(None)
    root = StateLayout.resolve(config.mission.state_dir).root
    try:
        repo = str(Path(repository).resolve())
        OutcomeStore.open(config.learning.database_url, root,
                          config.learning.connect_timeout_s).record_post_merge(repo, commits,
                                                                               "reverted")
    except STORE_ERRORS as error:
        warnings.append(f"warning: outcome store unavailable: {type(error).__name__}")
    if config.learning.audit:
        try:
            audit.append(root, who=audit.current_user(), what="revert",
                         why=audit.Why(reason=f"mendflow mission rollback {mission}"),
                         mission=mission, repository=str(repository),
                         details={"from": old_tip, "to": new_tip, "commits": commits})
        except OSError as error:
            warnings.append(f"warning: audit trail not written: {error}")
    return warnings


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command group (``verify``, ``show``)."""
    app.add_typer(audit_app, name="audit")
