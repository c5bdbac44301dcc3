"""Health checks of the machine and of mendflow's state (``mendflow doctor``).

Each check returns a :class:`Check`: its status (``ok``, ``warn`` or
``fail``), what was found, and what was done or should be done. With
``repair`` the leftovers of killed missions are cleaned, and only those:
stale locks, worktree directories under ``<state>/worktrees`` that git no
longer knows, git's records of mendflow worktrees whose directory is gone (in
repositories mendflow worked on), and orphaned processes that mendflow
recorded (see :mod:`mendflow.infra.owned_processes`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import httpx
import psutil
from pydantic import BaseModel, ConfigDict

from mendflow.core.config import HealthConfig, MendflowConfig
from mendflow.core.errors import MendflowError
from mendflow.infra.gitops import list_worktrees, run_git
from mendflow.infra.isolation import INSTALL_HINT, cgroup_root, probe_bwrap
from mendflow.infra.layout import StateLayout
from mendflow.infra.lock import is_stale, read_locks, remove_stale_lock
from mendflow.infra.owned_processes import kill_orphan, orphans
from mendflow.infra.runner import run_process, sandbox_environ

TOOLS = ("git", "python", "ruff", "mypy", "bandit", "pytest", "coverage")
TOOL_TIMEOUT_S = 60.0
PREFECT_TIMEOUT_S = 5.0
_MB = 1024 * 1024
_TOOLS_DIR = re.compile(r"\.(.+)\.mendflow-tools")


class Check(BaseModel):
    """The outcome of one health check.

    Attributes:
        name: what was checked (``disk: state dir``, ``tool: ruff``, ``locks`` ...).
        status: ``ok``, ``warn`` (a mission can run) or ``fail`` (it cannot, or should not).
        found: what was found, in a few words.
        action: what was done (with repair) or what to do; None when nothing is needed.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    status: Literal["ok", "warn", "fail"]
    found: str
    action: str | None = None


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


def known_repositories(layout: StateLayout) -> list[Path]:
    """Return the repositories mendflow worked on that still exist.

    They are read from the missions' ``report/session_data.json`` and
    ``mission.json`` (field ``repository``) and from the locks.

    Args:
        layout: mendflow's state directory, resolved.

    Returns:
        Real paths, sorted, without duplicates.
    """
    base = layout.root
    names = {info.repo for info in read_locks(layout)}
    for pattern in ("missions/*/report/session_data.json", "missions/*/mission.json"):
        for path in base.glob(pattern):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and isinstance(data.get("repository"), str):
                names.add(data["repository"])
    return sorted({Path(os.path.realpath(n)) for n in names if Path(n).is_dir()})


def check_locks(layout: StateLayout, repair: bool = False) -> Check:
    """Report the mission locks: live ones (missions running), and stale ones (removed with repair)."""
    locks = read_locks(layout)
    stale = [info for info in locks if is_stale(info)]
    live = [info for info in locks if info not in stale]
    running = ", ".join(f"{i.mission_id} (pid {i.pid}, {i.hostname})" for i in live)
    found = (f"{len(live)} running: {running}" if live else "no mission running")
    if not stale:
        return Check(name="locks", status="ok", found=found)
    found += "; stale: " + ", ".join(f"{i.mission_id} (pid {i.pid} gone)" for i in stale)
    if not repair:
        return Check(name="locks", status="warn", found=found,
                     action="run `mendflow doctor --repair` to remove the stale locks")
    removed = [i.mission_id for i in stale if remove_stale_lock(i, layout)]
    return Check(name="locks", status="ok" if len(removed) == len(stale) else "warn", found=found,
                 action=f"removed the stale locks of {', '.join(removed) or 'none'}")


def _live_missions(layout: StateLayout) -> set[str]:
    return {info.mission_id for info in read_locks(layout) if not is_stale(info)}


def _listing(names: list[str], limit: int = 10) -> str:
    """``a, b, c`` with at most ``limit`` names, then ``(+N more)``."""
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _summary(check: str, found: list[str], done: list[str], failed: list[str], repair: bool,
             hint: str) -> Check:
    if not found:
        return Check(name=check, status="ok", found="none stale")
    text = f"{len(found)} stale: {_listing(found)}"
    if not repair:
        return Check(name=check, status="warn", found=text, action=hint)
    action = "; ".join(part for part in (f"removed {_listing(done)}" if done else "",
                                         f"could not remove {_listing(failed)}" if failed else "")
                       if part)
    return Check(name=check, status="warn" if failed else "ok", found=text, action=action)


def _git_knows(path: Path) -> bool:
    """True if ``path`` is the top of a worktree git knows (its admin entry still exists)."""

    if path.is_symlink() or not (path / ".git").is_file():
        return False
    top = run_git(path, "rev-parse", "--show-toplevel", check=False).strip()
    return bool(top) and Path(top).resolve() == path.resolve()


def _stale_state_dirs(root: Path, live: set[str]) -> list[Path]:
    """The entries of ``<state>/worktrees`` that no live lock holds and git does not know.

    A tool-home directory ``.<mission>.mendflow-tools`` (tasks.detect.common) goes
    with its mission's worktree: it is stale when that worktree is missing or stale.
    """
    entries = sorted(p for p in root.iterdir() if p.is_dir() or p.is_symlink()) if root.is_dir() else []
    stale = {p.name for p in entries if not p.name.startswith(".") and p.name not in live
             and not _git_knows(p)}
    found = []
    for path in entries:
        tools = _TOOLS_DIR.fullmatch(path.name)
        if tools:
            mission = tools.group(1)
            if mission not in live and (mission in stale or not (root / mission).exists()):
                found.append(path)
        elif path.name in stale:
            found.append(path)
    return found


def check_state_worktrees(layout: StateLayout, repair: bool = False) -> Check:
    """Find directories under ``<state>/worktrees`` that git no longer knows and no live lock holds.

    A mission's tool-home directory (``.<mission>.mendflow-tools``) is stale
    with its worktree. With ``repair`` they are deleted (a symbolic link is
    unlinked, never followed).
    """
    root = layout.worktrees
    found, done, failed = [], [], []
    for path in _stale_state_dirs(root, _live_missions(layout)):
        found.append(path.name)
        if repair:
            try:
                path.unlink() if path.is_symlink() else shutil.rmtree(path)
                done.append(path.name)
            except OSError as err:
                failed.append(f"{path.name} ({err.strerror})")
    return _summary("worktrees: state dir", found, done, failed, repair,
                    f"run `mendflow doctor --repair` to delete them from {root}")


def _is_mendflow_entry(entry: dict[str, str], worktrees_root: Path) -> bool:
    path = Path(entry["worktree"])
    return entry.get("branch", "").startswith("refs/heads/mendflow/") or \
        path.parent.resolve() == worktrees_root.resolve()


def check_git_worktrees(layout: StateLayout, repair: bool = False) -> Check:
    """Find git worktree records whose directory is missing, in repositories mendflow worked on.

    With ``repair`` the records of mendflow's own worktrees (branch
    ``mendflow/*`` or a directory under ``<state>/worktrees``) are removed with
    ``git worktree remove --force --force``; other missing worktrees of those
    repositories (the user's, maybe on an unmounted drive) are only reported.
    Locked worktrees and those of running missions are left alone.
    """

    worktrees_root = layout.worktrees
    live = _live_missions(layout)
    found, done, failed, foreign = [], [], [], []
    for repo in known_repositories(layout):
        try:
            entries = list_worktrees(repo)[1:]  # the first one is the main worktree
        except MendflowError as err:
            failed.append(f"{repo} ({err.message})")
            continue
        for entry in entries:
            path = Path(entry["worktree"])
            if "locked" in entry or path.name in live or path.exists():
                continue
            if not _is_mendflow_entry(entry, worktrees_root):
                foreign.append(f"{path} in {repo}")
                continue
            found.append(f"{path} in {repo}")
            if repair:
                try:
                    run_git(repo, "worktree", "remove", "--force", "--force", str(path))
                    done.append(str(path))
                except MendflowError as err:
                    failed.append(f"{path} ({err.message})")
    check = _summary("worktrees: git", found, done, failed, repair,
                     "run `mendflow doctor --repair` to forget them (`git worktree remove`)")
    if foreign:
        extra = f"not mendflow's, left alone: {_listing(foreign)}"
        check = check.model_copy(update={"action": "; ".join(filter(None, (check.action, extra)))})
    return check


def check_orphans(layout: StateLayout, repair: bool = False) -> Check:
    """Find processes mendflow started whose mendflow process died (``owned_processes.orphans``).

    With ``repair`` each is stopped (:func:`mendflow.infra.owned_processes.kill_orphan`).
    """
    records = orphans(layout)
    if not records:
        return Check(name="orphaned processes", status="ok", found="none")
    names = [f"pid {r.pid} ({r.kind}: {' '.join(r.argv)})" for r in records]
    found = f"{len(records)} running without their mendflow: {_listing(names)}"
    if not repair:
        return Check(name="orphaned processes", status="warn", found=found,
                     action="run `mendflow doctor --repair` to stop them")
    stopped = [r for r in records if kill_orphan(r)]
    return Check(name="orphaned processes", status="ok" if len(stopped) == len(records) else "warn",
                 found=found, action=f"stopped {len(stopped)} of {len(records)}: "
                 + _listing([f"pid {r.pid}" for r in stopped]))


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
