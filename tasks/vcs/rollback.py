"""Rolling a mission branch back (``mendflow mission rollback``)."""

from __future__ import annotations

from pathlib import Path

from mendflow.core.errors import ConfigError, RepositoryError
from mendflow.infra.gitops import (
    base_ref,
    check_mission_id,
    git_succeeds,
    list_worktrees,
    mission_branch,
    replay_ref,
    rev_parse,
    run_git,
)

# --- rolling back ---------------------------------------------------------------------


def rollback_mission(repo_root: Path, mission_id: str, to: str | None = None,
                     worktree: Path | None = None) -> str:
    """Move branch ``mendflow/<mission_id>`` back to ``to`` (default: its base commit).

    The base commit is read from ``refs/mendflow/<mission_id>/base`` (written
    when the sandbox was created). If the branch is checked out in a mendflow
    worktree, that worktree is reset (``git reset --hard``) so it stays
    consistent; otherwise only the branch ref moves. The user's own checkout
    is never reset.

    Args:
        repo_root: the user's repository root.
        mission_id: the mission whose branch moves.
        to: a commit (sha, ref...) that is an ancestor of the branch tip; None = the base.
        worktree: the mission's worktree as recorded in its report, if known;
            git's own worktree list is authoritative, this is only cross-checked.

    Returns:
        The new tip sha of the branch.

    Raises:
        RepositoryError: no such mission branch, or no recorded base and no ``to``.
        ConfigError: ``to`` is not a commit, not an ancestor of the tip, or the
            branch is checked out in the user's own checkout.
        SandboxError: git failed.
    """
    check_mission_id(mission_id)
    root = Path(repo_root).expanduser().resolve()
    branch = f"refs/heads/{mission_branch(mission_id)}"
    tip = rev_parse(root, branch) if root.is_dir() else None
    if tip is None:
        raise RepositoryError(f"no mission branch {mission_branch(mission_id)}",
                              subject=f"{root} ({mission_id})",
                              hint="check the id with `mendflow mission list`")
    target = _rollback_target(root, mission_id, to)
    if target != tip and not _is_ancestor(root, target, tip):
        raise ConfigError(f"{to or target} is not an ancestor of the mission branch tip {tip[:12]}",
                          subject=to or target, hint="pick a commit from `git log "
                          f"{mission_branch(mission_id)}`")
    checked_out = _worktree_of(root, branch, worktree)
    if checked_out is not None:
        run_git(checked_out, "reset", "-q", "--hard", target)
    else:
        run_git(root, "update-ref", "-m", f"mendflow rollback of {mission_id}", branch, target, tip)
    if rev_parse(root, replay_ref(mission_id)) is not None:  # the rolled-back commits stay gone
        run_git(root, "update-ref", "-d", replay_ref(mission_id))
    return rev_parse(root, branch) or target


def _rollback_target(root: Path, mission_id: str, to: str | None) -> str:
    if to is None:
        base = rev_parse(root, base_ref(mission_id))
        if base is None:
            raise RepositoryError("the mission has no recorded base commit",
                                  subject=base_ref(mission_id),
                                  hint="pass the commit to roll back to with --to")
        return base
    target = rev_parse(root, to)
    if target is None:
        raise ConfigError("not a commit in the repository", subject=to,
                          hint="pass a commit sha or ref from the mission branch's history")
    return target


def _is_ancestor(root: Path, ancestor: str, descendant: str) -> bool:
    return git_succeeds(root, "merge-base", "--is-ancestor", ancestor, descendant)


def _worktree_of(root: Path, branch: str, hint_path: Path | None) -> Path | None:
    entries = list_worktrees(root)
    main = Path(entries[0]["worktree"]).resolve() if entries else root
    # a worktree whose directory is gone (prunable) holds nothing to reset
    holders = [Path(e["worktree"]).resolve() for e in entries
               if e.get("branch") == branch and Path(e["worktree"]).is_dir()]
    if hint_path is not None and Path(hint_path).exists() and \
            Path(hint_path).resolve() not in holders:
        raise ConfigError(f"{hint_path} is not a worktree of {branch}", subject=str(hint_path),
                          hint="omit the worktree; git knows where the branch is checked out")
    for holder in holders:
        if holder == main:
            raise ConfigError(f"{branch} is checked out in your own checkout", subject=str(main),
                              hint="switch your checkout to another branch first; mendflow "
                                   "never resets your checkout")
        return holder
    return None


