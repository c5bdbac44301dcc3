"""Where mendflow keeps its own state (never inside the user's repository).

Layout under the state directory (``$MENDFLOW_HOME``, default ``~/.mendflow``)::

    envs/<fingerprint>/            cached target venvs
    worktrees/<mission-id>/        sandboxes (git worktrees)
    missions/<mission-id>/report/  reports of one mission
    missions/<mission-id>/backups/ copies of files before they were changed
"""

from __future__ import annotations

import os
from pathlib import Path


def state_dir(override: Path | None = None) -> Path:
    """Return the state directory, creating it.

    Args:
        override: a configured directory (``mission.state_dir``), or None.

    Returns:
        The absolute path of the state directory.
    """
    base = override or Path(os.environ.get("MENDFLOW_HOME") or Path.home() / ".mendflow")
    base = Path(base).expanduser().resolve()
    base.mkdir(parents=True, exist_ok=True)
    return base


def mission_dir(mission_id: str, override: Path | None = None) -> Path:
    path = state_dir(override) / "missions" / mission_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def worktree_dir(mission_id: str, override: Path | None = None) -> Path:
    path = state_dir(override) / "worktrees"
    path.mkdir(parents=True, exist_ok=True)
    return path / mission_id


def envs_dir(override: Path | None = None) -> Path:
    path = state_dir(override) / "envs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def tool_state_path(worktree: Path) -> Path:
    """Where the tools' private HOME and caches of one sandbox live: beside its worktree.

    Args:
        worktree: the sandbox's worktree.

    Returns:
        ``<worktree parent>/.<worktree name>.mendflow-tools`` (not created).
    """
    return worktree.parent / f".{worktree.name}.mendflow-tools"
