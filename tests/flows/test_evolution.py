"""The evolution loop, cycle after cycle, on a real repository with a bare remote and the
suite's fake GitHub (the real PyGithub talks to it over loopback).

One scenario of six cycles (they share the repository, the remote and the server):

1. lint findings → one PR (each patch its own commit), labelled, with the report;
2. a human pushes an unrelated commit → the same fixes are found → no duplicate PR;
3. nothing changed → one cheap "unchanged" cycle, nothing measured;
4. the human merges the PR and adds a test that the merged commit breaks →
   the watch sees the merge, bisects to mendflow's commit and proposes a revert PR;
5. a human commit breaks a test → bisect names it, a finding is reported, nothing reverted;
6. the GitHub answers 503 → the cycle records a resumable failure, nothing half-pushed;
7. the next cycle on the same tip resumes that mission (cached steps) and succeeds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mendflow.flows.evolution import evolution_cycle
from mendflow.infra.evolution_store import loop_key
from tests.fakes.fake_forges import FakeGitHub
from tests.fakes.server import json_reply
from tests.fixtures.sample_project import LIB, TESTS
from tests.helpers.git import git, write_files
from tests.helpers.prefect import read_artifact

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

CONTRACT_FIELDS = {"cycle", "started_at", "duration_s", "status", "head_before", "head_after",
                   "findings", "patches_accepted", "prs_opened", "prs_closed", "reverts",
                   "regressions", "quality_score", "coverage", "restarted"}


def _setup(tmp_path: Path, github: FakeGitHub) -> tuple[Path, Path, Path]:
    """A bare remote, the loop's clone of it, a human's clone, and the config file."""
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    write_files(seed, {"pkg/__init__.py": "", "pkg/lib.py": LIB, "tests/test_lib.py": TESTS})
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "initial")
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(remote))
    work, human = tmp_path / "work", tmp_path / "human"
    git(tmp_path, "clone", "-q", str(remote), str(work))
    git(tmp_path, "clone", "-q", str(remote), str(human))
    for clone in (work, human):
        git(clone, "config", "user.email", "human@example.com")
        git(clone, "config", "user.name", "A Human")
    config = tmp_path / "mendflow.yaml"
    config.write_text(yaml.safe_dump({
        "environment": {"type": "interpreter", "python": sys.executable},
        "tools": {"mypy": {"enabled": False}, "bandit": {"enabled": False}},
        "mission": {"max_iterations": 1, "target_score": 100},
        "delivery": {"remote": "origin", "forge": "github", "forge_url": github.root_url,
                     "repository": "acme/widgets", "labels": ["mendflow", "bot"],
                     "dashboard": True},
        "evolution": {"autonomy": "autonomous", "bisect_timeout_s": 120, "auto_restart": True},
    }), encoding="utf-8")
    return work, human, config


def _human_commit(human: Path, files: dict[str, str], message: str) -> str:
    git(human, "pull", "-q", "--ff-only")
    write_files(human, files)
    git(human, "add", "-A")
    git(human, "commit", "-q", "-m", message)
    git(human, "push", "-q", "origin", "main")
    return git(human, "rev-parse", "HEAD")


def _store():
    from mendflow.infra.layout import StateLayout
    from mendflow.infra.outcomes import OutcomeStore

    return OutcomeStore.open(None, StateLayout.resolve(None).root)


def test_evolution_cycles(tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-test-token")
    with FakeGitHub("acme/widgets") as github:
        work, human, config = _setup(tmp_path, github)
        cycle = lambda: evolution_cycle(path=str(work), config_file=str(config))  # noqa: E731

        first = cycle()
        assert first.status == "completed" and first.patches_accepted >= 1, first
        assert first.prs_opened == 1 and len(github.pulls()) == 1
        pull = github.pulls()[0]
        assert pull["base"]["ref"] == "main" and pull["head"]["ref"].startswith("mendflow/")
        assert [x["name"] for x in pull["labels"]] == ["mendflow", "bot"]
        assert "gates:" in pull["body"] and "mendflow:findings" in pull["body"]
        pushed = git(tmp_path / "remote.git", "log", "--format=%B", pull["head"]["ref"], "-1")
        assert "Mendflow-Patch:" in pushed and "Approved-by:" in pushed
        assert "ghp-test-token" not in json.dumps(github.pulls())

        _human_commit(human, {"NOTES.md": "unrelated\n"}, "docs: notes")
        second = cycle()
        assert second.status == "completed" and second.prs_opened == 0
        assert second.restarted and not first.restarted  # the code it runs moved
        assert len(github.pulls()) == 1, "the same fix was opened twice"

        third = cycle()
        assert third.status == "unchanged" and third.findings == 0
        assert third.mission_id is None and third.tests_total is None  # nothing measured
        assert not third.restarted

        git(human, "pull", "-q", "--ff-only")
        git(human, "fetch", "-q", "origin", pull["head"]["ref"])
        git(human, "merge", "-q", "--no-ff", "-m", "Merge PR 1", "FETCH_HEAD")
        git(human, "push", "-q", "origin", "main")
        github.mark_merged(pull["number"])
        # a human adds a test that the merged fix breaks (it removed a re-exported import)
        _human_commit(human, {"tests/test_reexport.py": "from pkg.lib import os\n\n\n"
                              "def test_reexport():\n    assert os.sep\n"}, "test: re-export")
        fourth = cycle()
        assert fourth.prs_merged == 1
        assert len(fourth.regressions) == 1, fourth
        [regression] = fourth.regressions
        assert regression.test == "tests/test_reexport.py"  # it no longer imports
        assert regression.delivered_by_mendflow and regression.action == "revert-proposed"
        assert "Mendflow-Patch:" in git(work, "log", "-1", "--format=%B", regression.commit)
        assert fourth.reverts == 1
        revert = [p for p in github.pulls() if p["head"]["ref"].startswith("mendflow/revert-")]
        assert len(revert) == 1 and regression.commit in revert[0]["body"]
        # the post-merge watch: the merged commits that broke nothing are kept; the culprit
        # (its revert only proposed) is neither kept nor reverted yet
        merged = git(work, "log", "--format=%H", "--grep=Mendflow-Patch:",
                     f"{third.head_after}..{fourth.head_after}").split()
        assert regression.commit in merged
        counts = _store().outcome_counts(str(work))
        assert len(merged) >= 2 and counts.get("merge:kept", 0) >= 1, (merged, counts)
        assert counts.get("merge:reverted", 0) == 0

        bad = _human_commit(human, {"pkg/extra.py": "def greet(name):\n    return name\n",
                                    "tests/test_lib.py": TESTS.replace(
                                        "from pkg.lib import add, greet",
                                        "from pkg.lib import add\nfrom pkg.extra import greet")},
                            "refactor: move greet")
        fifth = cycle()
        [human_regression] = [r for r in fifth.regressions if "test_greet" in r.test]
        assert human_regression.commit == bad and not human_regression.delivered_by_mendflow
        assert human_regression.action == "reported" and fifth.reverts == 0
        assert "Test Author" in human_regression.author  # tests.helpers.git sets it

        _human_commit(human, {"MORE.md": "x\n"}, "docs: more")
        github.respond_with(lambda request: json_reply({"message": "Unavailable"}, 503))
        sixth = cycle()
        github.respond_with(github._route)
        assert sixth.error and "503" in sixth.error
        assert sixth.status == "completed"  # measured; delivery failed and stays pending

        seventh = cycle()  # the tip has not moved, but the failed delivery is pending
        assert seventh.status == "completed" and seventh.error is None, seventh
        assert seventh.mission_id == sixth.mission_id  # the same mission, resumed
        assert seventh.head_after == sixth.head_after

        dashboards = [i for i in github.issues() if i["title"] == "mendflow dashboard"]
        assert len(dashboards) == 1 and "Open pull requests" in dashboards[0]["body"]

    key = "evolution-" + loop_key(str(work)).lower().replace("_", "-").replace(".", "-")
    table = read_artifact(f"{key}-history")
    assert [row["status"] for row in json.loads(table.data)][:3] == \
        ["completed", "completed", "unchanged"]
    trend = read_artifact(f"{key}-trend")
    assert "Quality score by cycle" in trend.data and "█" in trend.data
    assert "Open pull requests" in trend.data and "Regressions" in trend.data  # the dashboard

    from mendflow.cli import app

    out = CliRunner().invoke(app, ["evolve", "history", str(work), "--config", str(config),
                                   "--json"])
    assert out.exit_code == 0, out.output
    records = json.loads(out.stdout)
    assert [r["status"] for r in records] == ["completed", "completed", "unchanged",
                                              "completed", "completed", "completed",
                                              "completed"]
    assert [r["cycle"] for r in records] == [1, 2, 3, 4, 5, 6, 7]
    assert all(CONTRACT_FIELDS <= set(r) for r in records)
    assert records[3]["regressions"][0]["action"] == "revert-proposed"
    assert records[2]["head_before"] == records[2]["head_after"] == records[1]["head_after"]
