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
import re
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
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


_PARSE_LOCK = threading.Lock()


def parse_python(source: str | bytes) -> ast.Module:
    """``ast.parse``, one thread at a time.

    The CPython 3.11 in use here keeps the AST converter's recursion depth in
    state shared between threads (CPython gh-106905): parses running at once
    in the detectors' threads can fail with ``SystemError: AST constructor
    recursion depth mismatch`` (seen in a mission on more-itertools 10.5.0).

    Raises:
        SyntaxError, ValueError: as ``ast.parse``.
    """
    with _PARSE_LOCK:
        return ast.parse(source)


@lru_cache(maxsize=512)
def _symbols_cached(path: str, mtime_ns: int) -> tuple[tuple[int, int, str], ...]:
    try:
        source = Path(path).read_bytes()
        tree = parse_python(source)
    except (OSError, SyntaxError, ValueError):
        return ()
    lines = source.decode("utf-8", errors="replace").splitlines()
    found: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                end = _trailing_comments_end(lines, child.end_lineno or child.lineno,
                                             child.col_offset)
                found.append((child.lineno, end, name))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return tuple(found)


def _trailing_comments_end(lines: Sequence[str], end: int, column: int) -> int:
    """The last line of a definition, counting the comments indented into its body after its
    last statement (``ast`` ends it at that statement).

    A ``# TODO`` left after a function's last line stays the function's when
    that line (a useless ``return``) is removed.

    Args:
        lines: the file's lines.
        end: the definition's ``end_lineno`` (1-based).
        column: the definition's ``col_offset``.

    Returns:
        ``end``, or the line of the last such comment (1-based).
    """
    last = end
    for number in range(end + 1, len(lines) + 1):
        text = lines[number - 1]
        stripped = text.lstrip()
        if not stripped:
            continue
        if not stripped.startswith("#") or len(text) - len(stripped) <= column:
            break
        last = number
    return last


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


# The same defect under two tools' names: (source, rule) pairs that mean one thing.
_SAME_DEFECT: dict[tuple[str, str], str] = {
    ("ruff", "F821"): "undefined-name", ("mypy", "name-defined"): "undefined-name",
    ("ruff", "F811"): "redefined", ("mypy", "no-redef"): "redefined",
    ("ruff", "E999"): "syntax", ("ruff", "syntax-error"): "syntax", ("mypy", "syntax"): "syntax",
}
_FRAME = re.compile(r'File "([^"]+)", line (\d+)|^([^\s:][^:\n]*\.py):(\d+):', re.MULTILINE)


def _defect_key(finding: Finding) -> tuple[str, ...] | None:
    """What identifies the defect across tools, or None when only its own tool knows it.

    ruff's flake8-bandit rules ``S<nnn>`` are bandit's ``B<nnn>``; a failing test and a log
    or runtime traceback are one defect when their innermost frames are the same line.
    """
    if finding.source in ("pytest", "log", "runtime"):
        frame = innermost_frame(finding.detail or "")
        if frame is None and finding.source != "pytest" and finding.line is not None:
            frame = (finding.path, finding.line)
        return ("frame", *map(str, frame)) if frame else None
    if finding.line is None:
        return None
    if finding.source == "ruff" and re.fullmatch(r"S\d{3}", finding.rule):
        kind = "B" + finding.rule[1:]
    elif finding.source == "bandit" and re.fullmatch(r"B\d{3}", finding.rule):
        kind = finding.rule
    else:
        kind = _SAME_DEFECT.get((finding.source, finding.rule))
    return None if kind is None else ("line", finding.path, str(finding.line), kind)


def innermost_frame(traceback: str) -> tuple[str, int] | None:
    """The last ``File "x.py", line N`` (or pytest's ``x.py:N:``) of a traceback, or None.

    Absolute paths are kept as written; a repository-relative path matches a finding's path.
    """
    last = None
    for match in _FRAME.finditer(traceback):
        path = match.group(1) or match.group(3)
        line = match.group(2) or match.group(4)
        if "site-packages" not in path and "/lib/python" not in path:
            last = (path, int(line))
    return last


def merge_cross_tool(findings: Iterable[Finding]) -> list[Finding]:
    """Merge findings that several tools report for the same defect into one.

    Pairs: ruff F821 and mypy ``name-defined`` on one line (and the other pairs of
    ``_SAME_DEFECT``), ruff ``S<nnn>`` and bandit ``B<nnn>`` on one line, a failing test
    and a log or runtime traceback whose innermost frames are the same line. The finding
    that ranks first (a tool-fixable one, then severity, then source priority) stays, with ``sources`` listing
    every ``source:rule``; the others are dropped. Findings of one tool never merge.

    Args:
        findings: findings of one measurement.

    Returns:
        The findings, duplicates merged, in their original order.
    """
    findings = list(findings)
    groups: dict[tuple[str, ...], list[Finding]] = {}
    for finding in findings:
        key = _defect_key(finding)
        if key is not None:
            groups.setdefault(key, []).append(finding)
    replace: dict[str, Finding | None] = {}
    for members in groups.values():
        if len({m.source for m in members}) < 2:
            continue
        ranked = sorted(members, key=lambda f: (not f.fixable, -SEVERITY_RANK[f.severity],
                                                _SOURCE_PRIORITY.get(f.source, 9)))
        keep = ranked[0]
        tags = tuple(dict.fromkeys(f"{m.source}:{m.rule}" for m in ranked))
        replace[keep.id] = keep.model_copy(update={"sources": tags})
        for other in ranked[1:]:
            replace.setdefault(other.id, None)
    out = []
    for finding in findings:
        if finding.id in replace:
            merged = replace[finding.id]
            if merged is not None:
                out.append(merged)
        else:
            out.append(finding)
    return out


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
