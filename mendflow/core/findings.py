"""Building, fingerprinting, de-duplicating and ranking findings.

A finding's id must survive unrelated edits: adding a line at the top of a
file shifts every line number below it, but the finding is the same. The
fingerprint therefore hashes the tool, the rule, the path, the enclosing
symbol (``Class.method``, found with ``ast``) and the whitespace-normalized
text of the offending line, never the line number itself.
"""

from __future__ import annotations

import ast
import hashlib
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from mendflow.core.models import SEVERITY_RANK, Finding

# Ranking: what to fix first. A failing test outranks a security issue, which
# outranks a type error, and so on; ties are broken by severity, then path.
_SOURCE_PRIORITY = {"pytest": 0, "runtime": 0, "log": 1, "bandit": 2, "mypy": 3, "ruff": 4,
                    "coverage": 5, "todo": 6}


class SourceIndex:
    """Reads files of one tree once and answers 'which line text / which symbol'.

    Args:
        root: the tree's root directory; paths passed to methods are relative to it.
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    def line_text(self, path: str, line: int | None) -> str:
        lines = _read_lines(self.root / path)
        if line is None or not (1 <= line <= len(lines)):
            return ""
        return " ".join(lines[line - 1].split())

    def symbol_at(self, path: str, line: int | None) -> str | None:
        if line is None:
            return None
        best: tuple[int, str] | None = None
        for start, end, name in _symbols(self.root / path):
            if start <= line <= end and (best is None or start >= best[0]):
                best = (start, name)
        return best[1] if best else None


@lru_cache(maxsize=512)
def _read_lines_cached(path: str, mtime_ns: int) -> tuple[str, ...]:
    try:
        return tuple(Path(path).read_text(encoding="utf-8", errors="replace").splitlines())
    except OSError:
        return ()


def _read_lines(path: Path) -> tuple[str, ...]:
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return ()
    return _read_lines_cached(str(path), mtime)


@lru_cache(maxsize=512)
def _symbols_cached(path: str, mtime_ns: int) -> tuple[tuple[int, int, str], ...]:
    try:
        tree = ast.parse(Path(path).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return ()
    found: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                found.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return tuple(found)


def _symbols(path: Path) -> tuple[tuple[int, int, str], ...]:
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return ()
    return _symbols_cached(str(path), mtime)


def fingerprint(*parts: str | None) -> str:
    """Return a 16-hex-digit SHA-256 fingerprint of the given parts."""
    digest = hashlib.sha256("\x1f".join(p or "" for p in parts).encode("utf-8"))
    return digest.hexdigest()[:16]


def make_finding(index: SourceIndex | None, *, source: str, rule: str, path: str,
                 line: int | None, key: str | None = None, **fields) -> Finding:
    """Create a :class:`Finding` with a line-shift-stable fingerprint id.

    Args:
        index: a :class:`SourceIndex` of the measured tree, used to read the
            offending line and its enclosing symbol; None skips both.
        source: the tool (``pytest``, ``ruff`` ...).
        rule: the tool's rule or check id.
        path: POSIX path relative to the repository root.
        line: 1-based line number, or None.
        key: an explicit identity (for example a pytest node id) used instead of
            the line text and symbol.
        **fields: the other :class:`Finding` fields (severity, category, message ...).

    Returns:
        The finding; ``symbol`` is filled from the index if not given.
    """
    symbol = fields.pop("symbol", None)
    if index is not None and symbol is None:
        symbol = index.symbol_at(path, line)
    if key is None:
        text = index.line_text(path, line) if index is not None else ""
        key = f"{symbol or ''}|{text or fields.get('message', '')}"
    fid = fingerprint(source, rule, path, key)
    return Finding(id=fid, source=source, rule=rule, path=path, line=line, symbol=symbol, **fields)


def disambiguate(findings: Iterable[Finding]) -> list[Finding]:
    """Give distinct ids to distinct findings that share a fingerprint.

    Two identical offending lines in one function hash alike; the second one
    gets ``<id>-2`` and so on, in line order, so ids stay unique and stable.
    """
    ordered = sorted(findings, key=lambda f: (f.id, f.line or 0, f.column or 0))
    seen: Counter[str] = Counter()
    out = []
    for finding in ordered:
        seen[finding.id] += 1
        n = seen[finding.id]
        out.append(finding if n == 1 else finding.model_copy(update={"id": f"{finding.id}-{n}"}))
    return out


def base_id(finding_id: str) -> str:
    """A finding id without the ``-N`` that :func:`disambiguate` adds (fingerprints are hex)."""
    base, _, n = finding_id.rpartition("-")
    return base if base and n.isdigit() else finding_id


def rank_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Merge findings into one de-duplicated queue, most important first.

    Duplicates (the same id from one or several runs) are kept once. Order:
    severity (critical first), then source priority (failing tests, security,
    types, lint, coverage, TODOs), then path and line.
    """
    unique: dict[str, Finding] = {}
    for finding in findings:
        unique.setdefault(finding.id, finding)
    return sorted(
        unique.values(),
        key=lambda f: (-SEVERITY_RANK[f.severity], _SOURCE_PRIORITY.get(f.source, 9),
                       f.path, f.line or 0, f.rule),
    )


def in_scope(finding: Finding, target) -> bool:
    """Is the finding inside the mission's scope? (See :func:`path_in_scope`.)"""
    return path_in_scope(finding.path, target)


def path_in_scope(path: str, target) -> bool:
    """Is a repository-relative POSIX path inside the mission's scope?

    Args:
        path: a path relative to the repository root.
        target: the mission's :class:`~mendflow.core.models.RepoTarget`.

    Returns:
        True for every path in project scope; otherwise True when the path is
        the scoped file or lies under the scoped directory.
    """
    if target.scope == "project" or target.scope_path in ("", "."):
        return True
    scope = target.scope_path.rstrip("/")
    if target.scope == "file":
        return path == scope
    return path == scope or path.startswith(scope + "/")
