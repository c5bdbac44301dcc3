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
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mendflow.flows.evolution import evolution_cycle
from mendflow.infra.evolution_store import loop_key
from tests.fakes.fake_forges import FakeGitHub
from tests.fakes.server import json_reply
from tests.fixtures.sample_project import TESTS
from tests.helpers.evolution import setup_loop, write_loop_config
from tests.helpers.git import git, write_files
from tests.helpers.prefect import read_artifact

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

CONTRACT_FIELDS = {"cycle", "started_at", "duration_s", "status", "head_before", "head_after",
                   "findings", "patches_accepted", "prs_opened", "prs_closed", "reverts",
                   "regressions", "quality_score", "coverage", "restarted"}


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
        work, human, config = setup_loop(tmp_path, github)
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


def _events(resource: str, want: dict[str, int], timeout_s: float = 60) -> dict[str, list]:
    """The loop's events, read back from the Prefect API (``POST /events/filter``)."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    deadline = time.monotonic() + timeout_s
    while True:  # events reach the server through a queue, and are stored asynchronously
        page = httpx.post(f"{PREFECT_API_URL.value()}/events/filter", json={
            "filter": {"event": {"prefix": ["mendflow."]},
                       "resource": {"id": [resource]}}, "limit": 50}, timeout=30).json()
        found: dict[str, list] = {}
        for event in page["events"]:
            found.setdefault(event["event"], []).append(event)
        if all(len(found.get(k, [])) >= n for k, n in want.items()) \
                or time.monotonic() > deadline:
            return found
        time.sleep(1)


def _paused_cycle(repository: Path, thread: threading.Thread, timeout_s: float = 300):
    from mendflow.infra import approvals

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and thread.is_alive():
        for run in approvals.list_waiting():
            if run.repository == str(repository) and run.patches_waiting:
                return run
        time.sleep(0.5)
    raise AssertionError("the semi-autonomous cycle never paused (it ended, or hangs)")


def test_evolution_autonomy_levels_events_and_generate_switches(events_api, tmp_path,
                                                              monkeypatch):
    """Full autonomy merges its PR and reverts its own regression directly (a revert commit
    pushed to main, no PR); the events carry the repository; a semi-autonomous cycle pauses
    before anything is pushed or opened, shows the wait on the dashboard, and opens its PR
    once approved; a TODO is measured but never given to the fixer (generate switch off)."""
    from mendflow.infra import approvals
    from mendflow.infra.layout import StateLayout

    monkeypatch.setenv("GITHUB_TOKEN", "ghp-test-token")
    with FakeGitHub("acme/widgets") as github:
        full = {"autonomy": "full_autonomous", "bisect_timeout_s": 120}
        work, human, config = setup_loop(tmp_path, github, extra={
            "pkg/todo.py": "# TODO: support subtraction\nVALUE = 1\n"}, evolution=full)

        def merge(pull: dict) -> None:  # what the forge does when asked to merge
            git(human, "pull", "-q", "--ff-only")
            git(human, "fetch", "-q", "origin", pull["head"]["ref"])
            git(human, "merge", "-q", "--no-ff", "-m", f"Merge PR {pull['number']}", "FETCH_HEAD")
            git(human, "push", "-q", "origin", "main")

        github.on_merge = merge
        cycle = lambda: evolution_cycle(path=str(work), config_file=str(config))  # noqa: E731

        first = cycle()
        assert first.prs_opened == 1 and first.prs_merged == 1, first
        [pull] = github.pulls()
        assert pull["merged"] and pull["state"] == "closed"
        report = StateLayout.resolve().mission(first.mission_id) / "report"
        session = json.loads((report / "session_data.json").read_text())
        todos = {f["id"] for f in session["findings"] if f["category"] == "todo"}
        assert todos, "the TODO was not measured"
        attempted = {i for p in session["patches"] for i in p["finding_ids"]}
        assert not todos & attempted, "a TODO reached the fixer with features_from_todos off"

        _human_commit(human, {"tests/test_reexport.py": "from pkg.lib import os\n\n\n"
                              "def test_reexport():\n    assert os.sep\n"}, "test: re-export")
        second = cycle()
        [regression] = second.regressions
        assert regression.delivered_by_mendflow and regression.action == "reverted", regression
        assert second.reverts == 1 and len(github.pulls()) == 1  # directly: no revert PR
        git(human, "pull", "-q", "--ff-only")
        message = git(human, "log", "-1", "--format=%B", "origin/main")
        assert f"Mendflow-Revert: {regression.commit}" in message
        assert git(human, "rev-parse", "origin/main") == regression.detail

        resource = f"mendflow.repository.{work}"
        events = _events(resource, {"mendflow.evolution.cycle.completed": 2,
                                    "mendflow.patch.delivered": 1,
                                    "mendflow.regression.detected": 1,
                                    "mendflow.regression.reverted": 1})
        completed = sorted(events["mendflow.evolution.cycle.completed"],
                           key=lambda e: e["payload"]["cycle"])
        assert [e["payload"]["cycle"] for e in completed] == [1, 2]
        assert completed[0]["payload"]["prs_merged"] == 1
        assert completed[0]["resource"]["prefect.resource.name"] == str(work)
        [delivered] = events["mendflow.patch.delivered"]
        assert delivered["payload"]["url"] == pull["html_url"]
        [detected] = events["mendflow.regression.detected"]
        [reverted] = events["mendflow.regression.reverted"]
        assert detected["payload"]["test"] == reverted["payload"]["test"] == regression.test
        assert reverted["payload"]["action"] == "reverted"

        # semi-autonomous, every patch needs a human: the cycle pauses before any PR
        write_loop_config(config, github, evolution={"autonomy": "semi_autonomous"},
                      approval={"max_changed_lines": 0, "poll_interval_s": 1})
        _human_commit(human, {"pkg/more.py": 'def hi():\n    return f"hi"\n'}, "feat: hi")
        outcome: dict = {}
        thread = threading.Thread(target=lambda: outcome.update(record=cycle()), daemon=True)
        thread.start()
        waiting = _paused_cycle(work, thread)
        pushed = git(tmp_path / "remote.git", "branch", "--list", "mendflow/evolve-*")
        assert len(github.pulls()) == 1, "a PR was opened before the approval"
        assert pull["head"]["ref"] in pushed and pushed.count("mendflow/evolve-") == 1
        [dashboard] = [i for i in github.issues() if i["title"] == "mendflow dashboard"]
        assert "waiting for approval" in dashboard["body"]
        assert f"mendflow approve {waiting.run_id}" in dashboard["body"]
        approvals.approve(waiting.run_id, approver="Ada")
        thread.join(300)
        third = outcome["record"]
        assert third.prs_opened == 1 and third.flow_run_id == waiting.run_id, third
        opened = github.pulls()[-1]
        assert opened["state"] == "open" and "approved by Ada" in opened["body"]
