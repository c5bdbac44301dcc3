"""A worker's own clones of fleet repositories: ``<state>/clones/<repository key>/``.

A worker on another host never relies on the user's path: it clones the
repository from its git URL (``https://``, ``ssh://``, ``file://`` or a path
it can read) into its per-host cache, and on the next mission fetches and
resets that clone to the remote branch. The clone is mendflow's own (the user
never works in it), so resetting it is safe; the mission's sandbox is a
worktree of it, as for a local repository. The mission branch goes back to the
remote with a plain ``git push`` (never forced).
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mendflow.core.errors import CloneError
from mendflow.core.fleet import repository_key
from mendflow.infra.gitops import run_git

CLONE_TIMEOUT_S = 900.0
_NO_PROMPT = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}
"""A clone on a worker has no terminal: a URL that wants a password fails instead of waiting."""


def clones_dir(root: Path) -> Path:
    """``<state>/clones`` (created)."""
    path = Path(root) / "clones"
    path.mkdir(parents=True, exist_ok=True)
    return path


def clone_path(url: str, root: Path) -> Path:
    """Where the clone of ``url`` lives under the state directory ``root`` (not created)."""
    return clones_dir(root) / repository_key(url)


@contextmanager
def _host_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` beside the clone: two missions of this host never fetch at once."""
    with open(path.with_name(f".{path.name}.lock"), "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _source(url: str) -> str:
    """What git is given: a URL as is, a local path made absolute."""
    if "://" in url or (":" in url and "@" in url.split(":", 1)[0]):
        return url
    return str(Path(url).expanduser().resolve())


def sync_clone(url: str, branch: str, root: Path) -> Path:
    """Clone ``url`` into this host's cache, or fetch it; check ``branch`` out at the remote's tip.

    Args:
        url: the repository's git URL or path.
        branch: the branch to maintain.
        root: the state directory (``StateLayout.root``).

    Returns:
        The clone's directory, on ``branch`` at ``origin/<branch>``, with a clean tree.

    Raises:
        CloneError: git cannot clone or fetch the URL, or the branch does not exist
            there (the message carries git's words).
    """
    path = clone_path(url, root)
    hint = (f"check that every worker can read {url} (`git ls-remote {url}`) and that "
            f"branch {branch!r} exists there")
    with _host_lock(path):
        if path.is_dir() and not (path / ".git").exists():
            shutil.rmtree(path)  # a clone interrupted half-way
        if not path.exists():
            run_git(path.parent, "clone", "--quiet", "--no-checkout", "--origin", "origin",
                    "--", _source(url), str(path), env=_NO_PROMPT, error=CloneError, hint=hint,
                    timeout_s=CLONE_TIMEOUT_S)
        else:
            run_git(path, "remote", "set-url", "origin", _source(url), error=CloneError)
        run_git(path, "fetch", "--quiet", "--prune", "origin",
                f"+refs/heads/{branch}:refs/remotes/origin/{branch}", env=_NO_PROMPT,
                error=CloneError, hint=hint, timeout_s=CLONE_TIMEOUT_S)
        run_git(path, "checkout", "--quiet", "--force", "-B", branch, f"refs/remotes/origin/{branch}",
                error=CloneError, hint=hint)
        run_git(path, "clean", "-fdxq", error=CloneError)
    return path


def push_branch(clone: Path, branch: str) -> str:
    """Push ``branch`` of the clone to its remote, never forced.

    Args:
        clone: a clone made by :func:`sync_clone`.
        branch: the local branch (``mendflow/<mission-id>``).

    Returns:
        The pushed commit (40 hex).

    Raises:
        CloneError: the remote refused (for example the branch exists there with
            other commits) or cannot be reached.
    """
    tip = run_git(clone, "rev-parse", f"refs/heads/{branch}", error=CloneError).strip()
    run_git(clone, "push", "--quiet", "origin", f"refs/heads/{branch}:refs/heads/{branch}",
            env=_NO_PROMPT, error=CloneError, timeout_s=CLONE_TIMEOUT_S,
            hint="the remote branch moved or cannot be written; the commits stay on the "
                 "worker's clone")
    return tip
