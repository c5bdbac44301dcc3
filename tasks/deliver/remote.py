"""Git with a remote for the evolution loop: sync the target branch, push a branch, revert.

Nothing here forces anything: a push is ``git push <remote> <sha>:refs/heads/<branch>``
without ``--force`` (a remote that refuses it leaves everything as it was); a
sync only fast-forwards the local target branch (a diverged target is an error
that changes nothing); a revert commit is built in a temporary detached worktree.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from pathlib import Path

from pydantic import SecretStr

from mendflow.core.errors import DeliveryError
from mendflow.infra.gitops import is_ancestor, rev_parse, run_git
from mendflow.tasks.approve.build import git_outcome
from mendflow.tasks.approve.merge import _checkout_of, _move_target
from mendflow.tasks.vcs import identity_env


def remote_url(root: Path, remote: str) -> str | None:
    """The fetch URL of ``remote`` (``git remote get-url``), or None when there is no such remote."""
    status, out, _ = git_outcome(root, "remote", "get-url", remote)
    return out.strip() if status == 0 else None


def auth_env(url: str | None, token: SecretStr | None, forge: str | None) -> dict[str, str]:
    """Environment that hands the token to git for an HTTP(S) remote, never on a command line.

    Returns:
        ``GIT_CONFIG_*`` variables setting ``http.extraHeader`` (Basic auth as
        ``x-access-token`` for GitHub, ``oauth2`` for GitLab); empty for SSH or
        file remotes, or without a token.
    """
    if token is None or not url or not url.startswith(("http://", "https://")):
        return {}
    user = "oauth2" if forge == "gitlab" else "x-access-token"
    basic = base64.b64encode(f"{user}:{token.get_secret_value()}".encode()).decode()
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}", "GIT_TERMINAL_PROMPT": "0"}


def _push_error(remote: str, branch: str, err: str) -> DeliveryError:
    text = err.strip()[-400:]
    lowered = text.lower()
    if ("does not appear to be a git repository" in lowered or "repository not found" in lowered
            or "could not read from remote" in lowered):
        reason, hint = "remote-gone", f"check `git remote get-url {remote}`"
    elif "protected branch" in lowered or "pre-receive hook declined" in lowered:
        reason, hint = "protected", "the remote protects this branch: allow mendflow/* pushes"
    elif "non-fast-forward" in lowered or "fetch first" in lowered or "rejected" in lowered:
        reason, hint = "push-rejected", "the remote branch has other commits: nothing was forced"
    elif "403" in lowered or "401" in lowered or "authentication" in lowered:
        reason, hint = "push-auth", "the token may not push: check its scope"
    else:
        reason, hint = "push-failed", "see git's message; the next cycle retries"
    return DeliveryError(f"`git push {remote}` of {branch} was refused: {text}", reason=reason,
                         subject=f"{remote}/{branch}", hint=hint)


def push_branch(root: Path, remote: str, commit: str, branch: str,
                env: dict[str, str] | None = None) -> None:
    """Push ``commit`` to ``refs/heads/<branch>`` on ``remote``, never forced.

    Idempotent: when the remote branch already points at ``commit`` git answers
    "up to date".

    Raises:
        DeliveryError: ``protected``, ``push-rejected``, ``remote-gone``,
            ``push-auth`` or ``push-failed``; the remote is unchanged.
    """
    status, _, err = git_outcome(root, "push", "--quiet", "--porcelain", remote,
                                 f"{commit}:refs/heads/{branch}", env=env)
    if status != 0:
        raise _push_error(remote, branch, err)


def delete_remote_branch(root: Path, remote: str, branch: str,
                         env: dict[str, str] | None = None) -> bool:
    """Delete ``branch`` on ``remote`` (a closed PR's branch); False when it failed."""
    return git_outcome(root, "push", "--quiet", remote, f":refs/heads/{branch}", env=env)[0] == 0


def fetch(root: Path, remote: str, branch: str, env: dict[str, str] | None = None) -> str:
    """Fetch ``branch`` from ``remote``; return the remote tip's sha.

    Raises:
        DeliveryError: ``remote-gone`` (no such remote or repository) or ``fetch-failed``.
    """
    status, _, err = git_outcome(root, "fetch", "--quiet", "--no-tags", remote,
                                 f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}", env=env)
    if status != 0:
        lowered = err.lower()
        gone = "does not appear to be a git repository" in lowered or "not found" in lowered
        raise DeliveryError(f"`git fetch {remote} {branch}` failed: {err.strip()[-300:]}",
                            reason="remote-gone" if gone else "fetch-failed",
                            subject=f"{remote}/{branch}",
                            hint="check the remote's URL and that the branch exists there")
    tip = rev_parse(root, f"refs/remotes/{remote}/{branch}")
    if tip is None:  # pragma: no cover - fetch succeeded, so the ref exists
        raise DeliveryError("the fetched branch has no tip", reason="fetch-failed",
                            subject=f"{remote}/{branch}")
    return tip


def sync_target(root: Path, remote: str, branch: str, env: dict[str, str] | None = None) -> str:
    """Bring the local ``branch`` up to ``remote``'s, by fast-forward only.

    A local branch ahead of the remote (a delivery not pushed yet) is kept.

    Returns:
        The local branch's tip afterwards.

    Raises:
        DeliveryError: ``diverged`` (both have commits the other lacks: nothing
            is changed), ``dirty-checkout``, ``remote-gone``, ``fetch-failed``.
    """
    theirs = fetch(root, remote, branch, env)
    ref = f"refs/heads/{branch}"
    ours = rev_parse(root, ref)
    if ours is None:
        git_outcome(root, "update-ref", ref, theirs, "")  # create it only if still absent
        return rev_parse(root, ref) or theirs
    if ours == theirs or is_ancestor(root, theirs, ours):
        return ours
    if not is_ancestor(root, ours, theirs):
        raise DeliveryError(f"{branch} has diverged from {remote}/{branch}: nothing was changed",
                            reason="diverged", subject=branch,
                            hint=f"reconcile {branch} with {remote}/{branch} by hand "
                                 "(mendflow never forces a branch)")
    _move_target(root, ref, ours, theirs, _checkout_of(root, ref),
                 f"mendflow evolve: fast-forward {branch} to {remote}/{branch}")
    return theirs


def build_revert(root: Path, onto: str, culprit: str, reason: str, work_parent: Path) -> str:
    """Make a commit on ``onto`` that reverts ``culprit`` (``git revert --no-commit``).

    Args:
        root: the repository.
        onto: the target branch's tip.
        culprit: the commit to revert.
        reason: one line on why (the failing test), put in the message.
        work_parent: where the temporary worktree goes.

    Returns:
        The revert commit's sha (only objects are written; no ref moves).

    Raises:
        DeliveryError: ``conflict``: the revert does not apply on ``onto``.
    """
    work_parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="revert-", dir=work_parent))
    shutil.rmtree(workdir)
    run_git(root, "worktree", "add", "-q", "--detach", str(workdir), onto)
    try:
        status, _, err = git_outcome(workdir, "revert", "--no-commit", culprit)
        if status != 0:
            raise DeliveryError(f"reverting {culprit[:10]} conflicts on {onto[:10]}: "
                                f"{err.strip()[-200:]}", reason="conflict", subject=culprit,
                                hint="revert it by hand")
        subject = run_git(workdir, "log", "-1", "--format=%s", culprit).strip()
        message = (f"Revert \"{subject}\"\n\nThis reverts commit {culprit}: {reason}\n\n"
                   f"Mendflow-Revert: {culprit}\n")
        env = identity_env(workdir)
        run_git(workdir, "commit", "-q", "--no-verify", "-m", message, env=env)
        return run_git(workdir, "rev-parse", "HEAD").strip()
    finally:
        run_git(root, "worktree", "remove", "--force", str(workdir), check=False)
        shutil.rmtree(workdir, ignore_errors=True)
        run_git(root, "worktree", "prune", check=False)
