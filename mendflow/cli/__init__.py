"""The ``mendflow`` command line (typer + rich, the same stack as Prefect's CLI).

Exit codes (see README, "Exit codes"): 0 success; 1 general error; 2 a gate
failed or patches were rejected; 3 validation could not run; 130 interrupted.
With ``--json``, stdout carries exactly one JSON object; progress and every
log line (Prefect's included) go to stderr.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mendflow.cli.running import (
    err,  # stderr: progress and errors
    prefect_defaults,
    run_flow,
    start_prefect_api,
    wait_for_prefect_api,
)
from mendflow.cli.running import fail as _fail
from mendflow.core.config_fixers import command_line_help
from mendflow.core.errors import MendflowError
from mendflow.core.summary import delivered_text, suite_text

app = typer.Typer(help="mendflow: maintenance missions for Python repositories, on Prefect.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
mission_app = typer.Typer(help="Run, inspect and roll back maintenance missions.",
                          no_args_is_help=True)
app.add_typer(mission_app, name="mission")


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
    fixer: str | None = typer.Option(None, help=command_line_help()),
    autonomy: str | None = typer.Option(
        None, help="interactive | semi_autonomous | autonomous | full_autonomous: deliver to "
                   "the target branch under that approval policy"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show Prefect's logs on stderr"),
) -> None:
    """Run one maintenance mission (one Prefect flow run) on PATH."""
    prefect_defaults(verbose)
    start_prefect_api()
    err.print(f"[bold]mendflow[/] mission on {escape(str(path.resolve()))}")
    _run_mission(dict(path=str(path), config_file=str(config) if config else None,
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
    prefect_defaults(verbose)
    from mendflow.infra.layout import StateLayout
    from mendflow.infra.missions import read_mission

    layout = StateLayout.resolve()
    try:
        record = read_mission(mission, layout)
    except MendflowError as error:
        raise _fail(error) from None
    start_prefect_api()
    import mendflow.flows.mission  # noqa: F401  (imported while the Prefect API starts)
    from mendflow.infra.flow_runs import mark_crashed_if_dead, resume_parameters

    wait_for_prefect_api()
    try:
        crashed = mark_crashed_if_dead(record)
        parameters = resume_parameters(mission, layout)
    except MendflowError as error:
        raise _fail(error) from None
    if crashed:
        err.print(f"flow run {crashed} had no live process: marked Crashed")
    err.print(f"[bold]mendflow[/] resuming mission {escape(mission)}")
    _run_mission(parameters, as_json=as_json, verbose=verbose)


@mission_app.command("list")
def list_missions_command(
    as_json: bool = typer.Option(False, "--json", help="print a JSON list on stdout"),
) -> None:
    """List missions with their state, age, repository and progress."""
    prefect_defaults(False)
    from mendflow.infra.flow_runs import listing
    from mendflow.infra.layout import StateLayout

    rows = listing(StateLayout.resolve())
    if as_json:
        typer.echo(json.dumps([row.model_dump(mode="json") for row in rows], indent=2))
        return
    table = Table(title="missions")
    for column in ("mission", "status", "age", "steps", "repository"):
        table.add_column(column)
    for row in rows:
        steps = f"{row.steps_done}/{row.steps_started}" if row.steps_started else "-"
        status = f"{row.status}, {row.detail}" if row.detail else row.status
        table.add_row(row.mission_id, status, _age(row.age_s), steps, row.repository)
    Console().print(table)


def _run_mission(parameters: dict, *, as_json: bool, verbose: bool) -> None:
    """Run the mission flow in this process under the CLI's supervisor (see :func:`run_flow`)."""

    def load():
        from mendflow.flows.mission import maintenance_mission

        return lambda: maintenance_mission(**parameters)

    run_flow(load, as_json=as_json, verbose=verbose, render=_print_summary,
             mission_id=parameters.get("mission_id"))


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
        table.add_row("time", f"environment {timings.environment_s:.1f} s, "
                              f"baseline {timings.baseline_s:.1f} s, "
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
    from mendflow.infra.layout import StateLayout
    from mendflow.infra.missions import read_mission
    from mendflow.tasks.vcs import rollback_mission

    layout = StateLayout.resolve()
    try:
        record = read_mission(mission, layout)
        worktree = Path(record.worktree) if record.worktree else layout.worktree(mission)
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
