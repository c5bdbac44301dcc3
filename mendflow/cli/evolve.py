"""``mendflow evolve``: the evolution loop.

    mendflow evolve serve [--config FILE] [--name NAME] [--interval-s N] PATH_OR_GIT_URL
    mendflow evolve run [--config FILE] PATH_OR_GIT_URL        # one cycle, now, in this process
    mendflow evolve history [PATH] [--config FILE] [--json]   # the cycle records, oldest first
    mendflow evolve status [PATH] [--config FILE] [--json]    # what the loop remembers, and the last cycle

``history --json`` prints a JSON list of the records (see
:class:`mendflow.core.evolution.CycleRecord`). Nothing here imports Prefect at
module import time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.markup import escape

from mendflow.cli.running import err, prefect_defaults, run_flow, start_prefect_api
from mendflow.core.config import load_config
from mendflow.core.errors import MendflowError

evolve_app = typer.Typer(help="The evolution loop: a scheduled cycle that opens pull requests, "
                              "watches what merged, and reverts its own regressions.",
                         no_args_is_help=True)


def _fail(error: MendflowError) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(error.exit_code)


def _folder(target: str, config: Path | None) -> Path:
    from mendflow.infra.evolution_store import is_git_url, loop_dir
    from mendflow.infra.layout import StateLayout

    settings = load_config(config)
    key = target if is_git_url(target) else str(Path(target).expanduser().resolve())
    return loop_dir(StateLayout.resolve(settings.mission.state_dir), key)


@evolve_app.command("serve")
def serve_command(
    target: str = typer.Argument(..., help="the repository: a path, or a git URL to clone"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
    name: str | None = typer.Option(None, "--name", help="deployment name (default: derived "
                                    "from the repository)"),
    interval_s: float | None = typer.Option(None, "--interval-s", min=1, help="seconds between "
                                            "cycles (default: evolution.interval_s)"),
) -> None:
    """Serve the evolution-cycle/NAME deployment for one repository (needs PREFECT_API_URL)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from mendflow.deployments.evolve import serve_evolution

    try:
        serve_evolution(target, config, name=name, interval_s=interval_s)
    except MendflowError as error:
        raise _fail(error) from None


@evolve_app.command("run")
def run_command(
    target: str = typer.Argument(".", help="the repository: a path, or a git URL to clone"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
    as_json: bool = typer.Option(False, "--json", help="print the cycle's record as JSON"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show Prefect's logs on stderr"),
) -> None:
    """Run one evolution cycle now, in this process."""
    prefect_defaults(verbose)
    start_prefect_api()

    def load():
        from mendflow.flows.evolution import evolution_cycle

        return lambda: evolution_cycle(path=target, config_file=str(config) if config else None)

    run_flow(load, as_json=as_json, verbose=verbose, render=_print_cycle)


def _print_cycle(record) -> None:
    err.print(f"cycle {record.cycle}: {record.status} in {record.duration_s:.2f} s"
              + (f"\n[bold red]error:[/] {escape(record.error)}" if record.error else ""))


@evolve_app.command("history")
def history_command(
    target: str = typer.Argument(".", help="the repository (path or git URL) of the loop"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
    as_json: bool = typer.Option(False, "--json", help="print the records as a JSON list"),
) -> None:
    """Print the loop's cycle records, oldest first."""
    from mendflow.infra.evolution_store import read_history

    try:
        records = read_history(_folder(target, config))
    except MendflowError as error:
        raise _fail(error) from None
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in records], indent=1))
        return
    if not records:
        typer.echo("no evolution cycle recorded for this repository", err=True)
    for r in records:
        typer.echo(f"{r.cycle:>4}  {r.started_at}  {r.status:<9} {r.duration_s:7.2f}s  "
                   f"head {(r.head_after or '-')[:10]}  findings {r.findings}  "
                   f"accepted {r.patches_accepted}  PRs +{r.prs_opened}/-{r.prs_closed}  "
                   f"merged {r.prs_merged}  reverts {r.reverts}  regressions "
                   f"{len(r.regressions)}  score {r.quality_score if r.quality_score is not None else '-'}"
                   + (f"  [{r.limit}]" if r.limit else "") + (f"  error: {r.error}"
                                                             if r.error else ""))


@evolve_app.command("status")
def status_command(
    target: str = typer.Argument(".", help="the repository (path or git URL) of the loop"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Show what the loop remembers: last tip, interval, open PRs, pending work, last cycle."""
    from mendflow.infra.evolution_store import read_history, read_memory

    try:
        folder = _folder(target, config)
        records = read_history(folder)
    except MendflowError as error:
        raise _fail(error) from None
    memory = read_memory(folder)
    last = records[-1] if records else None
    data = {"state_dir": str(folder), "cycles": len(records),
            "memory": memory.model_dump(mode="json"),
            "last_cycle": last.model_dump(mode="json") if last else None}
    if as_json:
        typer.echo(json.dumps(data, indent=1))
        return
    typer.echo(f"loop memory: {folder}")
    typer.echo(f"cycles: {len(records)}; last tip {(memory.last_tip or '-')[:10]}; interval "
               f"{memory.interval_s or load_config(config).evolution.interval_s:g} s; plateau "
               f"{memory.plateau}; open PRs {list(memory.open_prs) or 'none'}; pending "
               f"{'yes' if memory.pending else 'no'}")
    if last:
        typer.echo(f"last cycle {last.cycle}: {last.status} at {last.started_at} "
                   f"({last.duration_s:.2f} s)" + (f"; error: {last.error}" if last.error
                                                   else ""))


def register(app: typer.Typer) -> None:
    """Add the ``evolve`` command group to ``app``."""
    app.add_typer(evolve_app, name="evolve")
