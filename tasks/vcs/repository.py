"""Finding the target repository and guarding the user's checkout.

mendflow works on the *committed* HEAD of the user's repository; uncommitted
changes in the user's checkout are not part of a mission (they are reported
with a warning and left alone). :func:`snapshot_checkout` and
:func:`verify_checkout` prove the user's status, branches, tags and HEAD did
not move during a mission.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import git

from mendflow.core.errors import CheckoutChanged, ConfigError, RepositoryError
from mendflow.core.models import CheckoutSnapshot, RepoTarget
from mendflow.infra.gitops import rev_parse, run_git

ScopeName = Literal["auto", "project", "directory", "file"]
ScopeKind = Literal["project", "directory", "file"]
_ANY_PATH_HINT = "pass a git repository, a directory inside one, or a file inside one"


# --- resolving the target -------------------------------------------------------------


def resolve_repository(path: str | Path, scope: ScopeName = "auto") -> RepoTarget:
    """Find the git repository that contains ``path`` and the scope of the mission.

    Args:
        path: a repository root, a directory inside one, or a file inside one.
        scope: ``auto`` (project for the root, directory for a directory, file
            for a file), or an explicit ``project`` / ``directory`` / ``file``.
            ``project`` always widens to the whole repository.

    Returns:
        The :class:`RepoTarget`: root, committed HEAD (sha and branch, None
        when detached), scope and ``scope_path`` (POSIX, relative to the root).

    Raises:
        RepositoryError: the path does not exist, is not in a git repository,
            the repository is bare or has no commits, or no Python file is
            tracked at HEAD in the scope.
        ConfigError: an explicit scope contradicts the path (``file`` for a directory ...).
    """
    given = Path(path).expanduser()
    if not given.exists():
        raise RepositoryError("path does not exist", subject=str(given), hint=_ANY_PATH_HINT)
    target = given.resolve()
    root, head_commit, head_branch = _open_repository(target)
    relative = target.relative_to(root)
    if relative.parts and relative.parts[0] == ".git":
        raise RepositoryError("path is inside the .git directory", subject=str(target),
                              hint=_ANY_PATH_HINT)
    kind, scope_path = _scope(target, root, scope)
    _require_python(root, kind, scope_path)
    return RepoTarget(root=root, head_commit=head_commit, head_branch=head_branch,
                      scope=kind, scope_path=scope_path)


def _open_repository(target: Path) -> tuple[Path, str, str | None]:
    """Return (root, HEAD sha, branch or None) of the repository around ``target``."""
    start = target if target.is_dir() else target.parent
    try:
        repo = git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise RepositoryError("not inside a git repository", subject=str(target),
                              hint="run `git init` and commit your code, or " + _ANY_PATH_HINT
                              ) from None
    with repo:
        if repo.bare or repo.working_tree_dir is None:
            raise RepositoryError("is a bare repository (it has no working tree)",
                                  subject=str(target),
                                  hint="clone it (`git clone <bare> <dir>`) and run mendflow "
                                       "on the clone")
        root = Path(repo.working_tree_dir).resolve()
        if not repo.head.is_valid():
            _refuse_unsafe_owner(repo, root)
            raise RepositoryError("the repository has no commits", subject=str(root),
                                  hint="commit your code first: mendflow works on the "
                                       "committed HEAD")
        branch = None if repo.head.is_detached else repo.head.ref.name
        return root, repo.head.commit.hexsha, branch


def _refuse_unsafe_owner(repo: git.Repo, root: Path) -> None:
    """Raise when git itself refuses the repository (another user owns it).

    GitPython reads ``.git`` directly and sees no valid HEAD, while every git
    command fails with "detected dubious ownership" (git >= 2.35.2): say so,
    instead of "no commits".

    Raises:
        RepositoryError: git refuses to work in the repository.
    """
    try:
        repo.git.rev_parse("--verify", "HEAD")
    except git.GitCommandError as err:
        if "dubious ownership" in str(err.stderr):
            raise RepositoryError(
                "git refuses this repository: another user owns it (dubious ownership)",
                subject=str(root),
                hint=f"run mendflow as the repository's owner, or, if you trust it, "
                     f"`git config --global --add safe.directory {root}`") from None


def _scope(target: Path, root: Path, scope: ScopeName) -> tuple[ScopeKind, str]:
    relative = target.relative_to(root).as_posix()
    natural: ScopeKind = "project" if target == root else \
        "directory" if target.is_dir() else "file"
    if scope == "auto":
        return natural, relative
    if scope == "project":
        return "project", "."
    if scope == "directory" and natural != "file":
        return "directory", relative
    if scope == "file" and natural == "file":
        return "file", relative
    raise ConfigError(f"scope '{scope}' does not fit this path (it is a "
                      f"{'file' if natural == 'file' else 'directory'})", subject=str(target),
                      hint="use scope 'auto', or pass a path of the matching kind")


def _require_python(root: Path, kind: str, scope_path: str) -> None:
    listing = run_git(root, "--literal-pathspecs", "ls-tree", "-r", "-z", "--name-only", "HEAD",
                      "--", scope_path, error=RepositoryError)
    names = [name for name in listing.split("\0") if name]
    if kind == "file":
        if scope_path not in names or not scope_path.endswith((".py", ".pyi")):
            raise RepositoryError("not a Python file committed at HEAD", subject=scope_path,
                                  hint="commit the file first (mendflow works on committed "
                                       "code) or pick a .py file")
    elif not any(name.endswith(".py") for name in names):
        raise RepositoryError("no Python files are tracked at HEAD in the scope",
                              subject=f"{root} ({scope_path})",
                              hint="point mendflow at a repository or directory with "
                                   "committed .py files")


def uncommitted_changes(root: Path) -> list[str]:
    """Return the ``git status --porcelain`` lines of tracked files changed but not committed.

    Args:
        root: the user's repository root.

    Returns:
        One line per changed tracked file (empty when the checkout is clean).
    """
    out = run_git(root, "--no-optional-locks", "status", "--porcelain=v1",
                  "--untracked-files=no", error=RepositoryError)
    return [line for line in out.splitlines() if line.strip()]


# --- the user's checkout --------------------------------------------------------------


def snapshot_checkout(root: Path) -> CheckoutSnapshot:
    """Record what a mission must never change in the user's checkout.

    Read-only: runs ``git --no-optional-locks status`` (no index refresh is written).

    Args:
        root: the user's repository root.

    Returns:
        The ``git status --porcelain=v1 -z --untracked-files=all`` text, every
        ref under refs/heads and refs/tags (name -> sha) except mendflow's own
        ``refs/heads/mendflow/*``, and HEAD (``refs/heads/<branch>`` or a sha).

    Raises:
        RepositoryError: git failed on the user's repository.
    """
    status = run_git(root, "--no-optional-locks", "status", "--porcelain=v1", "-z",
                     "--untracked-files=all", error=RepositoryError)
    listing = run_git(root, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads",
                      "refs/tags", error=RepositoryError)
    refs: dict[str, str] = {}
    for line in listing.splitlines():
        sha, _, name = line.partition(" ")
        if name and not name.startswith("refs/heads/mendflow/"):
            refs[name] = sha
    head = run_git(root, "symbolic-ref", "-q", "HEAD", check=False).strip()
    return CheckoutSnapshot(status_porcelain=status, refs=refs, head=head or rev_parse(root, "HEAD") or "")


def verify_checkout(root: Path, before: CheckoutSnapshot) -> None:
    """Check that the user's checkout is exactly as :func:`snapshot_checkout` saw it.

    Args:
        root: the user's repository root.
        before: the snapshot taken before the mission.

    Raises:
        CheckoutChanged: the status, a branch or tag, or HEAD differs; the
            message names each difference.
    """
    after = snapshot_checkout(root)
    problems = []
    if after.head != before.head:
        problems.append(f"HEAD moved from {before.head} to {after.head}")
    for name in sorted(before.refs.keys() | after.refs.keys()):
        old, new = before.refs.get(name), after.refs.get(name)
        if old != new:
            problems.append(f"{name}: {old or '(absent)'} -> {new or '(deleted)'}")
    old_status, new_status = _status_entries(before.status_porcelain), \
        _status_entries(after.status_porcelain)
    for entry in sorted(old_status - new_status):
        problems.append(f"status entry gone: {entry!r}")
    for entry in sorted(new_status - old_status):
        problems.append(f"new status entry: {entry!r}")
    if problems:
        shown = "; ".join(problems[:12]) + (f"; ... {len(problems) - 12} more"
                                            if len(problems) > 12 else "")
        raise CheckoutChanged(f"the checkout changed during the mission: {shown}",
                               subject=str(root),
                               hint="mendflow never writes to your checkout: another program "
                                    "changed it meanwhile. The mission's commits are on its "
                                    "mendflow/<mission-id> branch; review `git status`")


def _status_entries(porcelain: str) -> set[str]:
    """Split ``git status -z`` output into entries (a rename keeps its source path)."""
    items = porcelain.split("\0")
    entries: set[str] = set()
    index = 0
    while index < len(items):
        item = items[index]
        if item and item[:2].strip() and ("R" in item[:2] or "C" in item[:2]):
            index += 1
            item = f"{item} <- {items[index] if index < len(items) else ''}"
        if item:
            entries.add(item)
        index += 1
    return entries


