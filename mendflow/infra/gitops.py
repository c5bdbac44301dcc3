"""Running git for mendflow: one place that turns GitPython failures into typed errors.

Every git command mendflow runs goes through :func:`run_git`, which

* calls the git CLI through GitPython (:meth:`git.cmd.Git.execute`),
* disables the repository's hooks (``-c core.hooksPath=/dev/null``) so that a
  user's ``post-checkout`` or ``pre-commit`` hook never runs inside a sandbox,
* turns :class:`git.GitCommandError` into the caller's error class
  (:class:`~mendflow.core.errors.SandboxError` by default) carrying the tail of
  git's standard error, so no traceback reaches the user.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import git

from mendflow.core.errors import ConfigError, MendflowError, RepositoryError, SandboxError
from mendflow.core.models import Sandbox

# Options passed before every git sub-command.
GIT_OPTIONS = ("-c", "core.hooksPath=" + os.devnull, "-c", "commit.gpgsign=false",
               "-c", "core.quotepath=false")
GIT_TIMEOUT_S = 600.0
MISSION_ID = re.compile(r"[a-z0-9][a-z0-9-]{2,63}")


def mission_branch(mission_id: str) -> str:
    """Return the branch name of a mission: ``mendflow/<mission-id>``."""
    return f"mendflow/{mission_id}"


def base_ref(mission_id: str) -> str:
    """Return the ref that records a mission's base commit: ``refs/mendflow/<id>/base``."""
    return f"refs/mendflow/{mission_id}/base"


def replay_ref(mission_id: str) -> str:
    """Return the ref that keeps a mission branch's tip while a resumed mission replays.

    ``refs/mendflow/<id>/replay``: set when a resumed mission rewinds its branch
    to the base commit, so that the replay re-uses those very commits (see
    :func:`mendflow.tasks.vcs.commit.commit_patch`) instead of making new ones.
    """
    return f"refs/mendflow/{mission_id}/replay"


def find_repository_root(path: Path | str) -> Path | None:
    """The working-tree root of the git repository that contains ``path`` (GitPython).

    Args:
        path: a repository, a directory inside one, or a file inside one.

    Returns:
        The absolute root, or None when ``path`` is not inside a non-bare repository
        (the mission's own repository check reports that with a proper error).
    """
    start = Path(path).expanduser()
    start = start if start.is_dir() else start.parent
    try:
        with git.Repo(start, search_parent_directories=True) as repo:
            return Path(repo.working_tree_dir).resolve() if repo.working_tree_dir else None
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def is_ancestor(cwd: Path, ancestor: str, descendant: str) -> bool:
    """True when ``ancestor`` is ``descendant`` or one of its ancestors (``git merge-base``)."""
    return git_succeeds(cwd, "merge-base", "--is-ancestor", ancestor, descendant)


def check_mission_id(mission_id: str) -> str:
    """Validate a mission id (it becomes a branch, a ref and a directory name).

    Args:
        mission_id: the id to check.

    Returns:
        The id, unchanged.

    Raises:
        ConfigError: the id is not 3-64 characters of ``[a-z0-9-]`` starting alphanumeric.
    """
    if not isinstance(mission_id, str) or not MISSION_ID.fullmatch(mission_id):
        raise ConfigError("invalid mission id", subject=repr(mission_id),
                          hint="use 3-64 characters: lowercase letters, digits and '-', "
                               "starting with a letter or digit")
    return mission_id


def stderr_tail(error: git.GitCommandError, lines: int = 12) -> str:
    """Return the last ``lines`` lines of a failed git command's standard error.

    Args:
        error: the GitPython exception.
        lines: how many lines to keep.

    Returns:
        The tail, with GitPython's ``stderr: '...'`` decoration removed.
    """
    text = str(error.stderr or error.stdout or "").strip()
    if text.startswith("stderr:"):
        text = text[len("stderr:"):].strip()
    text = text.strip("'").strip()
    return "\n".join(text.splitlines()[-lines:])


def run_git(cwd: Path, *args: str, env: Mapping[str, str] | None = None,
            error: type[MendflowError] = SandboxError, hint: str | None = None,
            check: bool = True, timeout_s: float = GIT_TIMEOUT_S) -> str:
    """Run ``git <args>`` in ``cwd`` and return its standard output.

    Args:
        cwd: the directory to run in (a worktree or the repository root).
        *args: the git sub-command and its arguments.
        env: variables added to the environment for this command only.
        error: the typed error raised when git fails.
        hint: what the user should do next, put on the error.
        check: when False, a non-zero exit returns "" instead of raising.
        timeout_s: seconds before git is killed (SIGKILL).

    Returns:
        git's standard output, undecorated (trailing newline kept; bytes that
        are not UTF-8 are kept as surrogate escapes).

    Raises:
        SandboxError: (or ``error``) git failed; the message holds git's stderr tail.
        RepositoryError: ``cwd`` does not exist.
    """
    if not Path(cwd).is_dir():
        raise RepositoryError("directory does not exist", subject=str(cwd),
                              hint="check the path; it may have been removed")
    command = ["git", *GIT_OPTIONS, *args]
    try:
        return git.Git(str(cwd)).execute(
            command, env=dict(env) if env else None, strip_newline_in_stdout=False,
            kill_after_timeout=timeout_s,
        )
    except git.GitCommandError as err:
        if not check:
            return ""
        raise error(f"`git {' '.join(args)}` failed (exit {err.status}): {stderr_tail(err)}",
                    subject=str(cwd), hint=hint) from None


def git_succeeds(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> bool:
    """Return True if ``git <args>`` exits 0 in ``cwd`` (for yes/no questions to git).

    Args:
        cwd: the directory to run in.
        *args: the git sub-command and its arguments.
        env: extra environment variables.

    Returns:
        Whether git exited with status 0.
    """
    try:
        git.Git(str(cwd)).execute(["git", *GIT_OPTIONS, *args], env=dict(env) if env else None,
                                  kill_after_timeout=GIT_TIMEOUT_S)
    except git.GitCommandError:
        return False
    return True


def rev_parse(cwd: Path, rev: str) -> str | None:
    """Return the commit sha ``rev`` names in the repository at ``cwd``, or None.

    Args:
        cwd: a worktree or repository directory.
        rev: a revision (sha, branch, ref name, ``HEAD``...).

    Returns:
        The full 40-hex commit sha, or None if ``rev`` names no commit.
    """
    if not rev or rev.startswith("-"):
        return None
    out = run_git(cwd, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    return out.strip() or None


def retry_on_sandbox_error(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry only git failures (a busy ``index.lock`` ...).

    A typed error about the input (a rejected patch, a bad path) is final;
    retrying it would only repeat the same answer.

    Args:
        task: the Prefect task (unused).
        task_run: the task run (unused).
        state: the Failed state; its data is the raised exception.

    Returns:
        True if the task failed with a :class:`~mendflow.core.errors.SandboxError`.
    """
    data = state.data if isinstance(state.data, BaseException) else \
        state.result(raise_on_failure=False)
    return isinstance(data, SandboxError)


def list_worktrees(root: Path) -> list[dict[str, str]]:
    """Return the worktrees of the repository at ``root`` (``git worktree list --porcelain``).

    Args:
        root: any worktree of the repository.

    Returns:
        One dict per worktree with the porcelain keys: ``worktree`` (absolute
        path), ``HEAD``, and where present ``branch`` (full ref name),
        ``detached``, ``bare``, ``locked``, ``prunable``.

    Raises:
        SandboxError: git failed.
    """
    out = run_git(root, "worktree", "list", "--porcelain")
    entries: list[dict[str, str]] = []
    for block in out.strip().split("\n\n"):
        entry: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(" ")
            entry[key] = value
        if "worktree" in entry:
            entries.append(entry)
    return entries


def open_sandbox_repo(sandbox: Sandbox) -> git.Repo:
    """Open the sandbox's worktree with GitPython and check it is on the mission branch.

    Args:
        sandbox: the sandbox to open.

    Returns:
        The :class:`git.Repo` (use it as a context manager to close it).

    Raises:
        SandboxError: the worktree is missing, not a git worktree, or on another branch.
    """
    hint = "re-create the sandbox (re-run the mission with the same id)"
    try:
        repo = git.Repo(sandbox.path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise SandboxError("the sandbox is not a git worktree", subject=str(sandbox.path),
                           hint=hint) from None
    branch = None if repo.head.is_detached else repo.head.ref.path
    if branch != f"refs/heads/{sandbox.branch}":
        repo.close()
        raise SandboxError(f"the sandbox is on {branch or 'a detached HEAD'}, not on "
                           f"{sandbox.branch}", subject=str(sandbox.path), hint=hint)
    return repo
