"""Sandbox backends: a git worktree (the real one) and a local clone (a test double)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from mendflow.core.errors import SandboxError
from mendflow.core.models import Patch, RepoTarget, Sandbox
from mendflow.infra.gitops import (
    base_ref,
    check_mission_id,
    list_worktrees,
    mission_branch,
    rev_parse,
    run_git,
)
from mendflow.infra.layout import StateLayout, tool_home_path
from mendflow.tasks.sandbox.patching import apply_to_worktree, hash_worktree, reset_worktree

log = logging.getLogger(__name__)
_NO_REF = "0" * 40
_RECREATE = "re-run the mission with the same id to re-create the sandbox"


class _GitTreeOps:
    """apply/reset/tree_hash: the same git operations for every backend with a work tree."""

    def apply(self, sandbox: Sandbox, patch: Patch) -> None:
        """See :func:`mendflow.tasks.sandbox.patching.apply_to_worktree`."""
        apply_to_worktree(sandbox, patch)

    def reset(self, sandbox: Sandbox, patch: Patch | None = None) -> None:
        """See :func:`mendflow.tasks.sandbox.patching.reset_worktree`."""
        reset_worktree(sandbox, patch)

    def tree_hash(self, sandbox: Sandbox) -> str:
        """See :func:`mendflow.tasks.sandbox.patching.hash_worktree`."""
        return hash_worktree(sandbox)


class WorktreeSandbox(_GitTreeOps):
    """A ``git worktree`` of the base commit on ``mendflow/<mission-id>``, outside the checkout.

    Only mendflow's own refs (the mission branch, ``refs/mendflow/<id>/base``)
    and git's worktree bookkeeping under ``.git/worktrees`` are written in the
    user's repository.
    """

    def create(self, target: RepoTarget, mission_id: str, layout: StateLayout) -> Sandbox:
        """Create the worktree, or re-use it (idempotent; re-attaches a pruned one).

        Args:
            target: the resolved repository (its ``head_commit`` is the base).
            mission_id: the mission id.
            layout: mendflow's state directory, resolved (the worktree goes in ``worktrees/``).

        Returns:
            The sandbox. On a re-run the base recorded in
            ``refs/mendflow/<id>/base`` is kept even if the user's HEAD moved.

        Raises:
            ConfigError: the mission id is invalid.
            SandboxError: the state directory is inside the repository, the
                branch is checked out elsewhere, the directory is taken, or git failed.
        """
        check_mission_id(mission_id)
        root = target.root.resolve()
        path = layout.worktree(mission_id)
        if path.resolve().is_relative_to(root):
            raise SandboxError("the sandbox would be inside the repository", subject=str(path),
                               hint="set MENDFLOW_HOME (or mission.state_dir) to a directory "
                                    "outside the repository")
        branch = mission_branch(mission_id)
        base = _ensure_base(root, mission_id, target.head_commit)
        if rev_parse(root, f"refs/heads/{branch}") is None:
            run_git(root, "branch", "--no-track", branch, base)
        _ensure_worktree(root, path, branch)
        return Sandbox(mission_id=mission_id, path=path, branch=branch, base_commit=base,
                       repo_root=root)

    def remove(self, sandbox: Sandbox) -> None:
        """``git worktree remove --force``; the branch and base ref are kept.

        The tools' home beside the worktree (their private HOME and mypy's
        cache, ``.<name>.mendflow-tools``) goes with it.

        Raises:
            SandboxError: git failed.
        """
        wanted = sandbox.path.resolve()
        for entry in list_worktrees(sandbox.repo_root):
            if Path(entry["worktree"]).resolve() == wanted:
                run_git(sandbox.repo_root, "worktree", "remove", "--force", str(sandbox.path))
                shutil.rmtree(tool_home_path(sandbox.path), ignore_errors=True)
                return
        if sandbox.path.exists():
            raise SandboxError("the directory is not a registered worktree; not removing it",
                               subject=str(sandbox.path), hint="remove it by hand if unused")


class CopySandbox(_GitTreeOps):
    """A test double: a ``git clone --local`` of the repository instead of a worktree.

    It shares nothing with the user's repository (its branch and base ref live
    in the clone), which makes it a second, independent implementation of
    :class:`~mendflow.tasks.sandbox.SandboxBackend`.
    """

    def create(self, target: RepoTarget, mission_id: str, layout: StateLayout) -> Sandbox:
        """Clone the repository into ``<state>/copies/<mission-id>`` on the mission branch.

        Raises:
            ConfigError: the mission id is invalid.
            SandboxError: the directory is taken by something else, or git failed.
        """
        check_mission_id(mission_id)
        path = layout.copies / mission_id
        branch = mission_branch(mission_id)
        if not (path / ".git").is_dir():
            if path.exists() and any(path.iterdir()):
                raise SandboxError("the directory exists and is not a clone", subject=str(path),
                                   hint="remove it or use another mission id")
            path.parent.mkdir(parents=True, exist_ok=True)
            run_git(path.parent, "clone", "--quiet", "--local", "--no-checkout",
                    str(target.root), str(path))
            run_git(path, "checkout", "-q", "-b", branch, target.head_commit)
            run_git(path, "update-ref", base_ref(mission_id), target.head_commit)
        base = rev_parse(path, base_ref(mission_id)) or target.head_commit
        return Sandbox(mission_id=mission_id, path=path, branch=branch, base_commit=base,
                       repo_root=target.root.resolve())

    def remove(self, sandbox: Sandbox) -> None:
        """Delete the clone."""
        shutil.rmtree(sandbox.path, ignore_errors=True)


def _ensure_base(root: Path, mission_id: str, head_commit: str) -> str:
    """Return the mission's base commit, recording it in ``refs/mendflow/<id>/base`` once."""
    ref = base_ref(mission_id)
    recorded = rev_parse(root, ref)
    if recorded is not None:
        if recorded != head_commit:
            log.warning("mission %s keeps its recorded base %s (HEAD is now %s)",
                        mission_id, recorded[:12], head_commit[:12])
        return recorded
    tip = rev_parse(root, f"refs/heads/{mission_branch(mission_id)}")
    base = head_commit
    if tip is not None:  # a branch from before base refs were recorded: its fork point
        base = run_git(root, "merge-base", tip, head_commit).strip() or head_commit
    run_git(root, "update-ref", "-m", f"mendflow mission {mission_id} base", ref, base, _NO_REF)
    return base


def _ensure_worktree(root: Path, path: Path, branch: str) -> None:
    """Check out ``branch`` at ``path``: re-use a valid worktree, re-attach a pruned one."""
    ref, wanted = f"refs/heads/{branch}", path.resolve()
    for entry in list_worktrees(root):
        if entry.get("branch") != ref:
            continue
        holder = Path(entry["worktree"])
        if holder.resolve() == wanted and _is_worktree_on(path, ref):
            return
        if holder.exists() and holder.resolve() != wanted:
            raise SandboxError(f"{branch} is already checked out in {holder}", subject=str(holder),
                               hint="remove that worktree (`git worktree remove <path>`) or "
                                    "switch it to another branch, then re-run")
        # registered but its directory is gone or broken: forget that registration only
        run_git(root, "worktree", "remove", "--force", "--force", str(holder))
    if path.exists() and any(path.iterdir()):
        raise SandboxError("the sandbox directory exists and is not this mission's worktree",
                           subject=str(path), hint="remove the directory or use another mission id")
    run_git(root, "worktree", "add", "--quiet", str(path), branch,
            hint="check `git worktree list`; " + _RECREATE)
    if not _is_worktree_on(path, ref):
        raise SandboxError(f"the new worktree is not on {branch}", subject=str(path), hint=_RECREATE)


def _is_worktree_on(path: Path, ref: str) -> bool:
    if not (path / ".git").is_file():
        return False
    top = run_git(path, "rev-parse", "--show-toplevel", check=False).strip()
    head = run_git(path, "symbolic-ref", "-q", "HEAD", check=False).strip()
    return bool(top) and Path(top).resolve() == path.resolve() and head == ref
