"""Applying, undoing and hashing changes in a sandbox worktree.

A candidate patch is parsed with :mod:`unidiff` and refused before git sees
it when it could write outside the worktree (absolute path, ``..``, a path
through a symbolic link that leads outside, ``.git``, a symbolic link it would
create), or when it is binary. git's own view of the paths (``git apply
--numstat``) is checked the same way, then ``git apply --check`` and ``git
apply`` run; if the real apply fails, the touched files are restored byte for
byte, so nothing is ever half-applied.
"""

from __future__ import annotations

import codecs
import re
import tempfile
from pathlib import Path

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from mendflow.core.errors import PatchRejected, SandboxError
from mendflow.core.models import Patch, Sandbox
from mendflow.infra.gitops import is_ancestor, replay_ref, rev_parse, run_git

_DEV_NULL = "/dev/null"
_SYMLINK_MODE = re.compile(r"^(new file mode|new mode|old mode|deleted file mode|index \S+) "
                           r"?120000\s*$")
_DRIVE = re.compile(r"^[A-Za-z]:")
# Artefacts of the tools themselves, left out of the tree hash even where the
# repository's .gitignore does not ignore them (a tracked file matching them keeps
# its committed content in the hash).
HASH_EXCLUDES = tuple(f":(exclude,glob){pattern}" for pattern in (
    "**/__pycache__/**", "**/*.py[co]", "**/.pytest_cache/**", "**/.mypy_cache/**",
    "**/.ruff_cache/**", "**/*.egg-info/**", "**/.coverage", "**/.coverage.*",
))


def apply_to_worktree(sandbox: Sandbox, patch: Patch) -> None:
    """Apply ``patch.diff`` to the sandbox's working tree, all or nothing.

    Args:
        sandbox: the mission's sandbox.
        patch: the candidate patch (a unified diff, git format preferred).

    Raises:
        PatchRejected: ``path-escape`` (absolute path, ``..``, ``.git``, a path
            that resolves outside the worktree through a symlink, a symlink
            change), ``binary`` (a binary diff), or ``apply-failed`` (the diff
            is malformed or does not apply; git's message is included).
    """
    text = patch.diff if patch.diff.endswith("\n") else patch.diff + "\n"
    files = _parse(text, patch.id)
    strip = _strip_level(files, text)
    _guard_files(sandbox.path, files, strip, patch.id)
    with tempfile.TemporaryDirectory(prefix="mendflow-patch-") as tmp:
        patch_file = Path(tmp) / "candidate.diff"
        patch_file.write_text(text, encoding="utf-8", errors="surrogateescape")
        touched = _git_paths(sandbox.path, patch_file, strip, patch.id)
        for name in touched:
            _check_path(sandbox.path, name, patch.id)
        _git_apply(sandbox.path, patch_file, strip, patch.id, check=True)
        saved = {name: _read(sandbox.path / name) for name in touched}
        try:
            _git_apply(sandbox.path, patch_file, strip, patch.id, check=False)
        except PatchRejected:
            _restore(sandbox.path, saved)
            raise


def reset_worktree(sandbox: Sandbox, patch: Patch | None = None) -> None:
    """Restore the working tree to the branch HEAD (``git reset --hard HEAD``).

    Files the patch added (untracked and not ignored) are deleted too. Other
    untracked or ignored files (build artefacts such as ``*.egg-info`` made by
    the environment install) are kept: this is never ``git clean -x``.

    Args:
        sandbox: the mission's sandbox.
        patch: the patch that was applied, or None to only reset tracked files.

    Raises:
        SandboxError: git failed.
    """
    run_git(sandbox.path, "reset", "-q", "--hard", "HEAD")
    if patch is None:
        return
    root = sandbox.path.resolve()
    candidates = [name for name in patch_paths(patch) if _inside(root, name)]
    if not candidates:
        return
    listing = run_git(sandbox.path, "--literal-pathspecs", "ls-files", "-z", "--others",
                      "--exclude-standard", "--", *candidates)
    for name in filter(None, listing.split("\0")):
        path = sandbox.path / name
        if _inside(root, name) and (path.is_file() or path.is_symlink()):
            path.unlink()
            _remove_empty_parents(path.parent, sandbox.path)


def rewind_worktree(sandbox: Sandbox, commit: str) -> None:
    """Move the mission branch and its worktree to ``commit``, discarding every change.

    Used when a mission (re)starts: the replay of a resumed mission begins
    from its base commit. The branch's old tip is kept in
    ``refs/mendflow/<id>/replay`` (unless that ref already holds it, from an
    earlier interrupted replay), so the replay moves the branch back onto its
    existing commits instead of making new ones, and no commit is lost if the
    replay takes another path. Untracked files that are neither ignored nor tool artefacts are removed
    (a crashed ``git apply`` may have left new files); ignored files (build
    artefacts of the environment install) are kept.

    Args:
        sandbox: the mission's sandbox (its worktree is on the mission branch).
        commit: the commit to move to (normally ``sandbox.base_commit``).

    Raises:
        SandboxError: git failed.
    """
    tip = rev_parse(sandbox.path, "HEAD")
    if tip is not None and tip != commit:
        ref = replay_ref(sandbox.mission_id)
        kept = rev_parse(sandbox.path, ref)
        if kept is None or not is_ancestor(sandbox.path, tip, kept):
            run_git(sandbox.path, "update-ref", "-m", "mendflow: the branch tip before a replay",
                    ref, tip)
    run_git(sandbox.path, "reset", "-q", "--hard", commit)
    run_git(sandbox.path, "clean", "-q", "-f", "-d", "--", ".", *HASH_EXCLUDES)


def drop_replay_ref(sandbox: Sandbox) -> bool:
    """Delete ``refs/mendflow/<id>/replay`` once the mission branch holds all its commits.

    Args:
        sandbox: the mission's sandbox.

    Returns:
        True when there is no replay ref left; False when it is kept because
        the replay took another path and the ref holds commits the branch
        does not (they stay reachable: nothing is lost).

    Raises:
        SandboxError: git failed.
    """
    ref = replay_ref(sandbox.mission_id)
    kept = rev_parse(sandbox.path, ref)
    if kept is None:
        return True
    if not is_ancestor(sandbox.path, kept, "HEAD"):
        return False
    run_git(sandbox.path, "update-ref", "-d", ref, kept)
    return True


def hash_worktree(sandbox: Sandbox) -> str:
    """Return the git tree id of the working tree as it is, without touching its index.

    Uses a temporary index (``GIT_INDEX_FILE``) seeded with ``git read-tree
    HEAD``, then ``git add -A`` (tracked and untracked files, ``.gitignore``
    respected) and ``git write-tree``. Equal contents give equal ids. Untracked
    tool artefacts (``__pycache__``, ``.pytest_cache``, ``.coverage``,
    ``*.egg-info`` ..., see :data:`HASH_EXCLUDES`) do not count.

    Args:
        sandbox: the mission's sandbox.

    Returns:
        The 40-hex tree id.

    Raises:
        SandboxError: git failed.
    """
    with tempfile.TemporaryDirectory(prefix="mendflow-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        run_git(sandbox.path, "read-tree", "HEAD", env=env)
        run_git(sandbox.path, "add", "-A", "--", ".", *HASH_EXCLUDES, env=env)
        return run_git(sandbox.path, "write-tree", env=env).strip()


def patch_paths(patch: Patch) -> list[str]:
    """Return the repository-relative paths a patch's diff names (sources and targets).

    Args:
        patch: the patch.

    Returns:
        The paths, sorted; empty if the diff cannot be parsed.
    """
    text = patch.diff if patch.diff.endswith("\n") else patch.diff + "\n"
    try:
        files = _parse(text, patch.id)
    except PatchRejected:
        return []
    strip = _strip_level(files, text)
    return sorted({name for pf in files for name in _file_paths(pf, strip)})


# --- parsing and guards ---------------------------------------------------------------


def _parse(text: str, patch_id: str) -> PatchSet:
    try:
        files = PatchSet(text)
    except UnidiffParseError as err:
        raise PatchRejected(f"the diff cannot be parsed: {err}", reason="apply-failed",
                            subject=patch_id, hint="produce a unified diff (git diff format)"
                            ) from None
    if not len(files):
        raise PatchRejected("the diff changes no file", reason="apply-failed", subject=patch_id,
                            hint="produce a unified diff (git diff format)")
    return files


def _strip_level(files: PatchSet, text: str) -> int:
    """1 for git-style ``a/`` ``b/`` prefixes (or a ``diff --git`` header), else 0."""
    if re.search(r"^diff --git ", text, re.MULTILINE):
        return 1
    names = [(pf.source_file, "a/") for pf in files] + [(pf.target_file, "b/") for pf in files]
    prefixed = all(_unquote(name).startswith(prefix)
                   for name, prefix in names if name and _unquote(name) != _DEV_NULL)
    return 1 if prefixed else 0


def _file_paths(pf, strip: int) -> list[str]:
    paths = []
    for raw in (pf.source_file, pf.target_file):
        name = _unquote(raw or "")
        if not name or name == _DEV_NULL:
            continue
        parts = name.split("/")
        paths.append("/".join(parts[strip:]) if len(parts) > strip else name)
    return paths


def _unquote(name: str) -> str:
    """Undo git's C-style quoting of unusual path names (``"a/na\\303\\257ve.py"``)."""
    if len(name) >= 2 and name[0] == name[-1] == '"':
        raw = codecs.escape_decode(name[1:-1].encode("utf-8", "surrogateescape"))[0]
        return raw.decode("utf-8", "surrogateescape")
    return name


def _guard_files(root: Path, files: PatchSet, strip: int, patch_id: str) -> None:
    for pf in files:
        if pf.is_binary_file:
            raise PatchRejected(f"binary change to {pf.path}", reason="binary", subject=patch_id,
                                hint="mendflow only applies text patches")
        info = [line.rstrip("\n") for line in (pf.patch_info or [])]
        if any(_SYMLINK_MODE.match(line) for line in info):
            raise PatchRejected(f"the patch creates or changes a symbolic link ({pf.path})",
                                reason="path-escape", subject=patch_id,
                                hint="patches may not add or change symbolic links")
        for name in _file_paths(pf, strip):
            _check_path(root, name, patch_id)


def _check_path(root: Path, name: str, patch_id: str) -> None:
    parts = [part for part in re.split(r"[/\\]", name) if part not in ("", ".")]
    if not name or name.startswith(("/", "\\")) or _DRIVE.match(name):
        problem = "is an absolute path"
    elif ".." in parts:
        problem = "goes up with '..'"
    elif any(part.lower() == ".git" for part in parts):
        problem = "touches .git"
    elif not parts or not _inside(root.resolve(), name):
        problem = "resolves outside the worktree (through a symbolic link)"
    else:
        return
    raise PatchRejected(f"path {name!r} {problem}", reason="path-escape", subject=patch_id,
                        hint="a patch may only change files inside the repository")


def _inside(root: Path, name: str) -> bool:
    """True if ``root/name``, following symlinks, stays inside ``root`` (already resolved)."""
    return (root / name).resolve().is_relative_to(root)


def _git_paths(cwd: Path, patch_file: Path, strip: int, patch_id: str) -> list[str]:
    """Every path git would touch (``git apply --numstat -z``), renames included."""
    try:
        out = run_git(cwd, "apply", "--numstat", "-z", f"-p{strip}", str(patch_file))
    except SandboxError as err:
        raise PatchRejected(f"git cannot read the patch: {err.message}", reason="apply-failed",
                            subject=patch_id, hint="produce a unified diff (git diff format)"
                            ) from None
    tokens, paths, index = out.split("\0"), [], 0
    while index < len(tokens):
        fields = tokens[index].split("\t", 2)
        index += 1
        if len(fields) < 3:
            continue
        if fields[0] == "-":
            raise PatchRejected(f"binary change to {fields[2] or tokens[index]}", reason="binary",
                                subject=patch_id, hint="mendflow only applies text patches")
        if fields[2]:
            paths.append(fields[2])
        else:  # a rename or copy: the source and the destination follow
            paths.extend(tokens[index:index + 2])
            index += 2
    return sorted(set(filter(None, paths)))


def _git_apply(cwd: Path, patch_file: Path, strip: int, patch_id: str, *, check: bool) -> None:
    args = ["apply", "--whitespace=nowarn", f"-p{strip}"] + (["--check"] if check else [])
    try:
        run_git(cwd, *args, str(patch_file))
    except SandboxError as err:
        raise PatchRejected(f"the patch does not apply: {err.message}", reason="apply-failed",
                            subject=patch_id,
                            hint="make the diff against the sandbox's current tree") from None


# --- byte-exact restore ---------------------------------------------------------------


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() and not path.is_symlink() else None


def _restore(root: Path, saved: dict[str, bytes | None]) -> None:
    for name, data in saved.items():
        path = root / name
        if data is None:
            if path.is_file() and not path.is_symlink():
                path.unlink()
                _remove_empty_parents(path.parent, root)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def _remove_empty_parents(folder: Path, root: Path) -> None:
    stop = root.resolve()
    current = folder
    while current.resolve() != stop and current.resolve().is_relative_to(stop):
        if any(current.iterdir()):
            return
        current.rmdir()
        current = current.parent

