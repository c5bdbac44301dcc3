"""Committing accepted patches on the mission branch, with per-file SHA-256 backups.

Each accepted patch becomes one commit whose message ends with the trailers
``Mendflow-Patch: <patch id>`` and ``Mendflow-Mission: <mission id>``; that
makes :func:`commit_patch` idempotent (a re-run after a crash finds the commit).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import git

from mendflow.core.errors import PatchRejected
from mendflow.core.models import BackupEntry, CommitRecord, Patch, Sandbox
from mendflow.infra.gitops import open_sandbox_repo, replay_ref, rev_parse, run_git

FALLBACK_IDENTITY = {"name": "mendflow", "email": "mendflow@localhost"}


# --- committing accepted patches ------------------------------------------------------


def commit_patch(sandbox: Sandbox, patch: Patch, summary: str, backups_dir: Path,
                 date: str | None = None) -> CommitRecord:
    """Commit an accepted, already applied patch on the mission branch.

    For every file in ``patch.files`` the SHA-256 of its bytes before (the
    blob at the branch HEAD) and after (the working file) is recorded and the
    "before" bytes are copied to ``backups_dir/<patch id>/<path>``. Exactly
    those files are staged and committed with the message: ``patch.title``,
    the finding ids, the fixer, ``summary``, and the trailers
    ``Mendflow-Patch``/``Mendflow-Mission``. The identity is the repository's
    configured one, else ``mendflow <mendflow@localhost>`` (set in the
    environment of that one commit; git config is never written). Hooks and
    commit signing are disabled for the commit.

    Args:
        sandbox: the mission's worktree, checked out on its branch.
        patch: the accepted patch (its files are already changed in the worktree).
        summary: one line on why it was accepted (the validation summary).
        backups_dir: where copies of the files before the change go.
        date: author and committer date (ISO 8601), normally the mission's start:
            with it, replaying a resumed mission re-creates the very same commit
            (same sha) instead of a new one. None = now.

    Returns:
        The :class:`CommitRecord`; if a commit with the trailer
        ``Mendflow-Patch: <patch.id>`` already exists on the branch since the
        base commit, its record is returned and nothing is committed again;
        if a resumed mission's replay reaches a commit of the patch made
        before the interruption (kept in ``refs/mendflow/<id>/replay``, same
        parent, same files), the branch moves back onto that commit.

    Raises:
        PatchRejected: a path escapes the worktree (``path-escape``) or the
            patch changes none of its files (``empty``).
        SandboxError: the worktree is not on the mission branch, or git failed.
    """
    for name in patch.files:
        _check_relative(name)
    with open_sandbox_repo(sandbox) as repo:
        existing = find_patch_commit(sandbox, patch.id)
        if existing is not None:
            commit = repo.commit(existing)
            parent = commit.parents[0] if commit.parents else None
            return _record(sandbox, patch, commit.hexsha, parent,
                           lambda name: _blob_bytes(commit, name), backups_dir)
        head = repo.head.commit
        replayed = _replayed_commit(sandbox, repo, patch, head)
        if replayed is not None:  # a resumed mission: move back onto the commit made before
            run_git(sandbox.path, "reset", "-q", replayed.hexsha)
            return _record(sandbox, patch, replayed.hexsha, head,
                           lambda name: _blob_bytes(replayed, name), backups_dir)
        sha = _new_commit(sandbox, patch, head, summary, date)
        return _record(sandbox, patch, sha, head,
                       lambda name: _worktree_bytes(sandbox.path, name), backups_dir)


def _new_commit(sandbox: Sandbox, patch: Patch, head: git.Commit, summary: str,
                date: str | None) -> str:
    """Stage exactly the patch's changed files and commit them (:func:`commit_patch`).

    Returns:
        The new commit's sha.

    Raises:
        PatchRejected: the patch changes none of its files (``empty``).
    """
    changed = [name for name in patch.files
               if _blob_bytes(head, name) != _worktree_bytes(sandbox.path, name)]
    if not changed:
        raise PatchRejected("the patch changes none of its files", reason="empty",
                            subject=patch.id, hint="apply the patch before committing it")
    run_git(sandbox.path, "reset", "-q")  # the index of the sandbox = HEAD, nothing else staged
    run_git(sandbox.path, "--literal-pathspecs", "add", "-A", "--", *changed)
    with tempfile.TemporaryDirectory(prefix="mendflow-msg-") as tmp:
        message = Path(tmp) / "message"
        message.write_text(commit_message(patch, sandbox.mission_id, summary), "utf-8")
        env = identity_env(sandbox.path)
        if date:
            env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
        run_git(sandbox.path, "commit", "-q", "--no-verify", "--cleanup=whitespace",
                "-F", str(message), env=env)
    return rev_parse(sandbox.path, "HEAD") or ""


def commit_message(patch: Patch, mission_id: str, summary: str) -> str:
    """Compose the commit message of an accepted patch (title, body, trailers).

    Args:
        patch: the accepted patch.
        mission_id: the mission's id.
        summary: the validation summary.

    Returns:
        The message; its last paragraph holds the ``Mendflow-*`` trailers.
    """
    title = " ".join(patch.title.split()) or f"mendflow patch {patch.id}"
    body = [f"Findings: {', '.join(patch.finding_ids) or '(none)'}", f"Fixer: {patch.fixer}"]
    paragraphs = [title, "\n".join(body)]
    if patch.description.strip():
        paragraphs.append(patch.description.strip())
    if summary.strip():
        paragraphs.append(f"Validation: {summary.strip()}")
    paragraphs.append(f"Mendflow-Patch: {_one_line(patch.id)}\n"
                      f"Mendflow-Mission: {_one_line(mission_id)}")
    return "\n\n".join(paragraphs) + "\n"


def find_patch_commit(sandbox: Sandbox, patch_id: str, tip: str | None = None) -> str | None:
    """Return the commit on the mission branch (since the base) carrying ``Mendflow-Patch: id``.

    Args:
        sandbox: the mission's sandbox.
        patch_id: the patch id to look for.
        tip: search the history of this ref instead of the mission branch.

    Returns:
        The commit sha, or None if the patch was not committed yet.

    Raises:
        SandboxError: git failed.
    """
    out = run_git(sandbox.path, "log", "--format=%H%x00%(trailers:key=Mendflow-Patch,valueonly)%x1e",
                  f"{sandbox.base_commit}..{tip or f'refs/heads/{sandbox.branch}'}")
    for record in out.split("\x1e"):
        sha, _, values = record.strip().partition("\0")
        if sha and _one_line(patch_id) in (v.strip() for v in values.splitlines()):
            return sha
    return None


def _replayed_commit(sandbox: Sandbox, repo: git.Repo, patch: Patch,
                     head: git.Commit) -> git.Commit | None:
    """The commit of ``patch`` kept from before a resume, if the replay has reached it.

    It qualifies when it is on ``refs/mendflow/<id>/replay``, carries the
    patch's trailer, its parent is the current HEAD, and its files equal the
    working files (so moving the branch onto it changes no byte).
    """
    ref = replay_ref(sandbox.mission_id)
    if rev_parse(sandbox.path, ref) is None:
        return None
    sha = find_patch_commit(sandbox, patch.id, tip=ref)
    if sha is None:
        return None
    commit = repo.commit(sha)
    if not commit.parents or commit.parents[0] != head:
        return None
    paths = set(patch.files)
    for change in head.diff(commit):
        paths.update((change.a_path, change.b_path))
    same = all(_blob_bytes(commit, name) == _worktree_bytes(sandbox.path, name)
               for name in paths if name)
    return commit if same else None


def identity_env(cwd: Path) -> dict[str, str]:
    """Return the GIT_AUTHOR_*/GIT_COMMITTER_* variables to set for a mendflow commit.

    A variable is set (to ``mendflow`` / ``mendflow@localhost``) only when
    neither the environment nor git config (``user.*``, ``author.*``,
    ``committer.*``) provide it.

    Args:
        cwd: the worktree the commit is made in.

    Returns:
        The variables to add for that one ``git commit``; empty when the
        repository has an identity.
    """
    env: dict[str, str] = {}
    for role in ("author", "committer"):
        for field, fallback in FALLBACK_IDENTITY.items():
            variable = f"GIT_{role.upper()}_{field.upper()}"
            if os.environ.get(variable):
                continue
            configured = run_git(cwd, "config", "--get", f"{role}.{field}", check=False).strip() \
                or run_git(cwd, "config", "--get", f"user.{field}", check=False).strip()
            if not configured:
                env[variable] = fallback
    return env


def _record(sandbox: Sandbox, patch: Patch, sha: str, parent: git.Commit | None,
            after_of: Callable[[str], bytes | None], backups_dir: Path) -> CommitRecord:
    folder = Path(backups_dir) / re.sub(r"[^A-Za-z0-9._-]", "_", patch.id)
    entries = []
    for name in patch.files:
        before = _blob_bytes(parent, name) if parent is not None else None
        after = after_of(name)
        backup_path = None
        if before is not None:
            copy = folder / PurePosixPath(name)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(before)
            backup_path = str(copy)
        entries.append(BackupEntry(path=name, sha256_before=_sha256(before),
                                   sha256_after=_sha256(after), commit=sha, patch_id=patch.id,
                                   backup_path=backup_path))
    return CommitRecord(patch_id=patch.id, commit=sha, backups=tuple(entries))


def _blob_bytes(commit: git.Commit, name: str) -> bytes | None:
    try:
        blob = commit.tree / name
    except KeyError:
        return None
    if blob.type != "blob":
        return None
    return blob.data_stream.read()


def _worktree_bytes(root: Path, name: str) -> bytes | None:
    path = root / name
    if path.is_symlink():  # git stores a symlink as its target text
        return os.fsencode(os.readlink(path))
    return path.read_bytes() if path.is_file() else None


def _sha256(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _check_relative(name: str) -> None:
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or ".." in pure.parts or ".git" in pure.parts \
            or "\\" in name:
        raise PatchRejected("the path leaves the worktree or touches .git", reason="path-escape",
                            subject=name, hint="patch files must be relative paths inside "
                                               "the repository")


