"""Lint the worktree with mendflow's own ruff and normalize its JSON output.

``ruff check --output-format json`` finds the repository's ruff config
(``ruff.toml``, ``.ruff.toml``, ``pyproject.toml`` [tool.ruff], nested ones
included) by itself. A repository without any ruff config is checked with
``--isolated`` so that no config from a parent directory or the user's HOME
leaks in: ruff's defaults apply.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from mendflow.core.config import ToolsConfig
from mendflow.core.errors import EnvironmentSetupError, ToolError
from mendflow.core.findings import SourceIndex, disambiguate, make_finding
from mendflow.core.models import Finding, Sandbox, ToolResult
from mendflow.infra.gitops import run_git
from mendflow.infra.runner import run_process
from mendflow.tasks.detect.common import (
    failed_result,
    load_pyproject,
    read_ini,
    relative_posix,
    tool_environ,
    tool_table,
)
from mendflow.tasks.detect.python_floor import ruff_target_args
from mendflow.tasks.environment.plan import project_dirs

# Syntax errors and undefined names: the code cannot run as written.
SEVERE_PREFIXES = ("E9", "F63", "F7", "F82")
SYNTAX_CODES = frozenset({"E999", "invalid-syntax"})
RUFF_CONFIG_NAMES = ("ruff.toml", ".ruff.toml")


def ruff_executable() -> str:
    """Return mendflow's own ruff: the one beside ``sys.executable``, else the one on PATH.

    Raises:
        ToolError: ruff is not installed.
    """
    beside = Path(sys.executable).parent / "ruff"
    if beside.is_file():
        return str(beside)
    found = shutil.which("ruff")
    if found is None:
        raise ToolError("ruff is not installed", subject="ruff",
                        hint="install mendflow with its dependencies (pip install mendflow)")
    return found


def has_ruff_config(root: Path) -> bool:
    """Does the worktree track a ruff config (root or nested)?

    Args:
        root: the worktree root.

    Returns:
        True if a tracked ``ruff.toml``/``.ruff.toml`` exists, or a tracked
        ``pyproject.toml`` has a ``[tool.ruff]`` table.
    """
    listed = run_git(root, "ls-files", "-z", "--", "ruff.toml", ".ruff.toml", "pyproject.toml",
                     "*/ruff.toml", "*/.ruff.toml", "*/pyproject.toml", error=ToolError)
    for rel in filter(None, listed.split("\0")):
        path = root / rel
        if path.name in RUFF_CONFIG_NAMES and path.is_file():
            return True
        if path.name == "pyproject.toml" and tool_table(load_pyproject(path.parent), "ruff"):
            return True
    return False


def ruff_config_args(root: Path) -> list[str]:
    """Return ``["--isolated"]`` when the repository has no ruff config, else ``[]``.

    ``--isolated`` also stops ruff from reading ``requires-python``, so the
    oldest Python the repository declares (pyproject.toml, setup.cfg or
    setup.py) is passed as ``--target-version``: otherwise ruff targets the
    newest Python and its fixes (``Optional[X]`` → ``X | None`` ...) break the
    project on the Pythons it supports.

    The ruff fixer should pass the same arguments, so that it fixes exactly
    what this detector reports.
    """
    if has_ruff_config(root):
        return []
    return ["--isolated", *ruff_target_args(root), *_first_party_args(root), *NOT_RUFFS_NOQA,
            *flake8_line_args(root)]


def flake8_line_args(root: Path) -> list[str]:
    """The line length of the repository's flake8 config, for ruff run without a config.

    A fix that joins lines (UP032's f-strings, SIM114's merged branches) must not
    write a line the project's own linter refuses: tabulate 0.10.0 sets
    ``max-line-length = 99`` in tox.ini's ``[flake8]``. flake8 reads ``.flake8``,
    ``setup.cfg`` and ``tox.ini``; its default is 79.

    Returns:
        ``["--line-length", "N", "--extend-select", "E501"]``; ``[]`` without a
        ``[flake8]`` section, or when it ignores E501.
    """
    for name in (".flake8", "setup.cfg", "tox.ini"):
        parser = read_ini(root / name)
        if parser is None or not parser.has_section("flake8"):
            continue
        section = parser["flake8"]
        ignored = " ".join(section.get(key, "") for key in
                           ("ignore", "extend-ignore", "extend_ignore")).replace(",", " ")
        if any("E501".startswith(code) for code in ignored.split()):
            return []
        length = (section.get("max-line-length") or section.get("max_line_length") or "79")
        return ["--line-length", length.strip(), "--extend-select", "E501"] \
            if length.strip().isdigit() else []
    return []


NOT_RUFFS_NOQA = ["--extend-ignore", "RUF100"]
"""Without a ruff config, a ``# noqa`` serves the project's own linter (flake8), not ruff's
defaults: tabulate 0.10.0 lints with flake8 (``[flake8]`` in tox.ini) and ruff's RUF100 fix,
accepted by every gate, removed its ``# noqa: E731`` comments (flake8 then fails)."""


def _first_party_args(root: Path) -> list[str]:
    """ruff's ``src`` with a subdirectory project's folders (a monorepo's ``python/``): run
    from the root, isort took the project's own package for a third-party one (parse
    1.20.2 in python/: 3 I001 findings that ruff run in python/ does not report)."""
    try:
        projects = [p.removeprefix("./") for p in project_dirs(root) if p != "."]
    except EnvironmentSetupError:  # the root's pyproject.toml is broken: the install says so
        return []
    if not projects:
        return []
    src = [".", "src", *(f"{p}{tail}" for p in projects for tail in ("", "/src"))]
    return ["--config", f"src = {json.dumps(src)}"]


def measure_ruff(sandbox: Sandbox, tools: ToolsConfig) -> ToolResult:
    """Run ``ruff check --output-format json --no-cache --no-fix --exit-zero .`` in the worktree.

    ``--no-fix``: a repository whose config sets ``fix = true`` would otherwise
    have ruff rewrite the worktree during detection and report only what it
    could not fix.

    Args:
        sandbox: the worktree to lint.
        tools: the ``tools`` config (``ruff.args``, ``ruff.timeout_s`` seconds).

    Returns:
        A ``ruff`` :class:`ToolResult` with one finding per violation;
        ``ok=False`` (with ``error``) if ruff failed (bad config ...) or timed out.

    Raises:
        ToolError: ruff is not installed.
    """
    if not tools.ruff.enabled:
        return ToolResult(tool="ruff", ok=True)
    command = [ruff_executable(), "check", "--output-format", "json", "--no-cache", "--no-fix",
               "--exit-zero", *ruff_config_args(sandbox.path), *tools.ruff.args, "."]
    proc = run_process(command, cwd=sandbox.path, timeout_s=tools.ruff.timeout_s,
                       env=tool_environ(sandbox))
    if proc.timed_out:
        return failed_result("ruff", proc, f"ruff exceeded {tools.ruff.timeout_s:g} s")
    if proc.returncode != 0:
        return failed_result("ruff", proc, f"ruff failed (exit {proc.returncode})")
    try:
        findings = parse_ruff(proc.stdout, sandbox.path)
    except ToolError as err:
        return failed_result("ruff", proc, err.message)
    return ToolResult(tool="ruff", findings=tuple(findings), command=proc.args,
                      exit_code=proc.returncode, duration_s=proc.duration_s)


def parse_ruff(text: str, root: Path) -> list[Finding]:
    """Parse ruff's JSON output (a list of violations) into findings.

    Args:
        text: ruff's standard output with ``--output-format json``.
        root: the worktree root (paths are made relative to it).

    Returns:
        Findings with unique ids; violations in files outside ``root`` are left out.

    Raises:
        ToolError: the text is not ruff's JSON format.
    """
    try:
        items = json.loads(text or "[]")
        if not isinstance(items, list):
            raise TypeError("expected a JSON list")
    except (ValueError, TypeError) as err:
        raise ToolError(f"cannot parse ruff's JSON output: {err}", subject="ruff",
                        hint="check that mendflow's ruff is a supported version") from None
    index = SourceIndex(root)
    found = []
    for item in items:
        finding = _finding(item, root, index)
        if finding is not None:
            found.append(finding)
    return disambiguate(found)


def _finding(item: Any, root: Path, index: SourceIndex) -> Finding | None:
    if not isinstance(item, dict) or not item.get("filename"):
        return None
    path = relative_posix(root, str(item["filename"]))
    if path is None:
        return None
    code = str(item.get("code") or "invalid-syntax")
    location = item.get("location") or {}
    end = item.get("end_location") or {}
    fix = item.get("fix") or {}
    syntax = code in SYNTAX_CODES
    return make_finding(
        index, source="ruff", rule=code, path=path, line=location.get("row"),
        column=location.get("column"), end_line=end.get("row"),
        severity=ruff_severity(code), category="syntax" if syntax else "lint",
        message=str(item.get("message", "")),
        fixable=fix.get("applicability") == "safe",
        url=item.get("url"),
    )


def ruff_severity(code: str) -> str:
    """Map a ruff rule code to a severity.

    Returns:
        ``high`` for syntax errors and undefined names (E9, F63, F7, F82),
        ``medium`` for other pyflakes rules (F), ``low`` for the rest.
    """
    if code in SYNTAX_CODES or code.startswith(SEVERE_PREFIXES):
        return "high"
    return "medium" if code.startswith("F") else "low"
