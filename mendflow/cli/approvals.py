"""The approval commands: list missions waiting for a human, approve or reject them.

    mendflow approvals                                # what waits
    mendflow approve RUN_ID [--only PATCH_ID ...] [--comment TEXT] [--approver NAME]
    mendflow reject RUN_ID --comment TEXT [--approver NAME]

The work is done by :mod:`mendflow.infra.approvals`; :func:`register` adds these
commands to a typer app (``mendflow.cli`` calls it).
"""

from __future__ import annotations

import importlib
import json
import os
from types import ModuleType

import typer

from mendflow.core.errors import MendflowError


def _fail(error: MendflowError) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(error.exit_code)


def _api() -> ModuleType:
    """:mod:`mendflow.infra.approvals`, imported when a command runs: it imports Prefect,
    which must not happen when the CLI starts (the CLI applies Prefect's settings and boots
    its API server first; see :mod:`mendflow.infra.prefect_api`)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # The temporary API server may migrate a new database first: 20 s is short on a busy box.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    return importlib.import_module("mendflow.infra.approvals")


def approvals_command(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List mission runs waiting for approval (Paused or Suspended)."""
    runs = _api().list_waiting()
    if as_json:
        typer.echo(json.dumps([r.model_dump() for r in runs], indent=2))
        return
    if not runs:
        typer.echo("no mission waits for approval", err=True)
        return
    for r in runs:  # one block per run: ids stay whole in any terminal width
        patches = "?" if r.patches_waiting is None else str(r.patches_waiting)
        typer.echo(f"{r.run_id}  {r.state}, waiting {r.age_s / 60:.0f} min, "
                   f"{patches} patch(es), deadline {r.deadline or 'none'}")
        typer.echo(f"    mission {r.mission_id or '?'} on {r.repository or '?'}")
        if r.ui_url:
            typer.echo(f"    {r.ui_url}")


def approve_command(
    run_id: str = typer.Argument(..., help="the waiting flow run's id"),
    only: list[str] = typer.Option(None, "--only", help="approve only this patch id (repeat)"),
    comment: str = typer.Option("", "--comment", "-m", help="why (recorded in the commits)"),
    approver: str | None = typer.Option(None, "--approver", help="default: $MENDFLOW_APPROVER "
                                        "or your login name"),
) -> None:
    """Approve a waiting mission's patches: they are delivered to its target branch."""
    try:
        sent = _api().approve(run_id, only=only or None, comment=comment, approver=approver)
    except MendflowError as error:
        raise _fail(error) from None
    which = ", ".join(sent["patch_ids"]) if sent["patch_ids"] else "all waiting patches"
    typer.echo(f"approved {which} of run {run_id} as {sent['approver']}", err=True)


def reject_command(
    run_id: str = typer.Argument(..., help="the waiting flow run's id"),
    comment: str = typer.Option(..., "--comment", "-m", help="why (recorded in the report)"),
    approver: str | None = typer.Option(None, "--approver", help="default: $MENDFLOW_APPROVER "
                                        "or your login name"),
) -> None:
    """Reject every patch a mission waits with: the target branch is not touched."""
    try:
        sent = _api().reject(run_id, comment=comment, approver=approver)
    except MendflowError as error:
        raise _fail(error) from None
    typer.echo(f"rejected the patches of run {run_id} as {sent['approver']}", err=True)


def register(app: typer.Typer) -> None:
    """Add the ``approvals``, ``approve`` and ``reject`` commands to ``app``."""
    app.command("approvals")(approvals_command)
    app.command("approve")(approve_command)
    app.command("reject")(reject_command)


if __name__ == "__main__":  # python -m mendflow.cli.approvals approvals|approve|reject ...
    _app = typer.Typer(add_completion=False, no_args_is_help=True)
    register(_app)
    _app()
