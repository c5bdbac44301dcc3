"""Where mendflow keeps its own state (never inside the user's repository).

Layout under the state directory (``mission.state_dir``, else ``$MENDFLOW_HOME``, default
``~/.mendflow``)::

    envs/<fingerprint>/            cached target venvs
    worktrees/<mission-id>/        sandboxes (git worktrees)
    missions/<mission-id>/report/  reports of one mission
    missions/<mission-id>/backups/ copies of files before they were changed
    locks/ history/ procs/         repository locks, learned durations, owned processes

It is resolved once, at the flow or command boundary (:meth:`StateLayout.resolve`), and
the :class:`StateLayout` value is passed down; nothing below resolves it again.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


def tool_home_path(worktree: Path) -> Path:
    """Where the tools' private HOME and caches of one sandbox live: beside its worktree.

    Args:
        worktree: the sandbox's worktree.

    Returns:
        ``<worktree parent>/.<worktree name>.mendflow-tools`` (not created).
    """
    return worktree.parent / f".{worktree.name}.mendflow-tools"


class StateLayout(BaseModel):
    """mendflow's state directory, resolved once: every place mendflow keeps things.

    Resolve it once per mission (or command) with :meth:`resolve` and pass the value
    down; never re-resolve an override in the layers below. Directories are created
    by :meth:`ensure` (all of them) or by the user of one place.

    Attributes:
        root: the absolute state directory (``mission.state_dir``, else ``$MENDFLOW_HOME``,
            else ``~/.mendflow``).
    """

    model_config = ConfigDict(frozen=True)

    root: Path = Field(description="the absolute state directory")

    @classmethod
    def resolve(cls, override: Path | str | None = None) -> StateLayout:
        """Resolve the state directory and create it.

        Args:
            override: a configured directory (``mission.state_dir``), or None for
                ``$MENDFLOW_HOME`` (default ``~/.mendflow``).

        Returns:
            The layout; its root exists.
        """
        base = Path(override) if override else Path(
            os.environ.get("MENDFLOW_HOME") or Path.home() / ".mendflow")
        base = base.expanduser().resolve()
        base.mkdir(parents=True, exist_ok=True)
        return cls(root=base)

    @classmethod
    def of(cls, value: StateLayout | Path | str | None) -> StateLayout:
        """The layout a caller passed: a layout as is, an absolute (resolved) root wrapped.

        For callers that still hand down ``config.mission.state_dir`` (which
        :func:`mendflow.tasks.bookkeeping.load_mission_config` sets to the resolved
        root); None (a config that was never loaded by a flow, e.g. in a test) is
        resolved as :meth:`resolve` does.

        Args:
            value: a layout, the absolute state directory, or None.

        Returns:
            The layout.
        """
        if isinstance(value, StateLayout):
            return value
        if value is not None and Path(value).is_absolute():
            return cls(root=Path(value))
        return cls.resolve(value)

    @property
    def missions(self) -> Path:
        """``missions/``: one folder per mission (registry record, report, backups)."""
        return self.root / "missions"

    @property
    def worktrees(self) -> Path:
        """``worktrees/``: the sandboxes (git worktrees), one per mission."""
        return self.root / "worktrees"

    @property
    def envs(self) -> Path:
        """``envs/``: cached target virtual environments, by dependency fingerprint."""
        return self.root / "envs"

    @property
    def locks(self) -> Path:
        """``locks/``: one lock file per repository."""
        return self.root / "locks"

    @property
    def history(self) -> Path:
        """``history/``: learned durations (timeouts), one JSON file per repository."""
        return self.root / "history"

    @property
    def procs(self) -> Path:
        """``procs/``: records of the processes mendflow started (for orphan reaping)."""
        return self.root / "procs"

    @property
    def copies(self) -> Path:
        """``copies/``: plain-copy sandboxes (the copy backend)."""
        return self.root / "copies"

    @property
    def delivery(self) -> Path:
        """``delivery/``: scratch worktrees of approved deliveries."""
        return self.root / "delivery"

    def mission(self, mission_id: str) -> Path:
        """``missions/<mission_id>/`` (created)."""
        path = self.missions / mission_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def worktree(self, mission_id: str) -> Path:
        """``worktrees/<mission_id>`` (its parent created; the worktree itself is git's)."""
        self.worktrees.mkdir(parents=True, exist_ok=True)
        return self.worktrees / mission_id

    def ensure(self) -> StateLayout:
        """Create every directory of the layout; returns self."""
        for path in (self.missions, self.worktrees, self.envs, self.locks, self.history,
                     self.procs):
            path.mkdir(parents=True, exist_ok=True)
        return self
