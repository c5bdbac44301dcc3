"""Tests of tasks.sandbox: real worktrees of real tmp repositories, real git apply."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from prefect.states import Failed

from mendflow.core.errors import ConfigError, PatchRejected, SandboxError, ValidationUnavailable
from mendflow.infra.gitops import list_worktrees, retry_on_sandbox_error
from mendflow.infra.layout import StateLayout
from mendflow.tasks.sandbox import (
    CopySandbox,
    SandboxBackend,
    WorktreeSandbox,
    apply_patch,
    create_sandbox,
    hash_tree,
    patch_paths,
    remove_sandbox,
    reset_sandbox,
)
from mendflow.tasks.vcs import resolve_repository
from tests.helpers.git import git
from tests.helpers.sandbox import FILES, git_diff, make_patch

MISSION = "m-sandbox-1"

home = StateLayout.resolve  # the $MENDFLOW_HOME layout (isolated per test by conftest)


@pytest.fixture
def repo(make_repo):
    return make_repo(FILES)


@pytest.fixture
def box(repo):
    return WorktreeSandbox().create(resolve_repository(repo), MISSION, home())


def _rejected(box, diff, files=("x",)) -> PatchRejected:
    with pytest.raises(PatchRejected) as info:
        WorktreeSandbox().apply(box, make_patch(diff, tuple(files)))
    return info.value


# --- create / remove --------------------------------------------------------------------


def test_create_makes_a_worktree_on_the_mission_branch(repo, box):
    assert box.path == home().worktree(MISSION)
    assert not box.path.is_relative_to(repo)
    assert box.branch == f"mendflow/{MISSION}"
    assert box.base_commit == git(repo, "rev-parse", "HEAD")
    assert git(box.path, "symbolic-ref", "HEAD") == f"refs/heads/mendflow/{MISSION}"
    assert git(repo, "rev-parse", f"refs/mendflow/{MISSION}/base") == box.base_commit
    assert (box.path / "pkg/core.py").read_bytes() == (repo / "pkg/core.py").read_bytes()


def test_create_is_idempotent_and_reattaches(repo, box):
    (box.path / "marker.txt").write_text("still here\n")
    again = WorktreeSandbox().create(resolve_repository(repo), MISSION, home())
    assert again == box
    assert (box.path / "marker.txt").read_text() == "still here\n"  # re-used, not re-made
    shutil.rmtree(box.path)  # the worktree directory vanished (pruned by hand)
    third = WorktreeSandbox().create(resolve_repository(repo), MISSION, home())
    assert third == box and (box.path / "pkg/core.py").is_file()
    holders = [e for e in list_worktrees(repo) if e.get("branch", "").endswith(MISSION)]
    assert len(holders) == 1


def test_create_keeps_recorded_base_when_head_moves(repo, box):
    (repo / "more.py").write_text("m = 1\n")
    git(repo, "add", "more.py")
    git(repo, "commit", "-q", "-m", "more")
    again = WorktreeSandbox().create(resolve_repository(repo), MISSION, home())
    assert again.base_commit == box.base_commit != git(repo, "rev-parse", "HEAD")


def test_create_rejects_bad_ids_and_taken_directories(repo):
    target = resolve_repository(repo)
    with pytest.raises(ConfigError, match="invalid mission id"):
        WorktreeSandbox().create(target, "../Escape", home())
    taken = home().worktree("m-taken-1")
    taken.mkdir(parents=True)
    (taken / "file.txt").write_text("someone else's\n")
    with pytest.raises(SandboxError, match="exists"):
        WorktreeSandbox().create(target, "m-taken-1", home())
    assert (taken / "file.txt").read_text() == "someone else's\n"


def test_create_refuses_branch_checked_out_elsewhere(repo, box, tmp_path):
    WorktreeSandbox().remove(box)
    git(repo, "worktree", "add", "-q", str(tmp_path / "elsewhere"), box.branch)
    with pytest.raises(SandboxError, match="already checked out") as info:
        WorktreeSandbox().create(resolve_repository(repo), MISSION, home())
    assert "git worktree remove" in info.value.hint


def test_remove_keeps_the_branch(repo, box):
    WorktreeSandbox().remove(box)
    assert not box.path.exists()
    assert git(repo, "rev-parse", box.branch) == box.base_commit
    assert all(Path(e["worktree"]) != box.path for e in list_worktrees(repo))


# --- apply ------------------------------------------------------------------------------


def test_apply_good_patch(box):
    diff = git_diff(box.path, {"pkg/core.py": "def add(a, b):\n    return a + b\n",
                               "pkg/sub/new.py": "N = 1\n"})
    WorktreeSandbox().apply(box, make_patch(diff, ("pkg/core.py", "pkg/sub/new.py")))
    assert (box.path / "pkg/core.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert (box.path / "pkg/sub/new.py").read_text() == "N = 1\n"
    assert git(box.path, "diff", "--cached", "--name-only") == ""  # the index is untouched


def test_apply_rejects_dotdot_path(box):
    diff = ("diff --git a/../evil.py b/../evil.py\nnew file mode 100644\n--- /dev/null\n"
            "+++ b/../evil.py\n@@ -0,0 +1 @@\n+print('owned')\n")
    error = _rejected(box, diff)
    assert error.reason == "path-escape" and "'..'" in error.message
    assert not (box.path.parent / "evil.py").exists()


def test_apply_rejects_absolute_path(box, tmp_path):
    target = tmp_path / "abs" / "evil.py"
    diff = f"--- /dev/null\n+++ {target}\n@@ -0,0 +1 @@\n+print('owned')\n"
    error = _rejected(box, diff)
    assert error.reason == "path-escape" and "absolute" in error.message
    assert not target.exists()


def test_apply_rejects_dot_git(box):
    diff = ("diff --git a/.git/hooks/pre-commit b/.git/hooks/pre-commit\nnew file mode 100755\n"
            "--- /dev/null\n+++ b/.git/hooks/pre-commit\n@@ -0,0 +1 @@\n+echo owned\n")
    assert _rejected(box, diff).reason == "path-escape"


def test_apply_rejects_write_through_symlink(make_repo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = make_repo(FILES, name="linked")
    (root / "link").symlink_to(outside, target_is_directory=True)
    git(root, "add", "link")
    git(root, "commit", "-q", "-m", "a symlink")
    box = WorktreeSandbox().create(resolve_repository(root), "m-link-1", home())
    diff = ("diff --git a/link/evil.py b/link/evil.py\nnew file mode 100644\n--- /dev/null\n"
            "+++ b/link/evil.py\n@@ -0,0 +1 @@\n+print('owned')\n")
    error = _rejected(box, diff)
    assert error.reason == "path-escape" and "symbolic link" in error.message
    assert list(outside.iterdir()) == []


def test_apply_rejects_new_symlink(box):
    diff = ("diff --git a/pkg/link b/pkg/link\nnew file mode 120000\nindex 0000000..1111111\n"
            "--- /dev/null\n+++ b/pkg/link\n@@ -0,0 +1 @@\n+/etc\n\\ No newline at end of file\n")
    assert _rejected(box, diff).reason == "path-escape"
    assert not (box.path / "pkg/link").exists()


def test_apply_rejects_binary_patches(box):
    diff = git_diff(box.path, {"pkg/data.bin": b"\x00\x01\x02binary\xff"}, binary=True)
    assert "GIT binary patch" in diff
    assert _rejected(box, diff).reason == "binary"
    plain = git_diff(box.path, {"pkg/data.bin": b"\x00\x01\x02binary\xff"})
    assert "Binary files" in plain
    assert _rejected(box, plain).reason == "binary"
    assert not (box.path / "pkg/data.bin").exists()


def test_apply_rejects_patch_that_does_not_apply_all_or_nothing(box):
    good = git_diff(box.path, {"pkg/core.py": "CHANGED = 1\n"})
    stale = ("diff --git a/tests/test_core.py b/tests/test_core.py\n"
             "--- a/tests/test_core.py\n+++ b/tests/test_core.py\n@@ -1,2 +1,2 @@\n"
             "-this line is not there\n+replacement\n \n")
    before = WorktreeSandbox().tree_hash(box)
    error = _rejected(box, good + stale, files=("pkg/core.py", "tests/test_core.py"))
    assert error.reason == "apply-failed" and "does not apply" in error.message
    assert WorktreeSandbox().tree_hash(box) == before  # the good half was not applied either


def test_apply_rejects_garbage(box):
    assert _rejected(box, "this is not a diff\n").reason == "apply-failed"


# --- reset and tree_hash ----------------------------------------------------------------


def test_reset_removes_added_files_and_keeps_ignored(box):
    (box.path / "pkg.egg-info").mkdir()
    (box.path / "pkg.egg-info" / "PKG-INFO").write_text("Name: pkg\n")
    (box.path / "local_notes.txt").write_text("untracked, not from the patch\n")
    changes = {"pkg/core.py": "X = 1\n", "pkg/deep/new.py": "N = 1\n", "pkg/__init__.py": None}
    patch = make_patch(git_diff(box.path, changes), tuple(changes))
    assert patch_paths(patch) == ["pkg/__init__.py", "pkg/core.py", "pkg/deep/new.py"]
    WorktreeSandbox().apply(box, patch)
    WorktreeSandbox().reset(box, patch)
    assert not (box.path / "pkg/deep").exists()
    assert (box.path / "pkg/__init__.py").exists()
    assert (box.path / "pkg/core.py").read_bytes() == (box.repo_root / "pkg/core.py").read_bytes()
    assert (box.path / "pkg.egg-info" / "PKG-INFO").exists()  # never git clean -x
    assert (box.path / "local_notes.txt").exists()
    assert git(box.path, "status", "--porcelain") == "?? local_notes.txt"


def test_tree_hash_follows_content_and_leaves_indexes_alone(repo, box):
    user_index = (repo / ".git" / "index").read_bytes()
    sandbox_index_path = Path(git(box.path, "rev-parse", "--absolute-git-dir")) / "index"
    sandbox_index = sandbox_index_path.read_bytes()
    clean = WorktreeSandbox().tree_hash(box)
    assert clean == git(box.path, "rev-parse", "HEAD^{tree}")
    (box.path / "pkg/core.py").write_text("changed\n")
    changed = WorktreeSandbox().tree_hash(box)
    assert changed != clean
    (box.path / "pkg/untracked.py").write_text("u = 1\n")
    with_untracked = WorktreeSandbox().tree_hash(box)
    assert with_untracked not in (clean, changed)
    (box.path / "build").mkdir()
    (box.path / "build" / "ignored.py").write_text("ignored\n")
    assert WorktreeSandbox().tree_hash(box) == with_untracked  # .gitignore respected
    (box.path / "pkg" / "__pycache__").mkdir()
    (box.path / "pkg" / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"\x00pyc")
    (box.path / ".coverage").write_bytes(b"sqlite")
    (box.path / ".pytest_cache").mkdir()
    (box.path / ".pytest_cache" / "README.md").write_text("cache\n")
    assert WorktreeSandbox().tree_hash(box) == with_untracked  # tool artefacts do not count
    (box.path / "pkg/untracked.py").unlink()
    assert WorktreeSandbox().tree_hash(box) == changed  # equal content, equal hash
    WorktreeSandbox().reset(box)
    assert WorktreeSandbox().tree_hash(box) == clean
    assert (repo / ".git" / "index").read_bytes() == user_index
    assert git(box.path, "diff", "--cached", "--name-only") == ""
    assert sandbox_index_path.exists() and sandbox_index != b""


# --- the protocol and its second implementation -----------------------------------------


@pytest.mark.parametrize("backend", [WorktreeSandbox(), CopySandbox()], ids=["worktree", "copy"])
def test_backends_share_the_protocol(repo, backend):
    assert isinstance(backend, SandboxBackend)
    target = resolve_repository(repo)
    box = backend.create(target, "m-proto-1", home())
    assert backend.create(target, "m-proto-1", home()) == box
    assert box.base_commit == target.head_commit
    clean = backend.tree_hash(box)
    patch = make_patch(git_diff(box.path, {"pkg/new.py": "N = 1\n"}), ("pkg/new.py",))
    backend.apply(box, patch)
    assert (box.path / "pkg/new.py").read_text() == "N = 1\n"
    assert backend.tree_hash(box) != clean
    backend.reset(box, patch)
    assert backend.tree_hash(box) == clean and not (box.path / "pkg/new.py").exists()
    backend.remove(box)
    assert not box.path.exists()
    assert git(repo, "status", "--porcelain") == ""


# --- Prefect wrappers -------------------------------------------------------------------


def test_task_wrappers_fn(repo):
    box = create_sandbox.fn(resolve_repository(repo), "m-task-1", home())
    clean = hash_tree.fn(box)
    patch = make_patch(git_diff(box.path, {"pkg/core.py": "Y = 1\n"}), ("pkg/core.py",))
    apply_patch.fn(box, patch)
    assert hash_tree.fn(box) != clean
    reset_sandbox.fn(box, patch)
    assert hash_tree.fn(box) == clean
    remove_sandbox.fn(box)
    assert not box.path.exists()


def test_retry_condition_retries_only_git_failures():
    assert retry_on_sandbox_error(None, None, Failed(data=SandboxError("index.lock busy")))
    assert not retry_on_sandbox_error(None, None, Failed(data=PatchRejected("x", reason="binary")))
    assert not retry_on_sandbox_error(None, None, Failed(data=ValidationUnavailable("x")))


def test_git_failure_becomes_sandbox_error(box):
    os.remove(box.path / ".git")  # the worktree no longer knows its repository
    with pytest.raises(SandboxError, match="git"):
        WorktreeSandbox().tree_hash(box)


@pytest.mark.slow
def test_tasks_run_in_a_real_flow(prefect_harness, repo, tmp_path):
    """The Prefect tasks, run for real: contracts go in and out, the checkout stays put."""
    from prefect import flow

    from mendflow.tasks.vcs import (
        commit_accepted_patch,
        resolve_target,
        snapshot_user_checkout,
        verify_user_checkout,
    )

    diff = git_diff(repo, {"pkg/core.py": "Z = 1\n"})

    @flow
    def mini_mission() -> tuple[str, str, str]:
        target = resolve_target(str(repo / "pkg"))
        before = snapshot_user_checkout(target.root)
        box = create_sandbox(target, "m-flow-1", home())
        clean = hash_tree(box)
        patch = make_patch(diff, ("pkg/core.py",))
        apply_patch(box, patch)
        record = commit_accepted_patch(box, patch, "accepted", tmp_path / "backups")
        verify_user_checkout(target.root, before)
        return clean, hash_tree(box), record.commit

    clean, after, commit = mini_mission()
    assert clean != after == git(repo, "rev-parse", f"{commit}^{{tree}}")
    assert git(repo, "rev-parse", "mendflow/m-flow-1") == commit
    with pytest.raises(PatchRejected):
        mini_mission.with_options(name="again")()  # the same patch no longer applies
