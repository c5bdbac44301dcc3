"""A repository's tool caches kept from one mission to the next (mypy's incremental cache).

Each sandbox has a private cache beside its worktree (:func:`~mendflow.infra.layout.tool_home_path`).
A mission's baseline starts from the repository's shared copy and, once its run is done,
replaces that copy with its own. Only a baseline writes the shared copy: it runs the
repository's own code, before any patch; a validation's cache, which model-written code
could have touched, stays private to its sandbox and goes with it.

mypy checks every cached module against its source (size, then content hash when the
path or the mtime differ, as they do in a new worktree), so a copy made from another
tree is still right: a changed module is checked again, the others are read from the cache.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from filelock import FileLock

from mendflow.infra.lock import repo_key

LOCK_TIMEOUT_S = 120.0
"""How long a copy waits for another mission's copy of the same cache, seconds."""


def shared_cache_dir(worktree: Path, repo_root: Path, tool: str) -> Path:
    """Where the repository's shared cache of ``tool`` lives (not created).

    Args:
        worktree: a sandbox's worktree (its parent is the state's ``worktrees/``).
        repo_root: the repository.
        tool: the tool's name (``mypy``).

    Returns:
        ``<worktree parent>/.shared-caches/<tool>-<repository key>``.
    """
    return worktree.parent / ".shared-caches" / f"{tool}-{repo_key(repo_root)}"


def seed_cache(shared: Path, private: Path) -> bool:
    """Copy the shared cache into an empty private one.

    Args:
        shared: the repository's shared cache (:func:`shared_cache_dir`).
        private: the sandbox's cache directory.

    Returns:
        True when a copy was made; False when the private cache already holds files or there
        is no shared cache yet (or it could not be read: the run then starts cold).
    """
    if (private.is_dir() and any(private.iterdir())) or not shared.is_dir():
        return False
    try:
        with FileLock(_lock_path(shared), timeout=LOCK_TIMEOUT_S):
            shutil.copytree(shared, private, dirs_exist_ok=True)
    except (OSError, TimeoutError):
        shutil.rmtree(private, ignore_errors=True)  # half a copy is worse than none
        return False
    return True


def save_cache(private: Path, shared: Path) -> bool:
    """Replace the shared cache with a copy of the private one.

    The copy is made aside, then renamed into place under a file lock: a mission that
    seeds meanwhile reads the old copy or the new one, never a mix.

    Args:
        private: the sandbox's cache, just written by a baseline run.
        shared: the repository's shared cache (:func:`shared_cache_dir`).

    Returns:
        True when saved; False when there was nothing to save or the copy failed (disk full:
        the next mission starts cold, nothing else changes).
    """
    if not private.is_dir() or not any(private.iterdir()):
        return False
    shared.parent.mkdir(parents=True, exist_ok=True)
    fresh = shared.with_name(f".{shared.name}.{uuid.uuid4().hex[:8]}.new")
    stale = shared.with_name(f".{shared.name}.{uuid.uuid4().hex[:8]}.old")
    try:
        shutil.copytree(private, fresh)
        with FileLock(_lock_path(shared), timeout=LOCK_TIMEOUT_S):
            if shared.exists():
                os.replace(shared, stale)
            os.replace(fresh, shared)
    except (OSError, TimeoutError):
        return False
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)
    return True


def _lock_path(shared: Path) -> Path:
    return shared.with_name(f".{shared.name}.lock")
