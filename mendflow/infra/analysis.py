"""Self-analysis of a codebase: size, complexity and maintainability per module (radon),
and hotspots: complexity × churn from ``git log``.

Radon's metrics: cyclomatic complexity (McCabe) of each function and method, summed per
module; the maintainability index (0-100, higher is better); raw line counts.
"""

from __future__ import annotations

import ast
import io
import subprocess
import tokenize
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

SKIP_PARTS = {".git", ".venv", "venv", "node_modules", "__pycache__", "build", "dist", ".tox",
              ".mypy_cache", ".ruff_cache", ".eggs"}


class ModuleMetrics(BaseModel):
    """One module of ``mendflow analyze --json`` ``modules``."""

    model_config = ConfigDict(frozen=True)

    path: str
    lines: int
    classes: int
    functions: int
    complexity: int
    maintainability: float


class Hotspot(BaseModel):
    """A module ranked by complexity × churn (commits that touched it)."""

    model_config = ConfigDict(frozen=True)

    path: str
    complexity: int
    churn: int
    score: int


class Analysis(BaseModel):
    model_config = ConfigDict(frozen=True)

    modules: list[ModuleMetrics]
    hotspots: list[Hotspot]


def _python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py")
                  if not SKIP_PARTS.intersection(p.relative_to(root).parts[:-1]))


def module_metrics(path: Path, rel: str) -> ModuleMetrics | None:
    """Radon's metrics of one file (parsed once); None when it does not parse.

    The maintainability index is radon's ``mi_visit(code, multi=True)``, computed from
    the same parse (Halstead volume, total complexity, logical lines, comment percent).
    """
    from radon.complexity import cc_visit_ast
    from radon.metrics import h_visit_ast, mi_compute
    from radon.visitors import ComplexityVisitor

    try:
        code = path.read_text(encoding="utf-8", errors="replace")
        tree = ast.parse(code)
        blocks = cc_visit_ast(tree)
        raw = raw_counts(code)
        comments = (raw.comments + raw.multi) / float(raw.sloc) * 100 if raw.sloc else 0
        maintainability = mi_compute(h_visit_ast(tree).total.volume,
                                     ComplexityVisitor.from_ast(tree).total_complexity,
                                     raw.lloc, comments)
    except (SyntaxError, ValueError, OSError, RecursionError, ZeroDivisionError,
            tokenize.TokenError):
        return None
    nodes = list(ast.walk(tree))
    functions = [b for b in blocks if b.letter in ("F", "M")]
    return ModuleMetrics(
        path=rel, lines=raw.loc,
        classes=sum(isinstance(n, ast.ClassDef) for n in nodes),
        functions=sum(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in nodes),
        complexity=sum(b.complexity for b in functions),
        maintainability=round(float(maintainability), 2))


class RawCounts(NamedTuple):
    """Line counts of one module (radon's raw metrics' names)."""

    loc: int
    lloc: int
    sloc: int
    comments: int
    multi: int


def raw_counts(code: str) -> RawCounts:
    """loc, logical lines, source lines, comment lines and docstring lines, in one
    :mod:`tokenize` pass.

    ``radon.raw.analyze`` re-tokenizes a statement once per physical line it spans:
    quadratic in the length of a multi-line literal (wcwidth 0.2.13's 4843-line
    ``table_zero.py`` ran for minutes, and the self-analysis task timed out after
    600 s, failing the whole mission).

    Raises:
        tokenize.TokenError: the code does not tokenize.
    """
    code_lines: set[int] = set()
    comment_lines: set[int] = set()
    lloc = multi = 0
    statement: list[tokenize.TokenInfo] = []
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.COMMENT:
            comment_lines.add(token.start[0])
        elif token.type == tokenize.NEWLINE or (token.type == tokenize.OP
                                                and token.string == ";"):
            lloc += 1
            if len(statement) == 1 and statement[0].type == tokenize.STRING:
                start, end = statement[0].start[0], statement[0].end[0]
                if end > start:  # a multi-line string alone: a docstring, not code
                    multi += end - start + 1
                    code_lines.difference_update(range(start, end + 1))
            statement = []
        elif token.type not in (tokenize.NL, tokenize.INDENT, tokenize.DEDENT,
                                tokenize.ENDMARKER):
            statement.append(token)
            code_lines.update(range(token.start[0], token.end[0] + 1))
    return RawCounts(loc=len(code.splitlines()), lloc=lloc, sloc=len(code_lines),
                     comments=len(comment_lines), multi=multi)


def churn(root: Path, since_days: int | None = None) -> Counter[str]:
    """Commits that touched each file (``git log --name-only``); empty outside a git repository."""
    command = ["git", "-C", str(root), "log", "--no-merges", "--format=", "--name-only",
               "--relative"]
    if since_days:
        command.append(f"--since={since_days}.days")
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return Counter()
    if out.returncode != 0:
        return Counter()
    return Counter(line.strip() for line in out.stdout.splitlines() if line.strip())


def analyze_path(root: Path, top: int = 10) -> Analysis:
    """Analyze every Python file under ``root`` (virtualenvs, caches and .git left out).

    Args:
        root: a directory (a repository or a folder inside one).
        top: how many hotspots to name.

    Returns:
        Modules sorted by path; hotspots sorted by complexity × churn, highest first
        (modules never committed have churn 0 and are not hotspots).
    """
    root = Path(root).resolve()
    modules = [m for p in _python_files(root)
               if (m := module_metrics(p, p.relative_to(root).as_posix())) is not None]
    changes = churn(root)
    spots = [Hotspot(path=m.path, complexity=m.complexity, churn=changes.get(m.path, 0),
                     score=m.complexity * changes.get(m.path, 0)) for m in modules]
    spots = sorted((h for h in spots if h.score > 0), key=lambda h: (-h.score, h.path))[:top]
    return Analysis(modules=modules, hotspots=spots)


def analysis_markdown(analysis: Analysis, top: int = 10) -> str:
    """A report section: totals, the hotspots and the least maintainable modules."""
    modules = analysis.modules
    lines = ["## Self-analysis", ""]
    if not modules:
        return "\n".join([*lines, "No Python modules found.", ""])
    total = sum(m.lines for m in modules)
    mean_mi = sum(m.maintainability for m in modules) / len(modules)
    lines.append(f"{len(modules)} modules, {total} lines, "
                 f"{sum(m.classes for m in modules)} classes, "
                 f"{sum(m.functions for m in modules)} functions, total cyclomatic complexity "
                 f"{sum(m.complexity for m in modules)}, mean maintainability index "
                 f"{mean_mi:.1f} (radon).")
    if analysis.hotspots:
        lines += ["", "Hotspots (complexity × commits that touched the file):", "",
                  "| module | complexity | churn | score |", "|---|---|---|---|"]
        lines += [f"| {h.path} | {h.complexity} | {h.churn} | {h.score} |"
                  for h in analysis.hotspots]
    worst = sorted(modules, key=lambda m: m.maintainability)[:min(top, 5)]
    lines += ["", "Least maintainable modules:", "", "| module | lines | complexity | MI |",
              "|---|---|---|---|"]
    lines += [f"| {m.path} | {m.lines} | {m.complexity} | {m.maintainability} |" for m in worst]
    return "\n".join(lines) + "\n"
