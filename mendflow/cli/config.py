"""``mendflow config show``: the effective configuration of a repository, and where each value
comes from (``--config``, ``.mendflow.yaml``, ``[tool.mendflow]`` in ``pyproject.toml``, defaults).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mendflow.core.config_sources import describe, effective_config, source_labels
from mendflow.core.errors import MendflowError
from mendflow.infra.gitops import find_repository_root

config_app = typer.Typer(help="Inspect mendflow's configuration.", no_args_is_help=True)


@config_app.command("show")
def show(
    path: Path = typer.Argument(Path("."), help="a repository, or a path inside one"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
    as_json: bool = typer.Option(False, "--json", help="print JSON on stdout"),
) -> None:
    """Print the effective configuration for PATH: every field, its value, its source."""
    root = find_repository_root(path)
    try:
        effective = effective_config(config, root)
    except MendflowError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(error.exit_code) from None
    rows = describe(effective)
    if as_json:
        typer.echo(json.dumps({
            "repository": str(root) if root else None,
            "sources": source_labels(effective.sources),
            "config": effective.config.model_dump(mode="json"),
            "origins": {name: origin for name, _, origin in rows},
        }, indent=2))
        return
    typer.echo(f"# repository: {root or '(not a git repository)'}")
    typer.echo("# sources, highest precedence first: " + "; ".join(source_labels(effective.sources)))
    width = max(len(name) for name, _, _ in rows)
    for name, value, origin in rows:
        typer.echo(f"{name:<{width}}  {json.dumps(value)}  # {origin}")


def register(app: typer.Typer) -> None:
    """Add ``mendflow config ...`` to the CLI."""
    app.add_typer(config_app, name="config")
