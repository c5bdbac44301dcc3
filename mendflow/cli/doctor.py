"""``mendflow doctor``: check the machine and mendflow's state, and clean leftovers.

One line per check on stdout::

    [ok] tool: ruff: ruff 0.6.9 (/venv/bin/ruff)
    [warn] locks: no mission running; stale: m-1 (pid 4242 gone) — run `mendflow doctor --repair` ...
    [FAIL] disk: state dir: 310 MiB free at /home/me/.mendflow — free disk space: ...

or, with ``--json``, one JSON list of ``{name, status, found, action}``. The
exit code is 0 when every check is ok or a warning, 1 when any fails. The
command is added to a typer app by :func:`register`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from mendflow.core.config import load_config
from mendflow.core.errors import MendflowError
from mendflow.infra.layout import StateLayout
from mendflow.infra.system_checks import Check, run_checks

_LABELS = {"ok": ("[ok]", "green"), "warn": ("[warn]", "yellow"), "fail": ("[FAIL]", "bold red")}


def format_check(check: Check) -> Text:
    """Return the line of one check: ``[ok]/[warn]/[FAIL] name: found — action``."""
    label, style = _LABELS[check.status]
    line = Text.assemble((label, style), " ", (check.name, "bold"), f": {check.found}")
    if check.action:
        line.append(f" — {check.action}", style="dim" if check.status == "ok" else None)
    return line


def doctor(repair: bool = False, as_json: bool = False, config_file: Path | None = None) -> int:
    """Run the health checks and print them (see :func:`mendflow.infra.system_checks.run_checks`).

    Args:
        repair: also clean leftovers: stale locks and worktrees, orphaned processes.
        as_json: print one JSON list on stdout instead of lines.
        config_file: a YAML config (its ``health`` thresholds and ``mission.state_dir``);
            None = the defaults.

    Returns:
        The exit code: 0 when no check failed, 1 otherwise (a bad config file is 1 too).
    """
    stdout = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    try:
        config = load_config(config_file)
        checks = run_checks(config, StateLayout.resolve(config.mission.state_dir), repair=repair)
    except MendflowError as error:
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            Text(f"error: {error}", style="red"))
        return error.exit_code
    if as_json:
        sys.stdout.write(json.dumps([c.model_dump() for c in checks], indent=2) + "\n")
    else:
        for check in checks:
            stdout.print(format_check(check))
    return 1 if any(c.status == "fail" for c in checks) else 0


def register(app: typer.Typer) -> None:
    """Add the ``doctor`` command (``--repair``, ``--json``, ``--config``) to a typer app.

    Args:
        app: the application (``mendflow.cli.app``).
    """

    @app.command("doctor")
    def doctor_command(
        repair: bool = typer.Option(False, "--repair",
                                    help="remove stale locks and worktrees, stop orphaned processes"),
        as_json: bool = typer.Option(False, "--json", help="print the checks as a JSON list"),
        config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
    ) -> None:
        """Check disk, memory, tools, the Prefect API and mendflow's state; --repair cleans up."""
        raise typer.Exit(doctor(repair=repair, as_json=as_json, config_file=config))
