"""The log source: tracebacks in application logs, grouped, as ``source: log`` findings.

``tools.logs: {enabled: true, paths: [globs]}`` names the logs (relative to the
repository root, or absolute). Every traceback in them is parsed
(:mod:`mendflow.core.tracebacks`), grouped by fingerprint
(:mod:`mendflow.core.error_groups`), and each group whose innermost application
frame maps into the repository becomes one finding (id = the group's
fingerprint, rule = the exception type, severity high), ranked with the
findings of the other tools.

Log findings are reported by missions; they are fixed by the heal flow
(``mendflow heal run``), which demands a reproduction first, so model fixers
of a mission leave them alone (:attr:`mendflow.tasks.fix.llm.LLMFixer.skip_sources`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from mendflow.core.config import ToolsConfig
from mendflow.core.error_groups import ErrorGroup, RepoFiles, group_events, group_finding
from mendflow.core.errors import ToolError
from mendflow.core.models import Sandbox, ToolResult
from mendflow.infra.gitops import run_git
from mendflow.infra.logfiles import expand_paths, read_all


def repo_files(root: Path) -> RepoFiles:
    """The tracked files of a repository or worktree (``git ls-files``), to map frames onto.

    Raises:
        ToolError: ``root`` is not a git worktree.
    """
    out = run_git(root, "ls-files", "-z", error=ToolError,
                  hint="point mendflow at a git repository")
    return RepoFiles(p for p in out.split("\0") if p)


def scan_log_files(paths: Iterable[Path], root: Path | None = None) -> list[ErrorGroup]:
    """Parse and group the tracebacks of log files.

    Args:
        paths: log files (plain, rotated, ``.gz``, JSON lines).
        root: a repository to locate the frames in; None = none.

    Returns:
        The groups, largest first.

    Raises:
        ConfigError: a file is missing or unreadable.
        ToolError: ``root`` is not a git repository.
    """
    repo = repo_files(root) if root is not None else None
    return group_events(read_all(paths), repo)


def measure_logs(sandbox: Sandbox, tools: ToolsConfig) -> ToolResult:
    """The ``log`` tool result of a mission: one finding per located error group.

    Args:
        sandbox: the worktree (relative log globs start from the repository root).
        tools: the ``tools`` config (``logs.enabled``, ``logs.paths``).

    Returns:
        A ``log`` :class:`ToolResult`; ``ok=False`` with ``error`` when a log is unreadable.
    """
    if not tools.logs.enabled or not tools.logs.paths:
        return ToolResult(tool="log", ok=True)
    start = time.monotonic()
    files = expand_paths(tools.logs.paths, sandbox.repo_root)
    repo = repo_files(sandbox.path)
    try:
        groups = group_events(read_all(files), repo)
    except Exception as err:  # noqa: BLE001  (a bad log never stops a mission)
        return ToolResult(tool="log", ok=False, error=str(err),
                          duration_s=time.monotonic() - start)
    findings = tuple(f for f in (group_finding(g, repo) for g in groups) if f is not None)
    return ToolResult(tool="log", findings=findings, duration_s=time.monotonic() - start)
