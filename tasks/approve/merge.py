"""Delivery: bring approved mission commits to the target branch without losing anyone's work.

:func:`deliver` is the only code in mendflow that moves a branch the user owns:

1. the approved mission commits are rebuilt, in order, on the mission base in a
   temporary worktree under mendflow's state directory, with ``Approved-by:``
   and ``Approval-comment:`` trailers (:func:`mendflow.tasks.approve.build.build_approved`);
   when the target branch does not contain the mission base (a target other
   than the branch the mission started from), they are rebuilt on the target
   tip instead, so that no commit but the approved ones reaches the target;
2. if the target tip is the mission base (or an ancestor of the rebuilt tip),
   the target fast-forwards; otherwise a merge commit with both parents keeps
   the target's history (``git merge-tree --write-tree`` + ``git commit-tree``);
   a conflict raises :class:`~mendflow.core.errors.DeliveryError` and changes nothing;
3. the target ref moves atomically: ``git update-ref <ref> <new> <expected-old>``,
   or, when the target branch is checked out in a worktree of the user, only if
   that checkout is clean (``git status --porcelain`` empty), with
   ``git merge --ff-only <new>`` run there. A dirty checkout is refused;
4. optionally ``git push <remote> <new>:refs/heads/<target>`` (never forced).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mendflow.core.errors import DeliveryError
from mendflow.core.models import Contract, DeliveryMode
from mendflow.infra.gitops import list_worktrees, rev_parse, run_git
from mendflow.tasks.approve.build import (
    ApprovedCommit,
    build_approved,
    delivered_patches,
    git_outcome,
    is_ancestor,
    merge_commit,
    one_line,
)


class Delivery(Contract):
    """What :func:`deliver` did to the target branch."""

    mode: DeliveryMode
    target_branch: str
    old_tip: str
    new_tip: str
    commits: tuple[ApprovedCommit, ...] = ()
    checkout: str | None = None
    pushed_to: str | None = None
    push_error: str | None = None


def resolve_target_branch(root: Path, configured: str | None, head_branch: str | None) -> str:
    """Return the branch that receives approved patches.

    Args:
        root: the user's repository root.
        configured: ``approval.target_branch`` (a short name or ``refs/heads/...``), or None.
        head_branch: the branch HEAD pointed at when the mission started, or None (detached).

    Returns:
        The short branch name.

    Raises:
        DeliveryError: reason ``no-target``: none configured and HEAD was detached,
            the name is invalid, the branch does not exist, or it is a mission branch.
    """
    name = configured or head_branch
    if not name:
        raise DeliveryError("HEAD was detached when the mission started: no target branch",
                            reason="no-target", subject=str(root),
                            hint="set approval.target_branch in the config")
    name = name.removeprefix("refs/heads/")
    if name.startswith("mendflow/") or git_outcome(root, "check-ref-format", "--branch",
                                                   name)[0] != 0:
        raise DeliveryError(f"{name!r} cannot be a target branch", reason="no-target",
                            subject=name, hint="name one of your own branches")
    if rev_parse(root, f"refs/heads/{name}") is None:
        raise DeliveryError(f"the target branch {name} does not exist", reason="no-target",
                            subject=name, hint="create it, or set approval.target_branch")
    return name


def deliver(root: Path, mission_id: str, base: str, commits: Sequence[ApprovedCommit],
            target_branch: str, *, approver: str, comment: str, work_parent: Path,
            push_remote: str | None = None) -> Delivery:
    """Deliver approved mission commits to ``target_branch`` (see the module docstring).

    Idempotent: commits of this mission already on the target (found by their
    ``Mendflow-Mission`` / ``Mendflow-Patch`` / ``Approved-by`` trailers) are
    not delivered again.

    Args:
        root: the user's repository root.
        mission_id: the mission (named in the reflog and merge message).
        base: the mission's base commit.
        commits: the approved patches' mission commits, in mission-branch order.
        target_branch: the short name of the branch that receives them.
        approver: who approved (``Approved-by:`` trailer).
        comment: the approver's comment (``Approval-comment:`` trailer, skipped when empty).
        work_parent: where the temporary worktree goes (under mendflow's state dir).
        push_remote: a git remote to push the target to afterwards, or None.

    Returns:
        The :class:`Delivery`; a failed push is reported in ``push_error`` (the
        local delivery stands).

    Raises:
        DeliveryError: ``no-target``, ``dirty-checkout``, ``conflict``,
            ``target-moved`` or ``git``; in every case the target branch and every
            checkout are exactly as before.
    """
    ref = f"refs/heads/{target_branch}"
    old = rev_parse(root, ref)
    if old is None:
        raise DeliveryError(f"the target branch {target_branch} does not exist",
                            reason="no-target", subject=target_branch,
                            hint="create it, or set approval.target_branch")
    settled = _nothing_to_deliver(root, mission_id, base, commits, target_branch, old)
    if settled is not None:
        return settled
    checkout = _checkout_of(root, ref)
    if checkout is not None:
        _require_clean(checkout, target_branch)
    trailers = [("Approved-by", approver), ("Approval-comment", comment)]
    # onto the base when the target contains it (then merge, keeping both histories), else
    # onto the target tip: never bring commits other than the approved ones to the target
    onto = base if is_ancestor(root, base, old) else old
    built = build_approved(root, onto, commits, trailers, work_parent)
    tip = built[-1].commit or ""
    mode: DeliveryMode = "fast-forward"
    if is_ancestor(root, old, tip):
        new = tip
    else:
        message = (f"Merge approved mendflow mission {mission_id} into {target_branch}\n\n"
                   f"Approved-by: {one_line(approver)}\n")
        new, mode = merge_commit(root, old, tip, message), "merge"
    _move_target(root, ref, old, new, checkout,
                 f"mendflow: deliver mission {mission_id} (approved by {one_line(approver, 80)})")
    delivery = Delivery(mode=mode, target_branch=target_branch, old_tip=old, new_tip=new,
                        commits=tuple(built), checkout=str(checkout) if checkout else None)
    if push_remote:
        delivery = _push(root, delivery, push_remote)
    return delivery


def _nothing_to_deliver(root: Path, mission_id: str, base: str,
                        commits: Sequence[ApprovedCommit], target_branch: str,
                        old: str) -> Delivery | None:
    """The delivery when there is nothing to do (:func:`deliver`): ``none`` without
    commits, ``already-delivered`` when the target already holds every one; else None."""
    if not commits:
        return Delivery(mode="none", target_branch=target_branch, old_tip=old, new_tip=old)
    done = delivered_patches(root, old, base, mission_id)
    if all(c.patch_id in done for c in commits):
        already = tuple(c.model_copy(update={"commit": done[c.patch_id]}) for c in commits)
        return Delivery(mode="already-delivered", target_branch=target_branch, old_tip=old,
                        new_tip=old, commits=already)
    return None


def _checkout_of(root: Path, ref: str) -> Path | None:
    """The worktree (the user's main checkout or another one) that has ``ref`` checked out."""
    for entry in list_worktrees(root):
        if entry.get("branch") == ref and Path(entry["worktree"]).is_dir():
            return Path(entry["worktree"])
    return None


def _require_clean(checkout: Path, target_branch: str) -> None:
    status = run_git(checkout, "--no-optional-locks", "status", "--porcelain")
    if status.strip():
        count = len(status.splitlines())
        raise DeliveryError(
            f"{target_branch} is checked out in {checkout} and that checkout has {count} "
            "uncommitted or untracked change(s): delivery refused, nothing was changed",
            reason="dirty-checkout", subject=str(checkout),
            hint="commit or stash your changes (or switch that checkout to another branch), "
                 "then merge the mission branch, or re-run the mission")


def _move_target(root: Path, ref: str, old: str, new: str, checkout: Path | None,
                 reason: str) -> None:
    """Move ``ref`` from ``old`` to ``new`` atomically; in a checkout only by fast-forward."""
    if checkout is None:
        status, _, err = git_outcome(root, "update-ref", "-m", reason, ref, new, old)
        if status != 0:
            raise DeliveryError(f"the target branch moved during delivery: {err.strip()[-200:]}",
                                reason="target-moved", subject=ref,
                                hint="re-run the mission on the new tip")
        return
    _require_clean(checkout, ref.removeprefix("refs/heads/"))
    if rev_parse(checkout, "HEAD") != old:
        raise DeliveryError("the target branch moved during delivery", reason="target-moved",
                            subject=ref, hint="re-run the mission on the new tip")
    status, _, err = git_outcome(checkout, "merge", "--ff-only", "-q", "--no-stat", new)
    if status != 0:
        raise DeliveryError(f"`git merge --ff-only` refused in {checkout}: {err.strip()[-300:]}",
                            reason="dirty-checkout", subject=str(checkout),
                            hint="move the files git names out of the way, then re-run")


def _push(root: Path, delivery: Delivery, remote: str) -> Delivery:
    status, _, err = git_outcome(root, "push", "--quiet", remote,
                                 f"{delivery.new_tip}:refs/heads/{delivery.target_branch}")
    if status != 0:
        return delivery.model_copy(update={"push_error": f"`git push {remote}` failed: "
                                                         f"{err.strip()[-300:]}"})
    return delivery.model_copy(update={"pushed_to": remote})
