"""Helpers shared by the detectors: the tools' home outside the worktree, paths, repo configs.

Every detector runs its tool in the sandbox worktree with a private HOME and
caches that live *beside* the worktree (never inside it), so that a
measurement leaves no untracked file behind and reads no user-level config.
"""

from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path, PurePosixPath
from typing import Any

from mendflow.core.errors import ToolError
from mendflow.core.models import Sandbox, ToolResult
from mendflow.infra.gitops import run_git
from mendflow.infra.layout import tool_home_path
from mendflow.infra.runner import ProcessResult, sandbox_environ

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TEST_DIR_NAMES = frozenset({"tests", "test", "testing"})
# Top-level helper scripts that are not library code: no coverage or mypy findings for them.
NOT_LIBRARY_FILES = frozenset({"setup.py", "conftest.py", "noxfile.py", "fabfile.py", "dodo.py"})
# Top-level directories that hold no library code by convention.
NOT_LIBRARY_TOP_DIRS = frozenset({"docs", "doc", "build", "dist", "examples", "example",
                                  "benchmarks", "bench", "scripts"})
VENDORED_DIR_NAMES = frozenset({"site-packages", "node_modules", "__pycache__"})
OUTPUT_TAIL_LINES = 40


def tool_home_dir(sandbox: Sandbox) -> Path:
    """Return (creating it) the per-sandbox directory of the tools' HOME and caches.

    It holds the tools' private HOME and mypy's cache.

    Args:
        sandbox: the sandbox whose worktree is measured.

    Returns:
        ``<worktree parent>/.<worktree name>.mendflow-tools``.
    """
    path = tool_home_path(sandbox.path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def tool_environ(sandbox: Sandbox, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Build a tool's environment: secrets scrubbed, private HOME, no bytecode written.

    ``PYTHONDONTWRITEBYTECODE`` keeps ``__pycache__`` (and pytest's rewritten
    test modules) out of the worktree while still reading the target env's
    precompiled site-packages.

    Args:
        sandbox: the sandbox the tool runs in.
        extra: more variables (for example ``COVERAGE_FILE``).

    Returns:
        The environment mapping for :func:`mendflow.infra.runner.run_process`.
    """
    tool_home = tool_home_dir(sandbox)
    variables = {"PYTHONDONTWRITEBYTECODE": "1", "NO_COLOR": "1"}
    variables.update(extra or {})
    return sandbox_environ(home=tool_home / "home", extra=variables)


def relative_posix(root: Path, filename: str) -> str | None:
    """Turn a path a tool printed into a POSIX path relative to the worktree root.

    Args:
        root: the worktree root.
        filename: absolute, or relative to ``root`` (``./pkg/a.py`` included).

    Returns:
        The relative POSIX path, or None if the file lies outside ``root``.
    """
    path = Path(filename)
    if not path.is_absolute():
        path = root / path
    normalized = Path(os.path.normpath(path))
    for base in (root, root.resolve()):
        try:
            return normalized.relative_to(base).as_posix()
        except ValueError:
            continue
    try:
        return normalized.resolve().relative_to(root.resolve()).as_posix()
    except (ValueError, OSError):
        return None


def is_test_path(path: str) -> bool:
    """Is a repository-relative POSIX path a test file (``tests/``, ``test_*.py`` ...)?"""
    parts = PurePosixPath(path).parts
    name = parts[-1] if parts else ""
    return (any(part in TEST_DIR_NAMES for part in parts[:-1]) or name.startswith("test_")
            or name.endswith("_test.py") or name == "conftest.py")


def is_library_path(path: str) -> bool:
    """Is a repository-relative path library code (not a test, doc, build or helper script)?"""
    parts = PurePosixPath(path).parts
    if not parts or is_test_path(path) or parts[-1] in NOT_LIBRARY_FILES:
        return False
    if len(parts) > 1 and parts[0] in NOT_LIBRARY_TOP_DIRS:
        return False
    return not any(part in VENDORED_DIR_NAMES or part.startswith(".") for part in parts[:-1])


def output_tail(proc: ProcessResult, lines: int = OUTPUT_TAIL_LINES) -> str:
    """Return the last lines of a process's standard output and error."""
    return proc.tail(lines)


def failed_result(tool: str, proc: ProcessResult, why: str, **fields: Any) -> ToolResult:
    """Build the ``ok=False`` result of a tool that crashed or printed unreadable output.

    Args:
        tool: the :class:`ToolResult` tool name.
        proc: the finished process.
        why: one sentence saying what went wrong.
        **fields: more :class:`ToolResult` fields (``test_run`` ...).

    Returns:
        The result; ``error`` holds ``why`` and the output tail.
    """
    tail = output_tail(proc)
    error = f"{why}\n{tail}" if tail else why
    return ToolResult(tool=tool, ok=False, error=error, command=proc.args,  # type: ignore[arg-type]
                      exit_code=proc.returncode, duration_s=proc.duration_s, **fields)


def load_pyproject(root: Path) -> dict[str, Any]:
    """Return the parsed ``pyproject.toml`` of ``root`` ({} if missing or not valid TOML)."""
    try:
        with (root / "pyproject.toml").open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def tool_table(pyproject: dict[str, Any], *names: str) -> dict[str, Any] | None:
    """Return ``[tool.<names...>]`` of a parsed pyproject, or None if absent."""
    table: Any = pyproject.get("tool")
    for name in names:
        if not isinstance(table, dict) or name not in table:
            return None
        table = table[name]
    return table if isinstance(table, dict) else None


def read_ini(path: Path) -> configparser.ConfigParser | None:
    """Parse an INI-style file (``setup.cfg``, ``tox.ini``, ``mypy.ini`` ...).

    Returns:
        The parser, or None if the file is missing or not valid INI.
    """
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        parser.read_string(text, source=str(path))
    except (OSError, configparser.Error):
        return None
    return parser


def tracked_python_files(root: Path) -> list[str]:
    """List the tracked ``.py`` files of a worktree that exist on disk (``git ls-files``).

    Args:
        root: the worktree (or repository) root.

    Returns:
        POSIX paths relative to ``root``, sorted.

    Raises:
        ToolError: ``root`` is not a git worktree or git failed.
    """
    out = run_git(root, "ls-files", "-z", "--", "*.py", error=ToolError,
                  hint="measure a git worktree (mendflow's sandbox)")
    return sorted(p for p in out.split("\0") if p.endswith(".py") and (root / p).is_file())


def first_on_pythonpath(environ: dict[str, str], directory: Path) -> dict[str, str]:
    """``environ`` with ``directory`` first on ``PYTHONPATH`` (where mendflow's pytest and
    coverage plugins are written for one run), the entries already there kept after it."""
    path = environ.get("PYTHONPATH")
    return {**environ, "PYTHONPATH": str(directory) + (os.pathsep + path if path else "")}
