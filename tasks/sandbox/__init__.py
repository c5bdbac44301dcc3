"""The Sandbox edge: an isolated git worktree where candidate patches are tried.

A mission never writes to the user's checkout. It works in a git worktree of
the base commit, on branch ``mendflow/<mission-id>``, under mendflow's state
directory (``<state>/worktrees/<mission-id>``), and records the base commit as
``refs/mendflow/<mission-id>/base`` so that a rollback knows where it started.

:class:`SandboxBackend` is the interface; :class:`WorktreeSandbox` is the real
backend and :class:`CopySandbox` a second one (a ``git clone --local``) used
as a test double. Patch application is guarded (see :mod:`mendflow.tasks.sandbox.patching`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from prefect import task
from prefect.cache_policies import NO_CACHE

from mendflow.core.models import Patch, RepoTarget, Sandbox
from mendflow.infra.gitops import retry_on_sandbox_error
from mendflow.infra.layout import StateLayout
from mendflow.infra.retry import transient_retries
from mendflow.tasks.sandbox.backends import CopySandbox, WorktreeSandbox
from mendflow.tasks.sandbox.patching import (
    apply_to_worktree,
    drop_replay_ref,
    hash_worktree,
    patch_paths,
    reset_worktree,
    rewind_worktree,
)

__all__ = [
    "CopySandbox", "SandboxBackend", "WorktreeSandbox", "apply_patch", "apply_to_worktree",
    "create_sandbox", "drop_replay_ref", "finish_replay", "hash_tree", "hash_worktree",
    "patch_paths", "remove_sandbox",
    "reset_sandbox", "reset_worktree", "rewind_sandbox", "rewind_worktree",
]


@runtime_checkable
class SandboxBackend(Protocol):
    """Where candidate patches are applied, measured, and undone."""

    def create(self, target: RepoTarget, mission_id: str, layout: StateLayout) -> Sandbox:
        """Create (or re-use) the mission's sandbox at the target's committed HEAD.

        Args:
            target: the resolved repository.
            mission_id: the mission id (``[a-z0-9][a-z0-9-]{2,63}``).
            layout: mendflow's state directory, resolved.

        Returns:
            The :class:`Sandbox`, checked out on ``mendflow/<mission_id>``.

        Raises:
            ConfigError: the mission id is invalid.
            SandboxError: git failed (the message holds git's stderr tail).
        """
        ...

    def apply(self, sandbox: Sandbox, patch: Patch) -> None:
        """Apply a patch to the sandbox's working tree (all or nothing).

        Raises:
            PatchRejected: reason ``path-escape``, ``binary`` or ``apply-failed``.
        """
        ...

    def reset(self, sandbox: Sandbox, patch: Patch | None = None) -> None:
        """Restore the working tree to the branch HEAD, removing files ``patch`` added."""
        ...

    def tree_hash(self, sandbox: Sandbox) -> str:
        """Return the git tree id of the working tree as it is (tracked + untracked files)."""
        ...

    def remove(self, sandbox: Sandbox) -> None:
        """Delete the sandbox's files; the mission branch is kept."""
        ...


BACKEND: SandboxBackend = WorktreeSandbox()


@task(name="create-sandbox", timeout_seconds=600,  cache_policy=NO_CACHE,
      **transient_retries(1, condition=retry_on_sandbox_error))
def create_sandbox(target: RepoTarget, mission_id: str, layout: StateLayout) -> Sandbox:
    """Prefect task: create or re-use the mission's worktree (:meth:`WorktreeSandbox.create`)."""
    return BACKEND.create(target, mission_id, layout)


@task(name="apply-patch", retries=0, timeout_seconds=300, cache_policy=NO_CACHE)
def apply_patch(sandbox: Sandbox, patch: Patch) -> None:
    """Prefect task: apply a candidate patch, guarded (:func:`apply_to_worktree`)."""
    BACKEND.apply(sandbox, patch)


@task(name="reset-sandbox", timeout_seconds=300,  cache_policy=NO_CACHE,
      **transient_retries(2, condition=retry_on_sandbox_error))
def reset_sandbox(sandbox: Sandbox, patch: Patch | None = None) -> None:
    """Prefect task: restore the worktree to the branch HEAD (:func:`reset_worktree`)."""
    BACKEND.reset(sandbox, patch)


@task(name="rewind-sandbox", timeout_seconds=300,  cache_policy=NO_CACHE,
      **transient_retries(2, condition=retry_on_sandbox_error))
def rewind_sandbox(sandbox: Sandbox, commit: str) -> None:
    """Prefect task: move the mission branch and worktree to ``commit`` (:func:`rewind_worktree`)."""
    rewind_worktree(sandbox, commit)


@task(name="finish-replay", timeout_seconds=120,  cache_policy=NO_CACHE,
      **transient_retries(2, condition=retry_on_sandbox_error))
def finish_replay(sandbox: Sandbox) -> bool:
    """Prefect task: drop the replay ref once the branch holds its commits (:func:`drop_replay_ref`)."""
    return drop_replay_ref(sandbox)


@task(name="hash-tree", timeout_seconds=600,  cache_policy=NO_CACHE,
      **transient_retries(1, condition=retry_on_sandbox_error))
def hash_tree(sandbox: Sandbox) -> str:
    """Prefect task: the content hash of the worktree (:func:`hash_worktree`)."""
    return BACKEND.tree_hash(sandbox)


@task(name="remove-sandbox", timeout_seconds=300,  cache_policy=NO_CACHE,
      **transient_retries(1, condition=retry_on_sandbox_error))
def remove_sandbox(sandbox: Sandbox) -> None:
    """Prefect task: remove the worktree, keep the branch (:meth:`WorktreeSandbox.remove`)."""
    BACKEND.remove(sandbox)
