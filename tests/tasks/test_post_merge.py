"""The post-merge outcome: mendflow's landed commits become ``kept``; a later revert wins.

A real git repository (commits with mendflow's trailers, a ``git revert``), the pure
sorting of :func:`post_merge_outcomes`, and the SQLite outcome store.
"""

from __future__ import annotations

from mendflow.core.insights import revert_lines
from mendflow.core.learning import LandedCommit, post_merge_outcomes
from mendflow.infra.outcomes import OutcomeStore
from mendflow.tasks.evolve.watch import landed_commits, with_trailers
from tests.helpers.git import git, write_files
from tests.helpers.outcomes import attempt


def _commit(repo, name: str, message: str) -> str:
    write_files(repo, {name: f"# {name}\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def _patch(repo, name: str, patch_id: str) -> str:
    return _commit(repo, name, f"fix: {name}\n\nMendflow-Patch: {patch_id}\n"
                               f"Mendflow-Mission: m1\nApproved-by: someone")


def test_landed_commits_kept_and_reverted_in_the_store(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    base = _commit(repo, "README", "initial")
    one, two = _patch(repo, "a.py", "p-one"), _patch(repo, "b.py", "p-two")
    _commit(repo, "c.py", "a human's commit")
    first_tip = git(repo, "rev-parse", "HEAD")

    landed = landed_commits(repo, base, first_tip)
    assert [(c.commit, c.patch_id, c.mission_id, c.reverts) for c in landed] == [
        (one, "p-one", "m1", None), (two, "p-two", "m1", None)]  # the human's is left out

    # no regression, tests ran: both kept; a culprit of a regression is not kept
    assert [c.commit for c in post_merge_outcomes(landed, (), (), True).kept] == [one, two]
    blamed = post_merge_outcomes(landed, {two}, (), True)
    assert [c.commit for c in blamed.kept] == [one] and not blamed.reverted
    assert not post_merge_outcomes(landed, (), (), False).kept  # no tests at the tip: unknown

    store = OutcomeStore.open(None, tmp_path / "state")
    store.record_attempts([
        attempt("a-one", repository=str(repo), patch_id="p-one", commit="sha-on-mission-branch"),
        attempt("a-two", repository=str(repo), patch_id="p-two", commit=two),
        attempt("a-rejected", repository=str(repo), result="rejected")])
    kept = post_merge_outcomes(landed, (), (), True).kept
    # matched by trailer (a squashed or rebased PR changes the sha) and by sha
    assert store.record_post_merge(str(repo), [c.commit for c in kept], "kept",
                                   [(c.mission_id, c.patch_id) for c in kept]) == 2
    assert store.outcome_counts(str(repo))["merge:kept"] == 2

    # the next cycle: a revert of `one` lands (git revert's own message)
    git(repo, "revert", "--no-edit", one)
    second_tip = git(repo, "rev-parse", "HEAD")
    later = post_merge_outcomes(landed_commits(repo, first_tip, second_tip), (), (), True)
    assert not later.kept and [c.commit for c in later.reverted] == [one]
    assert store.record_post_merge(str(repo), [one], "reverted") == 0  # another sha in the store
    [reverted] = with_trailers(repo, later.reverted)  # the reverted commit's own trailers
    assert (reverted.patch_id, reverted.mission_id) == ("p-one", "m1")
    assert store.record_post_merge(str(repo), [reverted.commit], "reverted",
                                   [(reverted.mission_id, reverted.patch_id)]) == 1
    counts = store.outcome_counts(str(repo))
    assert (counts["merge:kept"], counts["merge:reverted"]) == (1, 1)
    # a late "kept" never undoes a revert
    assert store.record_post_merge(str(repo), [], "kept", [("m1", "p-one")]) == 0
    assert store.outcome_counts(str(repo))["merge:reverted"] == 1
    assert revert_lines(store.outcome_counts(str(repo)), 2) == [
        "revert rate: 1 of 2 merged fixes reverted (50 %), 1 kept; 0 accepted fixes not seen "
        "merged yet"]


def test_a_revert_made_by_the_watch_counts_at_once():
    landed = [LandedCommit(commit="c1", patch_id="p1", mission_id="m1")]
    outcomes = post_merge_outcomes(landed, {"c1"}, {"c1"}, True)
    assert not outcomes.kept and [c.patch_id for c in outcomes.reverted] == ["p1"]
    # a revert commit of a sha outside the range is reported by sha alone
    outside = post_merge_outcomes([LandedCommit(commit="r", reverts="c0")], (), (), True)
    assert [(c.commit, c.patch_id) for c in outside.reverted] == [("c0", None)]
