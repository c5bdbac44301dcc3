"""Git plumbing for delivery: rebuild approved commits on the mission base, merge, inspect.

Nothing here touches a branch ref or the user's checkout: commits are built in
a temporary detached worktree under mendflow's state directory (removed
afterwards) and with ``git merge-tree --write-tree`` / ``git commit-tree``,
which only write objects. :mod:`mendflow.tasks.approve.merge` moves the target ref.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import git

from mendflow.core.errors import DeliveryError
from mendflow.core.models import Contract
from mendflow.infra.gitops import GIT_OPTIONS, GIT_TIMEOUT_S, run_git
from mendflow.tasks.vcs import identity_env

TRAILER_LINE = re.compile(r"^[A-Za-z0-9-]+: ")


class ApprovedCommit(Contract):
    """One approved patch: its commit on the mission branch and the commit rebuilt for delivery."""

    patch_id: str
    mission_commit: str
    commit: str | None = None


def git_outcome(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``git <args>`` in ``cwd`` and return ``(exit status, stdout, stderr)`` without raising.

    Args:
        cwd: where to run (a worktree or the repository root).
        *args: the git sub-command and its arguments.
        env: variables added to the environment of this command.

    Returns:
        The exit status and both outputs, for commands whose non-zero status is
        an answer (``merge-tree`` exits 1 on conflicts).
    """
    status, out, err = git.Git(str(cwd)).execute(
        ["git", *GIT_OPTIONS, *args], env=dict(env) if env else None, with_exceptions=False,
        with_extended_output=True, strip_newline_in_stdout=False,
        kill_after_timeout=GIT_TIMEOUT_S)
    return int(status or 0), str(out), str(err)


def one_line(text: str, limit: int = 500) -> str:
    """Collapse whitespace (a trailer value is one line) and bound the length."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def add_trailers(message: str, trailers: Sequence[tuple[str, str]]) -> str:
    """Append ``Key: value`` trailers to a commit message's trailer paragraph.

    Args:
        message: the original message (mendflow's end with a ``Mendflow-*`` trailer block).
        trailers: the pairs to add; empty values are skipped.

    Returns:
        The message with the trailers in its last paragraph (a new one if the
        last paragraph is not a trailer block).
    """
    lines = [f"{key}: {one_line(value)}" for key, value in trailers if one_line(value)]
    body = message.rstrip()
    last = body.rsplit("\n\n", 1)[-1]
    joined = "\n" if last and all(TRAILER_LINE.match(x) for x in last.splitlines()) else "\n\n"
    return body + joined + "\n".join(lines) + "\n" if lines else body + "\n"


def build_approved(root: Path, base: str, commits: Sequence[ApprovedCommit],
                   trailers: Sequence[tuple[str, str]], work_parent: Path) -> list[ApprovedCommit]:
    """Rebuild the approved commits, in order, on ``base`` in a temporary detached worktree.

    Each mission commit is applied with ``git cherry-pick --no-commit`` and
    committed again with its original author, author date and message plus
    ``trailers`` (``Approved-by``, ``Approval-comment``). Hooks are disabled.

    Args:
        root: the user's repository root (only objects are added to it).
        base: the mission's base commit.
        commits: the approved patches' mission commits, in mission-branch order.
        trailers: the trailers to add to every message.
        work_parent: directory for the temporary worktree (under the state dir).

    Returns:
        The same entries with ``commit`` set to the rebuilt commit; the last one is the tip.

    Raises:
        DeliveryError: reason ``conflict`` when a commit does not apply without a
            patch that was not approved; ``git`` for other git failures.
    """
    work_parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="deliver-", dir=work_parent))
    shutil.rmtree(workdir)
    run_git(root, "worktree", "add", "-q", "--detach", str(workdir), base)
    try:
        built = []
        for entry in commits:
            built.append(entry.model_copy(update={"commit": _rebuild(workdir, entry, trailers)}))
        return built
    finally:
        run_git(root, "worktree", "remove", "--force", str(workdir), check=False)
        shutil.rmtree(workdir, ignore_errors=True)
        run_git(root, "worktree", "prune", check=False)


def _rebuild(workdir: Path, entry: ApprovedCommit, trailers: Sequence[tuple[str, str]]) -> str:
    status, _, err = git_outcome(workdir, "cherry-pick", "--no-commit", entry.mission_commit)
    if status != 0:
        conflicted = run_git(workdir, "diff", "--name-only", "--diff-filter=U", check=False).split()
        raise DeliveryError(
            f"patch {entry.patch_id} does not apply on the mission base without the patches "
            f"that were not approved (conflict in {', '.join(conflicted) or err.strip()[-300:]})",
            reason="conflict", subject=entry.patch_id,
            hint="approve the patches it builds on too, or merge the mission branch by hand")
    fields = run_git(workdir, "show", "-s", "--format=%an%x00%ae%x00%ad%x00%B", "--date=raw",
                     entry.mission_commit)
    name, email, date, message = fields.split("\0", 3)
    env = {**identity_env(workdir), "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
           "GIT_AUTHOR_DATE": date}
    with tempfile.TemporaryDirectory(prefix="mendflow-msg-") as tmp:
        path = Path(tmp) / "message"
        path.write_text(add_trailers(message, trailers), encoding="utf-8")
        run_git(workdir, "commit", "-q", "--no-verify", "--allow-empty", "--cleanup=whitespace",
                "-F", str(path), env=env)
    return run_git(workdir, "rev-parse", "HEAD").strip()


def merge_commit(root: Path, ours: str, theirs: str, message: str) -> str:
    """Merge ``theirs`` into ``ours`` without a worktree and return the merge commit.

    Uses ``git merge-tree --write-tree`` (git >= 2.38) and ``git commit-tree``
    with both parents (``ours`` first, so the target's history stays first-parent).

    Args:
        root: the user's repository root (only objects are written).
        ours: the target branch's tip.
        theirs: the tip of the rebuilt approved commits.
        message: the merge commit's message.

    Returns:
        The merge commit's sha.

    Raises:
        DeliveryError: reason ``conflict`` naming the conflicting files.
    """
    status, out, err = git_outcome(root, "merge-tree", "--write-tree", "--name-only",
                                   "--no-messages", ours, theirs)
    if status == 1:
        files = [line for line in out.splitlines()[1:] if line.strip()]
        raise DeliveryError(
            f"the approved patches conflict with the target branch in {', '.join(files)}",
            reason="conflict", subject=", ".join(files) or theirs,
            hint="the target branch was left untouched; merge the mission branch by hand or "
                 "re-run the mission on the new target tip")
    if status != 0:
        raise DeliveryError(f"`git merge-tree` failed (exit {status}): {err.strip()[-300:]}",
                            reason="git", subject=str(root), hint="check that git is >= 2.38")
    tree = out.splitlines()[0].strip()
    env = identity_env(root)
    return run_git(root, "commit-tree", tree, "-p", ours, "-p", theirs, "-m", message,
                   env=env).strip()


def is_ancestor(root: Path, ancestor: str, descendant: str) -> bool:
    """True if ``ancestor`` is an ancestor of (or equal to) ``descendant``."""
    return git_outcome(root, "merge-base", "--is-ancestor", ancestor, descendant)[0] == 0


def delivered_patches(root: Path, tip: str, base: str, mission_id: str) -> dict[str, str]:
    """Find patches of ``mission_id`` already delivered on ``tip`` (an at-least-once re-run).

    Args:
        root: the user's repository root.
        tip: the target branch's tip.
        base: the mission base (commits reachable from it are not scanned).
        mission_id: the mission.

    Returns:
        ``{patch id: delivered commit}`` for commits after ``base`` whose
        trailers name this mission and carry ``Approved-by``.
    """
    fmt = ("%H%x00%(trailers:key=Mendflow-Patch,valueonly,separator=%x2c)%x00"
           "%(trailers:key=Mendflow-Mission,valueonly,separator=%x2c)%x00"
           "%(trailers:key=Approved-by,valueonly,separator=%x2c)%x1e")
    out = run_git(root, "log", f"--format={fmt}", f"{base}..{tip}", check=False)
    found: dict[str, str] = {}
    for record in out.split("\x1e"):
        parts = record.strip().split("\0")
        if len(parts) == 4 and parts[2].strip() == mission_id and parts[3].strip():
            found.setdefault(parts[1].strip(), parts[0])
    return found


def changed_lines(root: Path, commit: str) -> int:
    """Lines added plus deleted by one commit (``git diff --numstat <commit>^ <commit>``).

    Binary files count as 0 lines.
    """
    out = run_git(root, "diff", "--numstat", f"{commit}^", commit, check=False)
    total = 0
    for line in out.splitlines():
        added, deleted, *_ = line.split("\t")
        total += int(added) if added.isdigit() else 0
        total += int(deleted) if deleted.isdigit() else 0
    return total

