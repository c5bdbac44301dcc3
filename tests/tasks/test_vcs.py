"""Tests of tasks.vcs on real git repositories made in tmp_path."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mendflow.core.errors import CheckoutChanged, ConfigError, PatchRejected, RepositoryError
from mendflow.infra.gitops import replay_ref
from mendflow.infra.layout import StateLayout
from mendflow.tasks.sandbox import WorktreeSandbox, drop_replay_ref, rewind_worktree
from mendflow.tasks.vcs import (
    commit_patch,
    resolve_repository,
    resolve_target,
    rollback_mission,
    snapshot_checkout,
    uncommitted_changes,
    verify_checkout,
)
from tests.helpers.git import git
from tests.helpers.sandbox import FILES, git_diff, make_patch, sha256

# --- resolve_repository ---------------------------------------------------------------

home = StateLayout.resolve  # the $MENDFLOW_HOME layout (isolated per test by conftest)


def test_resolve_nonexistent_path(tmp_path):
    with pytest.raises(RepositoryError) as info:
        resolve_repository(tmp_path / "nope")
    assert "does not exist" in str(info.value)
    assert info.value.hint and str(tmp_path / "nope") in str(info.value)


def test_resolve_not_a_repository(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "a.py").write_text("x = 1\n")
    with pytest.raises(RepositoryError, match="not inside a git repository") as info:
        resolve_repository(tmp_path / "plain" / "a.py")
    assert "git init" in info.value.hint


def test_resolve_bare_repository(tmp_path):
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    with pytest.raises(RepositoryError, match="bare") as info:
        resolve_repository(bare)
    assert "clone" in info.value.hint


def test_resolve_empty_repository(tmp_path):
    empty = tmp_path / "empty"
    subprocess.run(["git", "init", "-q", str(empty)], check=True)
    (empty / "a.py").write_text("x = 1\n")
    with pytest.raises(RepositoryError, match="no commits") as info:
        resolve_repository(empty)
    assert "commit" in info.value.hint


@pytest.mark.skipif(os.geteuid() != 0, reason="giving the repository another owner needs root")
def test_resolve_repository_owned_by_another_user(make_repo, monkeypatch):
    """git refuses another user's repository; that is not 'no commits' (a mounted checkout)."""
    repo = make_repo({"mod.py": "X = 1\n"})
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)  # no safe.directory from this machine
    os.chown(repo, 4321, 4321)
    os.chown(repo / ".git", 4321, 4321)
    with pytest.raises(RepositoryError, match="dubious ownership") as info:
        resolve_repository(repo)
    assert info.value.hint and "safe.directory" in info.value.hint


def test_resolve_repository_without_python(make_repo):
    root = make_repo({"README.md": "hello\n", "data/x.txt": "1\n"})
    with pytest.raises(RepositoryError, match="no Python files"):
        resolve_repository(root)


def test_resolve_directory_without_python(make_repo):
    root = make_repo({**FILES, "docs/index.md": "# docs\n"})
    with pytest.raises(RepositoryError, match="no Python files"):
        resolve_repository(root / "docs")


def test_resolve_inside_dot_git(make_repo):
    root = make_repo(FILES)
    with pytest.raises(RepositoryError, match=r"\.git"):
        resolve_repository(root / ".git" / "objects")


@pytest.mark.parametrize("rel, scope, scope_path", [
    (".", "project", "."),
    ("pkg", "directory", "pkg"),
    ("pkg/core.py", "file", "pkg/core.py"),
])
def test_resolve_auto_scope(make_repo, rel, scope, scope_path):
    root = make_repo(FILES)
    target = resolve_repository(root / rel)
    assert target.root == root.resolve()
    assert (target.scope, target.scope_path) == (scope, scope_path)
    assert target.head_commit == git(root, "rev-parse", "HEAD")
    assert target.head_branch == "main"


def test_resolve_explicit_scopes(make_repo):
    root = make_repo(FILES)
    assert resolve_repository(root / "pkg", "project").scope_path == "."
    assert resolve_repository(root / "pkg", "directory").scope == "directory"
    assert resolve_repository(str(root / "pkg" / "core.py"), "file").scope_path == "pkg/core.py"
    with pytest.raises(ConfigError, match="scope 'file'"):
        resolve_repository(root / "pkg", "file")
    with pytest.raises(ConfigError, match="scope 'directory'"):
        resolve_repository(root / "pkg" / "core.py", "directory")


def test_resolve_untracked_file_scope(make_repo):
    root = make_repo(FILES)
    (root / "pkg" / "new.py").write_text("y = 2\n")
    with pytest.raises(RepositoryError, match="not a Python file committed"):
        resolve_repository(root / "pkg" / "new.py")


def test_resolve_uses_committed_head_and_detached(make_repo):
    root = make_repo(FILES)
    first = git(root, "rev-parse", "HEAD")
    (root / "pkg" / "core.py").write_text("# uncommitted\n")
    target = resolve_repository(root)
    assert target.head_commit == first
    assert uncommitted_changes(root) == [" M pkg/core.py"]
    git(root, "stash", "-q")
    git(root, "checkout", "-q", "--detach")
    detached = resolve_repository(root)
    assert detached.head_branch is None and detached.head_commit == first


def test_resolve_target_task_fn(make_repo):
    root = make_repo(FILES)
    assert resolve_target.fn(str(root), "auto").scope == "project"


# --- the user's checkout ----------------------------------------------------------------


def test_snapshot_and_verify(make_repo):
    root = make_repo(FILES)
    git(root, "tag", "v1")
    (root / "pkg" / "core.py").write_text("# dirty\n")
    (root / "notes.txt").write_text("untracked\n")
    before = snapshot_checkout(root)
    assert before.head == "refs/heads/main"
    assert set(before.refs) == {"refs/heads/main", "refs/tags/v1"}
    assert " M pkg/core.py\0" in before.status_porcelain
    assert "?? notes.txt\0" in before.status_porcelain
    git(root, "branch", "mendflow/m-abc")  # mendflow's own branches are not the user's
    verify_checkout(root, before)

    (root / "other.txt").write_text("new\n")
    with pytest.raises(CheckoutChanged, match="other.txt"):
        verify_checkout(root, before)
    (root / "other.txt").unlink()
    git(root, "branch", "feature")
    with pytest.raises(CheckoutChanged, match="refs/heads/feature"):
        verify_checkout(root, before)
    git(root, "branch", "-D", "feature")
    git(root, "checkout", "-q", "--detach")
    with pytest.raises(CheckoutChanged, match="HEAD moved"):
        verify_checkout(root, before)


# --- commit_patch -----------------------------------------------------------------------


@pytest.fixture
def sandbox(make_repo):
    root = make_repo(FILES)
    return WorktreeSandbox().create(resolve_repository(root), "m-test-1", home())


def _apply(sandbox, changes, pid="p-1"):
    diff = git_diff(sandbox.path, changes)
    patch = make_patch(diff, tuple(changes), pid=pid, title=f"Fix {pid}")
    WorktreeSandbox().apply(sandbox, patch)
    return patch


def test_commit_patch_records_hashes_backups_and_trailers(sandbox, tmp_path):
    old = (sandbox.path / "pkg/core.py").read_bytes()
    removed = (sandbox.path / "pkg/__init__.py").read_bytes()
    patch = _apply(sandbox, {"pkg/core.py": "def add(a, b):\n    return b + a\n",
                             "pkg/extra.py": "X = 1\n", "pkg/__init__.py": None})
    backups = tmp_path / "backups"
    record = commit_patch(sandbox, patch, "accepted; gates 5/5 passed", backups)

    assert record.commit == git(sandbox.path, "rev-parse", "HEAD")
    assert git(sandbox.path, "rev-parse", "HEAD^") == sandbox.base_commit
    by_path = {entry.path: entry for entry in record.backups}
    core = by_path["pkg/core.py"]
    assert core.sha256_before == sha256(old)
    assert core.sha256_after == sha256(b"def add(a, b):\n    return b + a\n")
    assert Path(core.backup_path).read_bytes() == old
    assert Path(core.backup_path).is_relative_to(backups / "p-1")
    assert by_path["pkg/extra.py"].sha256_before is None
    assert by_path["pkg/extra.py"].backup_path is None
    assert by_path["pkg/__init__.py"].sha256_after is None
    assert by_path["pkg/__init__.py"].sha256_before == sha256(removed)
    assert all(entry.commit == record.commit for entry in record.backups)

    message = git(sandbox.path, "log", "-1", "--format=%B")
    assert message.splitlines()[0] == "Fix p-1"
    assert "Findings: f1, f2" in message and "Fixer: ruff" in message
    assert "accepted; gates 5/5 passed" in message
    trailers = git(sandbox.path, "log", "-1", "--format=%(trailers:only,unfold)")
    assert trailers.splitlines() == ["Mendflow-Patch: p-1", "Mendflow-Mission: m-test-1"]
    assert git(sandbox.path, "log", "-1", "--format=%an <%ae>") == \
        "Test Author <author@example.com>"
    changed = git(sandbox.path, "show", "--name-only", "--format=", "HEAD").splitlines()
    assert sorted(changed) == ["pkg/__init__.py", "pkg/core.py", "pkg/extra.py"]
    assert git(sandbox.path, "status", "--porcelain") == ""


def test_commit_patch_is_idempotent(sandbox, tmp_path):
    patch = _apply(sandbox, {"pkg/core.py": "A = 1\n"})
    first = commit_patch(sandbox, patch, "ok", tmp_path / "b")
    count = git(sandbox.path, "rev-list", "--count", "HEAD")
    second = commit_patch(sandbox, patch, "ok", tmp_path / "b")
    assert second == first
    assert git(sandbox.path, "rev-list", "--count", "HEAD") == count


def test_replay_after_a_rewind_reuses_the_commits_made_before(sandbox, tmp_path):
    """A resumed mission rewinds to the base; its replay moves back onto the old commits."""
    changes = [{"pkg/core.py": "A = 1\n"}, {"pkg/core.py": "A = 2\n", "pkg/new.py": "B = 1\n"}]
    before = [commit_patch(sandbox, _apply(sandbox, c, f"p-{i}"), "ok", tmp_path / "b",
                           "2026-01-01T00:00:00+00:00").commit for i, c in enumerate(changes)]
    rewind_worktree(sandbox, sandbox.base_commit)
    assert git(sandbox.path, "rev-parse", "HEAD") == sandbox.base_commit
    assert git(sandbox.path, "rev-parse", replay_ref("m-test-1")) == before[-1]

    # another date would give new shas if the commits were made again
    replayed = [commit_patch(sandbox, _apply(sandbox, c, f"p-{i}"), "ok", tmp_path / "b",
                             "2030-06-06T00:00:00+00:00") for i, c in enumerate(changes)]
    assert [r.commit for r in replayed] == before
    assert git(sandbox.path, "status", "--porcelain") == ""
    assert replayed[1].backups[0].sha256_before == sha256(b"A = 1\n")
    assert drop_replay_ref(sandbox) is True
    assert git(sandbox.path, "for-each-ref", "refs/mendflow/m-test-1/replay") == ""


def test_replay_that_diverges_makes_a_new_commit_and_keeps_the_old_ones(sandbox, tmp_path):
    old = commit_patch(sandbox, _apply(sandbox, {"pkg/core.py": "A = 1\n"}, "p-0"), "ok",
                       tmp_path / "b").commit
    rewind_worktree(sandbox, sandbox.base_commit)
    rewind_worktree(sandbox, sandbox.base_commit)  # a second interruption keeps the ref
    assert git(sandbox.path, "rev-parse", replay_ref("m-test-1")) == old
    # same patch id, other content: not the commit of before
    new = commit_patch(sandbox, _apply(sandbox, {"pkg/core.py": "A = 9\n"}, "p-0"), "ok",
                       tmp_path / "b").commit
    assert new != old
    assert drop_replay_ref(sandbox) is False  # the old commit stays reachable
    assert git(sandbox.path, "rev-parse", replay_ref("m-test-1")) == old
    rollback_mission(sandbox.repo_root, "m-test-1", worktree=sandbox.path)
    assert git(sandbox.path, "for-each-ref", "refs/mendflow/m-test-1/replay") == ""


def test_commit_patch_only_commits_the_patch_files(sandbox, tmp_path):
    patch = _apply(sandbox, {"pkg/core.py": "A = 1\n"})
    (sandbox.path / "scratch.txt").write_text("not part of the patch\n")
    record = commit_patch(sandbox, patch, "ok", tmp_path / "b")
    assert git(sandbox.path, "show", "--name-only", "--format=", record.commit) == "pkg/core.py"
    assert git(sandbox.path, "status", "--porcelain") == "?? scratch.txt"


def test_commit_patch_rejects_empty_and_escaping(sandbox, tmp_path):
    diff = git_diff(sandbox.path, {"pkg/core.py": "A = 1\n"})
    with pytest.raises(PatchRejected) as info:  # not applied: nothing changed
        commit_patch(sandbox, make_patch(diff, ("pkg/core.py",)), "ok", tmp_path / "b")
    assert info.value.reason == "empty"
    with pytest.raises(PatchRejected) as info:
        commit_patch(sandbox, make_patch(diff, ("../outside.py",)), "ok", tmp_path / "b")
    assert info.value.reason == "path-escape"


def test_commit_patch_falls_back_to_mendflow_identity(sandbox, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                 "GIT_COMMITTER_EMAIL", "GIT_CONFIG_GLOBAL", "EMAIL"):
        monkeypatch.delenv(name, raising=False)
    git(sandbox.repo_root, "config", "--unset", "user.name")
    git(sandbox.repo_root, "config", "--unset", "user.email")
    config_before = (sandbox.repo_root / ".git" / "config").read_bytes()
    patch = _apply(sandbox, {"pkg/core.py": "A = 2\n"})
    commit_patch(sandbox, patch, "ok", tmp_path / "b")
    assert git(sandbox.path, "log", "-1", "--format=%an <%ae>|%cn <%ce>") == \
        "mendflow <mendflow@localhost>|mendflow <mendflow@localhost>"
    assert (sandbox.repo_root / ".git" / "config").read_bytes() == config_before
    assert not (home / ".gitconfig").exists()


# --- rollback ---------------------------------------------------------------------------


def test_rollback_to_base_and_to_commit(sandbox, tmp_path):
    first = commit_patch(sandbox, _apply(sandbox, {"pkg/core.py": "A = 1\n"}, "p-1"), "ok",
                         tmp_path / "b")
    commit_patch(sandbox, _apply(sandbox, {"pkg/core.py": "A = 2\n"}, "p-2"), "ok",
                 tmp_path / "b")
    tip = rollback_mission(sandbox.repo_root, "m-test-1", to=first.commit, worktree=sandbox.path)
    assert tip == first.commit
    assert git(sandbox.repo_root, "rev-parse", "mendflow/m-test-1") == first.commit
    assert (sandbox.path / "pkg/core.py").read_text() == "A = 1\n"  # the worktree followed
    assert git(sandbox.path, "status", "--porcelain") == ""

    tip = rollback_mission(sandbox.repo_root, "m-test-1")
    assert tip == sandbox.base_commit
    assert (sandbox.path / "pkg/core.py").read_bytes() == \
        (sandbox.repo_root / "pkg/core.py").read_bytes()


def test_rollback_rejects_non_ancestor_and_unknown(sandbox, tmp_path):
    commit_patch(sandbox, _apply(sandbox, {"pkg/core.py": "A = 1\n"}), "ok", tmp_path / "b")
    root = sandbox.repo_root
    (root / "side.py").write_text("s = 1\n")
    git(root, "add", "side.py")
    git(root, "commit", "-q", "-m", "side")
    with pytest.raises(ConfigError, match="not an ancestor"):
        rollback_mission(root, "m-test-1", to=git(root, "rev-parse", "HEAD"))
    with pytest.raises(ConfigError, match="not a commit"):
        rollback_mission(root, "m-test-1", to="no-such-ref")
    with pytest.raises(RepositoryError, match="no mission branch") as info:
        rollback_mission(root, "m-unknown-9")
    assert "mendflow mission list" in info.value.hint
    with pytest.raises(ConfigError, match="invalid mission id"):
        rollback_mission(root, "../etc")


def test_rollback_without_worktree_moves_the_ref(sandbox, tmp_path):
    commit_patch(sandbox, _apply(sandbox, {"pkg/core.py": "A = 1\n"}), "ok", tmp_path / "b")
    WorktreeSandbox().remove(sandbox)
    tip = rollback_mission(sandbox.repo_root, "m-test-1", worktree=sandbox.path)
    assert tip == sandbox.base_commit == git(sandbox.repo_root, "rev-parse", "mendflow/m-test-1")


def test_user_checkout_untouched_by_everything(make_repo, tmp_path):
    """Sandbox, apply, commit, reset, hash, rollback, remove: the user's checkout never moves."""
    root = make_repo(FILES)
    git(root, "tag", "v0")
    (root / "pkg" / "core.py").write_text("# my uncommitted work\n")
    (root / "tests" / "test_core.py").write_text("# staged work\n")
    git(root, "add", "tests/test_core.py")
    (root / "scratch").mkdir()
    (root / "scratch" / "notes.py").write_text("untracked = True\n")
    status = git(root, "status", "--porcelain")
    index = (root / ".git" / "index").read_bytes()
    before = snapshot_checkout(root)

    backend = WorktreeSandbox()
    box = backend.create(resolve_repository(root), "m-user-1", home())
    assert (box.path / "pkg/core.py").read_text() != "# my uncommitted work\n"
    patch = _apply(box, {"pkg/core.py": "def add(a, b):\n    return a + b\n",
                         "pkg/new.py": "N = 1\n"})
    backend.tree_hash(box)
    commit_patch(box, patch, "ok", tmp_path / "b")
    rejected = _apply(box, {"pkg/other.py": "O = 1\n"}, pid="p-2")
    backend.reset(box, rejected)
    rollback_mission(root, "m-user-1")
    backend.remove(box)

    verify_checkout(root, before)
    assert git(root, "status", "--porcelain") == status
    assert (root / ".git" / "index").read_bytes() == index
    assert (root / "pkg" / "core.py").read_text() == "# my uncommitted work\n"
    assert git(root, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert os.listdir(root / "scratch") == ["notes.py"]
