"""``mendflow doctor``'s checks of mendflow's own leftovers, and their repair.

With ``repair`` the leftovers of killed missions are cleaned, and only those:
stale locks, worktree directories under ``<state>/worktrees`` that git no
longer knows, git's records of mendflow worktrees whose directory is gone (in
repositories mendflow worked on), and orphaned processes that mendflow
recorded (see :mod:`mendflow.infra.owned_processes`). Each check returns a
:class:`Check`; :mod:`mendflow.infra.system_checks` runs them with the checks of
the machine and re-exports them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from mendflow.core.errors import MendflowError
from mendflow.infra.gitops import list_worktrees, run_git
from mendflow.infra.layout import StateLayout
from mendflow.infra.lock import is_stale, read_locks, remove_stale_lock
from mendflow.infra.owned_processes import kill_orphan, orphans

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
