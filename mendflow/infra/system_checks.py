"""Health checks of the machine and of mendflow's state (``mendflow doctor``).

Each check returns a :class:`Check`: its status (``ok``, ``warn`` or
``fail``), what was found, and what was done or should be done. The machine's
checks (disk, memory, tools, isolation, the Prefect API) are here; the checks of
mendflow's leftovers (locks, worktrees, orphaned processes), which ``repair``
cleans, are in :mod:`mendflow.infra.leftover_checks`. :func:`run_checks` runs all.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

from mendflow.core.config import HealthConfig, MendflowConfig
from mendflow.core.errors import MendflowError
from mendflow.infra.isolation import INSTALL_HINT, cgroup_root, probe_bwrap
from mendflow.infra.layout import StateLayout
from mendflow.infra.leftover_checks import (  # noqa: F401  (re-exported: doctor's checks)
    Check,
    check_git_worktrees,
    check_locks,
    check_orphans,
    check_state_worktrees,
    known_repositories,
)
from mendflow.infra.runner import run_process, sandbox_environ

TOOLS = ("git", "python", "ruff", "mypy", "bandit", "pytest", "coverage")
TOOL_TIMEOUT_S = 60.0
PREFECT_TIMEOUT_S = 5.0
_MB = 1024 * 1024


def _existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk_space(path: Path, config: HealthConfig, name: str | None = None) -> Check:
    """Check the free disk space of the filesystem holding ``path`` (one ``statvfs`` call).

    Args:
        path: a directory or file (a missing path is measured at its nearest existing parent).
        config: the thresholds (``min_free_disk_mb`` fails, ``warn_free_disk_mb`` warns).
        name: the check's name (default ``disk: <path>``).

    Returns:
        The check; ``found`` gives the free MiB.
    """
    free_mb = shutil.disk_usage(_existing(path)).free // _MB
    found = f"{free_mb} MiB free at {path}"
    name = name or f"disk: {path}"
    if free_mb < config.min_free_disk_mb:
        return Check(name=name, status="fail", found=found,
                     action=f"free disk space: at least {config.min_free_disk_mb} MiB are needed")
    if free_mb < config.warn_free_disk_mb:
        return Check(name=name, status="warn", found=found,
                     action=f"free disk space soon (below {config.warn_free_disk_mb} MiB)")
    return Check(name=name, status="ok", found=found)


def check_memory(config: HealthConfig) -> Check:
    """Check the available memory (psutil ``virtual_memory().available``) against ``min_free_memory_mb``."""
    available_mb = psutil.virtual_memory().available // _MB
    found = f"{available_mb} MiB available"
    if available_mb < config.min_free_memory_mb:
        return Check(name="memory", status="fail", found=found,
                     action=f"free memory: at least {config.min_free_memory_mb} MiB are needed")
    return Check(name="memory", status="ok", found=found)


def tool_executable(tool: str) -> str | None:
    """Return the executable mendflow runs for ``tool``: beside ``sys.executable``, else on PATH."""
    if tool == "python":
        return sys.executable
    beside = Path(sys.executable).parent / tool
    if tool != "git" and beside.is_file():
        return str(beside)
    return shutil.which(tool)


def check_tool(tool: str) -> Check:
    """Check that a tool runs, and report its version (``<tool> --version``, first line)."""

    name = f"tool: {tool}"
    executable = tool_executable(tool)
    if executable is None:
        return Check(name=name, status="fail", found="not found",
                     action="install mendflow with its dependencies (pip install mendflow)"
                     if tool != "git" else "install git")
    try:
        result = run_process([executable, "--version"], cwd=Path(tempfile.gettempdir()),
                             timeout_s=TOOL_TIMEOUT_S,
                             env=sandbox_environ())
    except MendflowError as err:
        return Check(name=name, status="fail", found=err.message, action=err.hint)
    lines = [line.strip() for line in (result.stdout + "\n" + result.stderr).splitlines() if line.strip()]
    if result.returncode != 0 or not lines:
        return Check(name=name, status="fail", found=f"{executable} --version failed: "
                     f"{result.tail(3) or 'exit ' + str(result.returncode)}",
                     action="reinstall it (pip install --force-reinstall mendflow)")
    return Check(name=name, status="ok", found=f"{lines[0]} ({executable})")


def check_tools() -> list[Check]:
    """Check every tool mendflow runs (:data:`TOOLS`), concurrently; a missing one fails."""
    with ThreadPoolExecutor(max_workers=len(TOOLS)) as pool:
        return list(pool.map(check_tool, TOOLS))


def configured_api_url() -> str | None:
    """Return the Prefect API URL missions will use: ``PREFECT_API_URL``, else Prefect's profile."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or None


def check_prefect_api(url: str | None = None, timeout_s: float = PREFECT_TIMEOUT_S) -> Check:
    """Check that the Prefect API answers ``GET <url>/health`` (httpx).

    Args:
        url: the API URL (``.../api``); None = :func:`configured_api_url`. With
            no URL Prefect runs in ephemeral mode: nothing to reach.
        timeout_s: seconds to wait for the answer.

    Returns:
        ok when it answers 200 or in ephemeral mode; fail otherwise.
    """
    url = url if url is not None else configured_api_url()
    if not url:
        return Check(name="prefect api", status="ok", found="ephemeral mode (no server needed)")
    action = "start the server (`prefect server start`) or unset PREFECT_API_URL for ephemeral mode"
    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=timeout_s)
    except httpx.HTTPError as err:
        return Check(name="prefect api", status="fail",
                     found=f"{url} unreachable ({type(err).__name__}: {err})", action=action)
    if response.status_code != 200:
        return Check(name="prefect api", status="fail",
                     found=f"{url}/health answered HTTP {response.status_code}", action=action)
    return Check(name="prefect api", status="ok", found=f"{url} reachable")


def check_isolation(config: MendflowConfig) -> Check:
    """Does bubblewrap isolate the target's code here (``sandbox.isolation``)?

    Runs the same ``bwrap`` command line a mission uses on ``true``.

    Returns:
        ``ok`` when it works (and how the process limit is enforced); ``fail`` when
        ``isolation: bwrap`` and it does not; ``warn`` for ``auto`` without it (a
        model fixer will refuse to run) and for ``none``.
    """
    sandbox = config.sandbox
    if sandbox.isolation == "none":
        return Check(name="isolation", status="warn",
                     found="sandbox.isolation is none: the target's code runs unisolated",
                     action="set sandbox.isolation: auto once bubblewrap is installed")
    works, why = probe_bwrap(sandbox.limits)
    if works:
        pids = ("pids cgroup" if cgroup_root() is not None else
                "RLIMIT_NPROC" if os.geteuid() != 0 else "not enforced (root, no pids cgroup)")
        return Check(name="isolation", status="ok",
                     found=f"{why}: no network, read-only machine, limits "
                           f"(process count: {pids})")
    status = "fail" if sandbox.isolation == "bwrap" else "warn"
    return Check(name="isolation", status=status, found=f"bubblewrap does not work: {why}",
                 action=INSTALL_HINT)


def disk_checks(config: MendflowConfig, layout: StateLayout, repos: list[Path]) -> list[Check]:
    """Check the free disk of the state dir and of each repository's filesystem (once per filesystem)."""
    state = layout.root
    checks, seen = [check_disk_space(state, config.health, name="disk: state dir")], {state.stat().st_dev}
    for repo in repos:
        device = _existing(repo).stat().st_dev
        if device not in seen:
            seen.add(device)
            checks.append(check_disk_space(repo, config.health, name=f"disk: {repo}"))
    return checks


def run_checks(config: MendflowConfig, layout: StateLayout, repair: bool = False,
               repos: list[Path] | None = None) -> list[Check]:
    """Run every health check (and, with ``repair``, clean mendflow's leftovers).

    Args:
        config: the configuration (``health`` thresholds).
        layout: mendflow's state directory, resolved (from ``mission.state_dir``).
        repair: remove stale locks and worktrees, forget missing mendflow worktrees, stop orphans.
        repos: repositories whose disk is checked; None = those mendflow worked on.

    Returns:
        The checks in order: disk, memory, tools, isolation, Prefect API, locks, worktrees, orphans.
    """
    repos = known_repositories(layout) if repos is None else repos
    return [*disk_checks(config, layout, repos), check_memory(config.health), *check_tools(),
            check_isolation(config), check_prefect_api(), check_locks(layout, repair),
            check_state_worktrees(layout, repair),
            check_git_worktrees(layout, repair), check_orphans(layout, repair)]


__all__ = ["Check", "check_disk_space", "check_isolation", "check_git_worktrees", "check_locks",
           "check_memory", "check_orphans", "check_prefect_api", "check_state_worktrees",
           "check_tool", "check_tools", "configured_api_url", "known_repositories", "run_checks"]
