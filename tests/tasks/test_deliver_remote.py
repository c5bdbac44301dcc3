"""Push, sync and revert against a local bare remote; PR grouping, duplicates and limits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mendflow.core.errors import DeliveryError
from mendflow.core.models import Finding, MissionResult, PatchOutcome, QualityScore
from mendflow.tasks.deliver.forge import PullInfo, body_marker
from mendflow.tasks.deliver.pulls import capacity, plan_pulls, split_duplicates, stale_pulls
from mendflow.tasks.deliver.remote import build_revert, push_branch, sync_target
from tests.helpers.git import git, write_files


@pytest.fixture
def remote_pair(make_repo, tmp_path) -> tuple[Path, Path]:
    seed = make_repo({"a.py": "x = 1\n"}, name="seed")
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(bare), str(work))
    return bare, work


def _commit(repo: Path, name: str, text: str) -> str:
    write_files(repo, {name: text})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"edit {name}")
    return git(repo, "rev-parse", "HEAD")


def test_push_is_never_forced(remote_pair):
    bare, work = remote_pair
    first = _commit(work, "b.py", "y = 1\n")
    push_branch(work, "origin", first, "mendflow/evolve-x")
    push_branch(work, "origin", first, "mendflow/evolve-x")  # idempotent
    git(work, "reset", "-q", "--hard", "HEAD~1")
    other = _commit(work, "c.py", "z = 1\n")
    with pytest.raises(DeliveryError) as caught:
        push_branch(work, "origin", other, "mendflow/evolve-x")
    assert caught.value.reason == "push-rejected"
    assert git(bare, "rev-parse", "mendflow/evolve-x") == first


def test_protected_branch_and_vanished_remote_are_typed(remote_pair, tmp_path):
    bare, work = remote_pair
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'GH006: Protected branch update failed' >&2\nexit 1\n")
    hook.chmod(0o755)
    sha = _commit(work, "b.py", "y = 1\n")
    with pytest.raises(DeliveryError) as caught:
        push_branch(work, "origin", sha, "mendflow/evolve-y")
    assert caught.value.reason == "protected"
    hook.unlink()
    bare.rename(tmp_path / "moved.git")
    with pytest.raises(DeliveryError) as gone:
        push_branch(work, "origin", sha, "mendflow/evolve-y")
    assert gone.value.reason == "remote-gone"


def test_sync_fast_forwards_and_refuses_a_diverged_target(remote_pair, tmp_path):
    bare, work = remote_pair
    human = tmp_path / "human"
    git(tmp_path, "clone", "-q", str(bare), str(human))
    theirs = _commit(human, "h.py", "h = 1\n")
    git(human, "push", "-q", "origin", "main")
    assert sync_target(work, "origin", "main") == theirs
    assert git(work, "rev-parse", "HEAD") == theirs and (work / "h.py").exists()
    _commit(human, "h2.py", "h = 2\n")
    git(human, "push", "-q", "origin", "main")
    mine = _commit(work, "mine.py", "m = 1\n")
    with pytest.raises(DeliveryError) as caught:
        sync_target(work, "origin", "main")
    assert caught.value.reason == "diverged"
    assert git(work, "rev-parse", "main") == mine  # nothing changed


def test_revert_commit_is_built_without_moving_a_ref(remote_pair, tmp_path):
    _, work = remote_pair
    culprit = _commit(work, "a.py", "x = 2\n")
    tip = _commit(work, "d.py", "d = 1\n")
    revert = build_revert(work, tip, culprit, "tests/t.py fails", tmp_path / "w")
    assert git(work, "rev-parse", "HEAD") == tip
    assert git(work, "show", f"{revert}:a.py") == "x = 1"
    assert f"Mendflow-Revert: {culprit}" in git(work, "log", "-1", "--format=%B", revert)


def test_a_revert_pull_request_is_opened_once(remote_pair, tmp_path, monkeypatch):
    """A resumed cycle (a suspended run re-runs its watch) finds its revert PR again."""
    from mendflow.core.config import DeliveryConfig
    from mendflow.tasks.deliver import deliver_revert
    from tests.fakes.fake_forges import FakeGitHub

    _, work = remote_pair
    culprit = _commit(work, "a.py", "x = 2\n")
    tip = _commit(work, "d.py", "d = 1\n")
    git(work, "push", "-q", "origin", "HEAD:main")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-test")
    with FakeGitHub("acme/widgets") as github:
        config = DeliveryConfig(forge_url=github.root_url, repository="acme/widgets")
        urls = {deliver_revert.fn(work, config, "main", tip, culprit, "t fails", tmp_path / "w",
                                  False)[1] for _ in range(2)}
        assert len(urls) == 1 and len(github.pulls()) == 1
        assert github.pulls()[0]["head"]["ref"] == f"mendflow/revert-{culprit[:10]}"
    assert git(work, "rev-parse", "HEAD") == tip  # a PR: the target did not move


def _finding(fid: str, rule: str) -> Finding:
    return Finding(id=fid, source="ruff", rule=rule, severity="low", category="lint",
                   path="a.py", message="m")


def _result() -> MissionResult:
    patches = tuple(PatchOutcome(id=f"p{i}", finding_ids=(f"f{i}",), fixer="ruff",
                                 status="accepted", commit=f"{i}" * 40, title=f"fix {i}")
                    for i in (1, 2, 3))
    return MissionResult(mission_id="m-1", flow_run_id=None, status="completed",
                         repository="/r", base_commit="0" * 40, branch="mendflow/m-1",
                         findings=(_finding("f1", "F401"), _finding("f2", "F401"),
                                   _finding("f3", "F541")),
                         patches=patches, quality_score=QualityScore(before=80, after=90),
                         report_dir="/r")


def test_grouping_duplicates_and_stale_pulls():
    result = _result()
    assert [p.patch_ids for p in plan_pulls(result, ["p1", "p2", "p3"], "cycle")] == \
        [("p1", "p2", "p3")]
    assert [p.patch_ids for p in plan_pulls(result, ["p1", "p2", "p3"], "rule")] == \
        [("p1", "p2"), ("p3",)]
    assert len(plan_pulls(result, ["p1", "p3"], "patch")) == 2
    open_pull = PullInfo(number=4, url="u", head="mendflow/evolve-old", base="main",
                         state="open", title="t", body=body_marker(["f1", "f2"]))
    new, dupes = split_duplicates(plan_pulls(result, ["p1", "p2", "p3"], "rule"), [open_pull])
    assert [p.patch_ids for p in dupes] == [("p1", "p2")]
    assert [p.patch_ids for p in new] == [("p3",)]
    assert stale_pulls([open_pull], {"f3"}) == [open_pull]
    assert stale_pulls([open_pull], {"f2"}) == []


def test_limits_say_which_one_binds():
    now = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
    assert capacity(5, [], 5, None, now) == (0, "max_open_prs (5) reached: 5 open")
    recent = [(now - timedelta(minutes=m)).isoformat() for m in (5, 10)]
    assert capacity(0, recent, 5, 2, now)[0] == 0
    assert "max_prs_per_hour (2)" in capacity(0, recent, 5, 2, now)[1]
    old = [(now - timedelta(hours=2)).isoformat()]
    assert capacity(1, old, 5, 2, now, wanted=2) == (2, None)
    assert capacity(4, [], 5, None, now, wanted=2) == (1, "max_open_prs (5) reached: 4 open")
