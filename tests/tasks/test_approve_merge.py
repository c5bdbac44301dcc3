"""Delivery of approved commits to the target branch: real git repositories, no Prefect."""

from __future__ import annotations

from pathlib import Path

import pytest

from mendflow.core.errors import DeliveryError
from mendflow.tasks.approve.build import ApprovedCommit, add_trailers, changed_lines, delivered_patches
from mendflow.tasks.approve.merge import deliver, resolve_target_branch
from tests.helpers.git import git

LIB = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


def mission_commit(repo: Path, branch: str, patch_id: str, files: dict[str, str]) -> str:
    """Commit ``files`` on ``branch`` (through a temporary worktree) the way mendflow does."""
    work = repo.parent / f"wt-{patch_id}"
    git(repo, "worktree", "add", "-q", str(work), branch)
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", f"Fix {patch_id}\n\nFixer: ruff\n\n"
        f"Mendflow-Patch: {patch_id}\nMendflow-Mission: m-test")
    sha = git(work, "rev-parse", "HEAD")
    git(repo, "worktree", "remove", "--force", str(work))
    return sha


@pytest.fixture
def mission(make_repo):
    """A repository on main with a mission branch of two independent commits (p1, p2)."""
    repo = make_repo({"pkg/__init__.py": "", "pkg/a.py": LIB, "pkg/b.py": LIB, "README": "x\n"})
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "branch", "mendflow/m-test")
    c1 = mission_commit(repo, "mendflow/m-test", "p1", {"pkg/a.py": LIB.replace("a + b", "b + a")})
    c2 = mission_commit(repo, "mendflow/m-test", "p2", {"pkg/b.py": LIB.replace("a - b", "-b + a")})
    git(repo, "branch", "feature", base)  # another branch of the user's: never touched
    return repo, base, [ApprovedCommit(patch_id="p1", mission_commit=c1),
                        ApprovedCommit(patch_id="p2", mission_commit=c2)]


def run_deliver(repo, base, commits, tmp_path, **kw):
    kw.setdefault("approver", "Ada")
    kw.setdefault("comment", "ship it")
    return deliver(repo, "m-test", base, commits, kw.pop("target", "main"),
                   work_parent=tmp_path / "state" / "delivery", **kw)


def refs(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ") for line in out.splitlines())


def test_fast_forward_updates_clean_checked_out_target(mission, tmp_path):
    repo, base, commits = mission
    before = refs(repo)

    delivery = run_deliver(repo, base, commits, tmp_path)

    assert delivery.mode == "fast-forward" and delivery.old_tip == base
    assert git(repo, "rev-parse", "main") == delivery.new_tip
    log = git(repo, "log", "--format=%s", f"{base}..main").splitlines()
    assert log == ["Fix p2", "Fix p1"]
    body = git(repo, "log", "-1", "--format=%B", "main")
    assert "Approved-by: Ada" in body and "Approval-comment: ship it" in body
    assert "Mendflow-Patch: p2" in body
    assert git(repo, "log", "-1", "--format=%an", "main") == "Test Author"
    # the clean checkout of main was fast-forwarded: files and index follow the branch
    assert (repo / "pkg/a.py").read_text() == LIB.replace("a + b", "b + a")
    assert git(repo, "status", "--porcelain") == ""
    after = refs(repo)
    assert {k: v for k, v in after.items() if k != "refs/heads/main"} == \
        {k: v for k, v in before.items() if k != "refs/heads/main"}
    assert [c.patch_id for c in delivery.commits] == ["p1", "p2"]
    assert not list((tmp_path / "state" / "delivery").iterdir())  # temporary worktree removed
    assert len(git(repo, "worktree", "list").splitlines()) == 1


def test_diverged_target_gets_a_merge_that_keeps_its_history(mission, tmp_path):
    repo, base, commits = mission
    git(repo, "checkout", "-q", "feature")  # main is no longer checked out: update-ref path
    git(repo, "branch", "-f", "main", base)
    other = repo.parent / "wt-user"
    git(repo, "worktree", "add", "-q", str(other), "main")
    (other / "README").write_text("the user's own change\n")
    git(other, "commit", "-qam", "user work")
    user_tip = git(repo, "rev-parse", "main")
    git(repo, "worktree", "remove", str(other))

    delivery = run_deliver(repo, base, commits, tmp_path)

    assert delivery.mode == "merge" and delivery.checkout is None
    parents = git(repo, "log", "-1", "--format=%P", "main").split()
    assert parents[0] == user_tip and parents[1] == delivery.commits[-1].commit
    assert git(repo, "show", "main:README") == "the user's own change"
    assert "b + a" in git(repo, "show", "main:pkg/a.py")
    assert git(repo, "rev-parse", "feature") == base
    assert "mendflow: deliver mission m-test" in git(repo, "reflog", "-1", "main")


def test_partial_approval_delivers_only_the_approved_commit(mission, tmp_path):
    repo, base, commits = mission

    delivery = run_deliver(repo, base, commits[1:], tmp_path)

    assert git(repo, "log", "--format=%s", f"{base}..main").splitlines() == ["Fix p2"]
    assert git(repo, "show", "main:pkg/a.py") == LIB.rstrip("\n")
    assert delivered_patches(repo, delivery.new_tip, base, "m-test") == \
        {"p2": delivery.new_tip}


def test_conflict_leaves_target_untouched(mission, tmp_path):
    repo, base, commits = mission
    (repo / "pkg/a.py").write_text(LIB.replace("a + b", "a + b + 0"))
    git(repo, "commit", "-qam", "conflicting user change")
    tip = git(repo, "rev-parse", "main")
    status = git(repo, "status", "--porcelain")

    with pytest.raises(DeliveryError) as caught:
        run_deliver(repo, base, commits, tmp_path)

    assert caught.value.reason == "conflict" and "pkg/a.py" in caught.value.message
    assert git(repo, "rev-parse", "main") == tip
    assert git(repo, "status", "--porcelain") == status
    assert len(git(repo, "worktree", "list").splitlines()) == 1


def test_dirty_checked_out_target_is_refused(mission, tmp_path):
    repo, base, commits = mission
    (repo / "README").write_text("uncommitted work\n")
    before = refs(repo)

    with pytest.raises(DeliveryError) as caught:
        run_deliver(repo, base, commits, tmp_path)

    assert caught.value.reason == "dirty-checkout"
    assert "uncommitted" in str(caught.value) and str(repo) in str(caught.value)
    assert refs(repo) == before
    assert (repo / "README").read_text() == "uncommitted work\n"


def test_dependent_patch_without_its_base_is_a_conflict(make_repo, tmp_path):
    repo = make_repo({"a.py": LIB})
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "branch", "mendflow/m-test")
    mission_commit(repo, "mendflow/m-test", "p1", {"a.py": LIB.replace("a + b", "b + a")})
    c2 = mission_commit(repo, "mendflow/m-test", "p2", {"a.py": LIB.replace("a + b", "(b + a)")})

    with pytest.raises(DeliveryError) as caught:
        run_deliver(repo, base, [ApprovedCommit(patch_id="p2", mission_commit=c2)], tmp_path)

    assert caught.value.reason == "conflict" and "p2" in caught.value.message
    assert git(repo, "rev-parse", "main") == base


def test_push_to_remote_and_idempotent_redelivery(mission, tmp_path):
    repo, base, commits = mission
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")

    first = run_deliver(repo, base, commits, tmp_path, push_remote="origin")
    again = run_deliver(repo, base, commits, tmp_path, push_remote="origin")

    assert first.pushed_to == "origin" and first.push_error is None
    assert git(remote, "rev-parse", "main") == first.new_tip
    assert again.mode == "already-delivered" and again.new_tip == first.new_tip
    assert [c.commit for c in again.commits] == [c.commit for c in first.commits]


def test_failed_push_is_reported_and_local_delivery_stands(mission, tmp_path):
    repo, base, commits = mission

    delivery = run_deliver(repo, base, commits, tmp_path, push_remote="nowhere")

    assert delivery.pushed_to is None and "nowhere" in (delivery.push_error or "")
    assert git(repo, "rev-parse", "main") == delivery.new_tip


def test_target_other_than_the_mission_start_gets_only_approved_commits(mission, tmp_path):
    repo, base, _ = mission
    git(repo, "branch", "old", base)  # the target: a branch that lacks the mission's base
    git(repo, "checkout", "-q", "feature")
    (repo / "extra.txt").write_text("x\n")
    git(repo, "add", "extra.txt")
    git(repo, "commit", "-qm", "feature work")  # a mission started here, on feature
    feature_base = git(repo, "rev-parse", "feature")
    git(repo, "branch", "mendflow/m-2", feature_base)
    c = mission_commit(repo, "mendflow/m-2", "p9", {"pkg/a.py": LIB.replace("a + b", "b + a")})

    delivery = deliver(repo, "m-2", feature_base, [ApprovedCommit(patch_id="p9", mission_commit=c)],
                       "old", approver="Ada", comment="", work_parent=tmp_path / "d")

    assert git(repo, "log", "--format=%s", f"{base}..old").splitlines() == ["Fix p9"]
    assert "extra.txt" not in git(repo, "ls-tree", "--name-only", "old")
    assert "Approval-comment" not in git(repo, "log", "-1", "--format=%B", "old")
    assert delivery.mode == "fast-forward"


def test_resolve_target_branch(mission):
    repo, base, _ = mission
    assert resolve_target_branch(repo, None, "main") == "main"
    assert resolve_target_branch(repo, "refs/heads/feature", "main") == "feature"
    for configured, head, reason in ((None, None, "detached"), ("nope", "main", "does not exist"),
                                     ("mendflow/m-test", "main", "cannot be"),
                                     ("bad..name", "main", "cannot be")):
        with pytest.raises(DeliveryError, match=reason) as caught:
            resolve_target_branch(repo, configured, head)
        assert caught.value.reason == "no-target"


def test_add_trailers_and_changed_lines(mission):
    repo, _, commits = mission
    message = "Title\n\nBody\n\nMendflow-Patch: p1\nMendflow-Mission: m\n"
    assert add_trailers(message, [("Approved-by", "Ada  L."), ("Approval-comment", "")]) == \
        "Title\n\nBody\n\nMendflow-Patch: p1\nMendflow-Mission: m\nApproved-by: Ada L.\n"
    assert add_trailers("Title only\n", [("Approved-by", "x")]) == \
        "Title only\n\nApproved-by: x\n"
    assert changed_lines(repo, commits[0].mission_commit) == 2
