"""``mendflow analyze PATH``: size, complexity, maintainability and hotspots of a codebase.

``--json`` prints ``{"modules": [{"path", "lines", "classes", "functions", "complexity",
"maintainability"}], "hotspots": [{"path", "complexity", "churn", "score"}]}`` (radon's
metrics; churn = commits that touched the file, from ``git log``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape


def register(app: typer.Typer) -> None:
    """Add ``mendflow analyze PATH [--json] [--top N]``."""

    @app.command("analyze")
    def analyze_command(
        path: Path = typer.Argument(Path("."), help="a repository or a folder inside one"),
        as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
        top: int = typer.Option(10, "--top", min=1, help="hotspots to name"),
    ) -> None:
        """Self-analysis: per module lines, classes, functions, complexity, maintainability."""
        from mendflow.infra.analysis import analysis_markdown, analyze_path

        if not path.is_dir():
            Console(stderr=True, highlight=False).print(
                f"[bold red]error:[/] {escape(str(path))}: not a directory\n"
                "  hint: pass a repository or a folder inside one")
            raise typer.Exit(1)
        analysis = analyze_path(path, top=top)
        if as_json:
            sys.stdout.write(json.dumps(analysis.model_dump(), indent=2) + "\n")
            return
        typer.echo(analysis_markdown(analysis, top=top))
