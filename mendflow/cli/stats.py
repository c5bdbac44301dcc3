"""``mendflow stats``: what mendflow learned from its attempts (the outcome store).

``--json`` prints one object (the contract): ``attempts`` (int), ``strategies`` (a list of
``{strategy, category, attempts, accepted, accept_rate, tokens_in, tokens_out, cost_usd}``)
and ``insights`` (a list of strings). The command is added by :func:`register`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mendflow.core.config import load_config
from mendflow.core.errors import MendflowError
from mendflow.core.insights import stats_report
from mendflow.infra.layout import StateLayout


def repository_root(path: Path) -> str:
    """The repository root containing ``path`` (``git rev-parse --show-toplevel``), as missions
    record it; the resolved path itself outside a git repository."""
    path = path.expanduser().resolve()
    out = subprocess.run(["git", "-C", str(path if path.is_dir() else path.parent), "rev-parse",
                          "--show-toplevel"], capture_output=True, text=True, check=False)
    return str(Path(out.stdout.strip()).resolve()) if out.returncode == 0 else str(path)


def stats(repo: Path | None, since_days: float | None, as_json: bool,
          config_file: Path | None) -> int:
    """Print the stats; returns the exit code (1: bad config or the store is unusable)."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    from mendflow.infra.outcomes import STORE_ERRORS, OutcomeStore

    try:
        config = load_config(config_file)
        root = StateLayout.resolve(config.mission.state_dir).root
        learning = config.learning
        store = OutcomeStore.open(learning.database_url, root, learning.connect_timeout_s)
        repository = repository_root(repo) if repo else None
        since = (datetime.now(timezone.utc) - timedelta(days=since_days)) if since_days else None
        report = stats_report(store.strategy_stats(repository, since),
                              store.missions(repository, since),
                              store.outcome_counts(repository, since), learning)
    except MendflowError as error:
        err.print(f"[bold red]error:[/] {escape(str(error))}")
        return error.exit_code
    except STORE_ERRORS as error:
        err.print(f"[bold red]error:[/] the outcome store is unusable: "
                  f"{escape(type(error).__name__)}: {escape(str(error).splitlines()[0])}\n"
                  "  hint: check learning.database_url, or that the database is running")
        return 1
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return 0
    out = Console(highlight=False, soft_wrap=True)
    table = Table(title=f"{report['attempts']} attempts")
    for column in ("strategy", "category", "attempts", "accepted", "rate", "tokens in",
                   "tokens out", "cost $"):
        table.add_column(column)
    for row in report["strategies"]:
        table.add_row(row["strategy"], row["category"], str(row["attempts"]),
                      str(row["accepted"]), f"{row['accept_rate']:.2f}", str(row["tokens_in"]),
                      str(row["tokens_out"]), f"{row['cost_usd']:.4f}")
    out.print(table)
    for line in report["insights"]:
        out.print(f"- {escape(line)}")
    return 0


def register(app: typer.Typer) -> None:
    """Add ``mendflow stats [--repo PATH] [--since DAYS] [--json] [--config FILE]``."""

    @app.command("stats")
    def stats_command(
        repo: Path | None = typer.Option(None, "--repo", help="only this repository"),
        since: float | None = typer.Option(None, "--since", min=0, help="only the last DAYS days"),
        as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
        config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
    ) -> None:
        """Success rates, costs and insights per strategy and finding category."""
        raise typer.Exit(stats(repo, since, as_json, config))
