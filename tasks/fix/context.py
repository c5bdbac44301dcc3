"""Context selection: what a model sees about a group of findings.

Only what a good engineer would open, never the whole repository:

- per finding: the tool, rule, severity, message, ``path:line`` and the
  rule's documentation URL;
- for a failing pytest test: its failure text (assertion message and
  traceback, from ``Finding.detail``), the test function's source (found
  with ``ast`` from the node id) and the definitions the test calls,
  resolved through its imports, and the definition its root cause names
  (``Finding.root_cause``: found from the traceback or the per-test coverage);
- for every implicated location (the finding's line, the traceback frames
  inside the repository): the enclosing function or class with line
  numbers, or the whole file when it is short (< 80 lines);
- the rejection of the previous attempt (``feedback``), when given.

Snippets are de-duplicated (overlapping ranges of a file are merged) and the
total is bounded by ``max_chars``. Files matching the policy denylist are
never quoted, environment variables are never included, and any value of a
secret-looking environment variable that appears in the text is redacted.
"""

from __future__ import annotations

import ast
import fnmatch
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mendflow.core.config import DEFAULT_LLM_DENYLIST
from mendflow.core.models import Finding, Sandbox
from mendflow.core.paths import matches_any
from mendflow.infra.runner import SECRET_NAME
from mendflow.tasks.fix import source_nav as nav

WHOLE_FILE_LINES = 80
MAX_SNIPPET_LINES = 120
WINDOW = 25
MAX_FAILURE_CHARS = 3000
MAX_FEEDBACK_CHARS = 6000
MAX_CALLEES = 6
_KEY_LIKE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16})\b")


@dataclass
class _Snippet:
    path: str
    start: int
    end: int
    label: str
    whole: bool = False


def matches_denylist(path: str, globs: Sequence[str]) -> bool:
    """True when a repository-relative POSIX path matches one of the globs.

    Gitignore-style patterns (:func:`mendflow.core.paths.matches_any`): ``secrets/``
    or ``secrets/**`` cover every depth, ``**/.env*`` and ``.env*`` also match at
    the root.
    """
    return matches_any(path, globs)


SECRET_FILES = (".env*", "*.pem", "*.key", "id_*")
"""Names of files that hold secrets: their values never reach a prompt."""
_SECRET_FILE_BYTES = 65536
_SKIP_DIRS = frozenset({".git", "node_modules", "__pycache__", ".venv", "venv", ".tox"})


def repo_secret_values(root: Path) -> list[str]:
    """The secret values kept in a repository's secret files (``SECRET_FILES``).

    From a ``.env*`` file, each ``NAME=value`` value (6 characters or more); from a
    ``*.pem``, ``*.key`` or ``id_*`` file (``*.pub`` aside), each line of 16
    characters or more that is not a ``-----BEGIN/END`` marker.

    Args:
        root: the worktree.

    Returns:
        The values, longest first (so a longer secret is redacted before its parts).
    """
    values: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        for name in filenames:
            if name.endswith(".pub") or not any(fnmatch.fnmatchcase(name, g) for g in SECRET_FILES):
                continue
            try:
                with open(os.path.join(dirpath, name), encoding="utf-8", errors="replace") as fh:
                    text = fh.read(_SECRET_FILE_BYTES)
            except OSError:
                continue
            for line in text.splitlines():
                line = line.strip()
                if name.startswith(".env"):
                    value = line.partition("=")[2].strip().strip("'\"")
                    if "=" in line and not line.startswith("#") and len(value) >= 6:
                        values.add(value)
                elif len(line) >= 16 and not line.startswith("-----"):
                    values.add(line)
    return sorted(values, key=len, reverse=True)


def redact_secrets(text: str, values: Sequence[str] = ()) -> str:
    """Replace secret values: ``values`` (from the repo's secret files), secret-looking
    environment variables, and API-key-like tokens."""
    for value in values:
        text = text.replace(value, "[redacted]")
    for name, value in os.environ.items():
        if SECRET_NAME.search(name) and len(value) >= 8 and value in text:
            text = text.replace(value, "[redacted]")
    return _KEY_LIKE.sub("[redacted]", text)


def build_context(sandbox: Sandbox, group: Sequence[Finding], feedback: str | None = None,
                  max_chars: int = 24000, *,
                  denylist: Sequence[str] = DEFAULT_LLM_DENYLIST) -> str:
    """Select and render the context a model needs to fix one group of findings.

    Args:
        sandbox: the worktree to read (its current tree; nothing is written).
        group: the findings to fix.
        feedback: why the previous attempt was rejected (gate output), or None.
        max_chars: upper bound of the returned text, in characters.
        denylist: globs of files never to quote (the policy denylist).

    Returns:
        Markdown-ish text: findings first, then feedback, then source snippets
        with line numbers, at most ``max_chars`` characters.
    """
    root = sandbox.path.resolve()
    head: list[str] = []
    snippets: list[_Snippet] = []
    failure_chars = min(MAX_FAILURE_CHARS, max(max_chars // (3 * max(len(group), 1)), 300))
    for number, finding in enumerate(group, start=1):
        head.append(_describe(finding, number, len(group)))
        if finding.detail:
            head.append(_failure_text(finding, failure_chars))
        snippets.extend(_snippets_for(root, finding))
    if feedback:
        text, limit = feedback.strip(), min(MAX_FEEDBACK_CHARS, max(max_chars // 4, 300))
        if len(text) > limit:
            text = "[...]\n" + text[-limit:]
        head.append("## Your previous attempt was rejected\n" + text)
    secrets = repo_secret_values(root)
    rendered = [redact_secrets(text, secrets)
                for text in _render(root, _merge(snippets, denylist))]
    return _fit(redact_secrets("\n\n".join(head), secrets), rendered, max_chars)


def _describe(finding: Finding, number: int, total: int) -> str:
    where = finding.path + (f":{finding.line}" if finding.line else "")
    lines = [f"## Finding {number} of {total}",
             f"- tool: {finding.source}, rule: {finding.rule}, severity: {finding.severity}",
             f"- location: {where}" + (f" (in {finding.symbol})" if finding.symbol else ""),
             f"- message: {finding.message.strip()}"]
    if finding.test_id:
        lines.append(f"- failing test: {finding.test_id}")
    if finding.url:
        lines.append(f"- rule documentation: {finding.url}")
    return "\n".join(lines)


def _failure_text(finding: Finding, limit: int) -> str:
    """The failure text; a long one is cut to its error lines and frame locations."""
    detail = (finding.detail or "").strip("\n")
    if len(detail) > limit:
        keep = [line for line in detail.splitlines()
                if line.startswith(("E ", ">")) or re.match(r"^\S.*\.py:\d+:", line)]
        compact = "\n".join(dict.fromkeys(keep))
        detail = compact if 0 < len(compact) <= limit else detail
        if len(detail) > limit:
            detail = "[...]\n" + detail[-limit:]
    title = "Failure output" if finding.source == "pytest" else "Details"
    return f"### {title}\n```\n{detail}\n```"


def _snippets_for(root: Path, finding: Finding) -> list[_Snippet]:
    out: list[_Snippet] = []
    if finding.source == "pytest" and finding.test_id:
        out.extend(_test_snippets(root, finding))
        out.extend(_suspect_snippets(root, finding))
    frames = nav.traceback_frames(root, finding.detail) if finding.detail else []
    locations = frames[-6:]
    if finding.line and nav.repo_relative(root, finding.path) == finding.path:
        locations.append(nav.Location(finding.path, finding.line))
    for loc in reversed(locations):  # the innermost frame first: it matters most
        out.extend(_around(root, loc, "traceback frame" if loc in frames else "finding"))
    if not finding.line and nav.repo_relative(root, finding.path) == finding.path:
        out.extend(_around(root, nav.Location(finding.path, 0), "finding"))
    return out


def _suspect_snippets(root: Path, finding: Finding) -> list[_Snippet]:
    """The definition a failing test's root cause names (``path::function``: its innermost
    traceback frame, or the line the per-test coverage suspects most)."""
    path, _, name = (finding.root_cause or "").partition("::")
    if not name or nav.repo_relative(root, path) != path:
        return []
    text = nav.read_text(root / path)
    tree = nav.parse_module(text) if text is not None else None
    node = next((n for n in ast.walk(tree) if isinstance(
        n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == name),
        None) if tree is not None else None
    if node is None:
        return []
    return _around(root, nav.Location(path, node.lineno), "the suspected root cause")


def _test_snippets(root: Path, finding: Finding) -> list[_Snippet]:
    file_part, names = nav.split_nodeid(finding.test_id or "")
    for rel in dict.fromkeys([file_part, finding.path]):
        if not rel or nav.repo_relative(root, rel) != rel:
            continue
        text = nav.read_text(root / rel)
        tree = nav.parse_module(text) if text is not None else None
        found = nav.find_test(root, rel, tree, names) if tree is not None and names else None
        if found is None:
            continue
        start, end = nav.span(found.node)
        out = [_Snippet(found.path, start, end, f"failing test {finding.test_id}")]
        called = nav.references(root, found.path, found.tree, [found.node])
        if found.owner is not None:  # class attributes that configure the test
            attributes: list[ast.AST] = [n for n in found.owner.body if not isinstance(
                n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
            called += [loc for loc in nav.references(root, rel, tree, attributes)
                       if loc not in called]
        for loc in called[:MAX_CALLEES]:
            out.extend(_around(root, loc, "called by the test"))
        return out
    return []


def _around(root: Path, loc: nav.Location, why: str) -> list[_Snippet]:
    """The enclosing definition of a line, or the whole file when it is short."""
    text = nav.read_text(root / loc.path)
    if text is None:
        return []
    lines = text.splitlines()
    if len(lines) < WHOLE_FILE_LINES:
        return [_Snippet(loc.path, 1, max(len(lines), 1), why, whole=True)]
    tree = nav.parse_module(text)
    out: list[_Snippet] = []
    block = nav.import_block(tree) if tree is not None else None
    if block is not None:
        out.append(_Snippet(loc.path, block[0], block[1], "imports"))
    node = nav.enclosing(tree, loc.line) if tree is not None and loc.line else None
    start, end = nav.span(node) if node is not None else (loc.line - WINDOW, loc.line + WINDOW)
    if loc.line and end - start + 1 > MAX_SNIPPET_LINES:
        start, end = loc.line - WINDOW, loc.line + WINDOW
    if not loc.line:
        start, end = 1, min(len(lines), MAX_SNIPPET_LINES // 2)
    name = getattr(node, "name", None)
    label = f"{why}, in {name}" if name else why
    out.append(_Snippet(loc.path, max(start, 1), min(end, len(lines)), label))
    return out


def _merge(snippets: list[_Snippet], denylist: Sequence[str]) -> list[_Snippet]:
    """Drop denylisted files; merge overlapping or adjacent ranges of one file."""
    merged: list[_Snippet] = []
    for snip in snippets:
        if matches_denylist(snip.path, denylist):
            continue
        same = [m for m in merged if m.path == snip.path]
        if any(m.whole for m in same):
            continue
        if snip.whole:
            merged = [m for m in merged if m.path != snip.path]
            merged.append(snip)
            continue
        for existing in same:
            if snip.start <= existing.end + 1 and existing.start <= snip.end + 1:
                existing.start, existing.end = min(existing.start, snip.start), max(
                    existing.end, snip.end)
                if snip.label not in existing.label:
                    existing.label = f"{existing.label}; {snip.label}"
                break
        else:
            merged.append(_Snippet(snip.path, snip.start, snip.end, snip.label))
    return merged


def _render(root: Path, snippets: list[_Snippet]) -> list[str]:
    out = []
    for snip in snippets:
        lines = (nav.read_text(root / snip.path) or "").splitlines()
        body = "\n".join(f"{n:>5} | {lines[n - 1]}" for n in range(snip.start, snip.end + 1)
                         if n <= len(lines))
        where = "whole file" if snip.whole else f"lines {snip.start}-{snip.end}"
        out.append(f"### {snip.path} ({where}; {snip.label})\n```python\n{body}\n```")
    return out


def _fit(head: str, snippets: list[str], max_chars: int) -> str:
    """Findings and feedback always, then as many snippets as fit in ``max_chars``."""
    if len(head) > max_chars:
        return head[: max_chars - 6] + "\n[...]"
    parts, size, left_out = [head], len(head), 0
    if snippets:
        parts.append("# Relevant source (line numbers are not part of the code)")
        size += len(parts[-1]) + 2
    for text in snippets:
        if size + len(text) + 2 <= max_chars - 80:
            parts.append(text)
            size += len(text) + 2
        else:
            left_out += 1
    if left_out:
        parts.append(f"[{left_out} more snippet(s) left out to stay under {max_chars} characters]")
    return "\n\n".join(parts)
