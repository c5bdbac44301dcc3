"""A worker's clone cache: clone, fetch on reuse, push back (never forced), typed errors."""

from __future__ import annotations

import pytest

from mendflow.core.errors import CloneError
from mendflow.infra.clones import clone_path, push_branch, sync_clone
from tests.helpers.git import git, write_files


@pytest.fixture
def remote(tmp_path):
    """A bare repository (the remote) with one commit on main, and a checkout to push from."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    work = tmp_path / "author"
    git(tmp_path, "clone", "-q", str(bare), str(work))
    write_files(work, {"pkg/__init__.py": "X = 1\n"})
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "one")
    git(work, "push", "-q", "origin", "HEAD:main")
    return bare, work


def test_clone_then_fetch_on_reuse(tmp_path, remote):
    bare, work = remote
    root = tmp_path / "state"
    clone = sync_clone(bare.as_uri(), "main", root)
    assert clone == clone_path(bare.as_uri(), root) and clone.is_relative_to(root / "clones")
    assert (clone / "pkg/__init__.py").read_text() == "X = 1\n"
    (clone / "junk.txt").write_text("left by a crashed mission")
    write_files(work, {"pkg/__init__.py": "X = 2\n"})
    git(work, "commit", "-qam", "two")
    git(work, "push", "-q", "origin", "HEAD:main")
    again = sync_clone(bare.as_uri(), "main", root)
    assert again == clone
    assert (clone / "pkg/__init__.py").read_text() == "X = 2\n"
    assert not (clone / "junk.txt").exists()
    assert git(clone, "rev-parse", "HEAD") == git(work, "rev-parse", "HEAD")


def test_a_path_and_its_file_url_share_one_clone(tmp_path, remote):
    bare, _ = remote
    assert sync_clone(str(bare), "main", tmp_path / "s") == sync_clone(bare.as_uri(), "main",
                                                                       tmp_path / "s")


def test_push_is_never_forced(tmp_path, remote):
    bare, _ = remote
    clone = sync_clone(bare.as_uri(), "main", tmp_path / "state")
    git(clone, "checkout", "-q", "-b", "mendflow/m-1")
    write_files(clone, {"new.py": "Y = 1\n"})
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "fix")
    tip = push_branch(clone, "mendflow/m-1")
    assert git(bare, "rev-parse", "refs/heads/mendflow/m-1") == tip
    git(clone, "reset", "-q", "--hard", "HEAD~1")
    write_files(clone, {"other.py": "Z = 1\n"})
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "another history")
    with pytest.raises(CloneError, match="rejected|non-fast-forward|fetch first"):
        push_branch(clone, "mendflow/m-1")
    assert git(bare, "rev-parse", "refs/heads/mendflow/m-1") == tip  # the remote kept its commits


@pytest.mark.parametrize("url", ["file:///nonexistent/repo.git", "/nonexistent/path",
                                 "https://127.0.0.1:9/nothing.git"])
def test_unclonable_url_is_a_clone_error(tmp_path, url):
    with pytest.raises(CloneError) as caught:
        sync_clone(url, "main", tmp_path / "state")
    assert "git" in str(caught.value) and "ls-remote" in caught.value.hint


def test_missing_branch_is_a_clone_error(tmp_path, remote):
    bare, _ = remote
    with pytest.raises(CloneError, match="nope"):
        sync_clone(bare.as_uri(), "nope", tmp_path / "state")
