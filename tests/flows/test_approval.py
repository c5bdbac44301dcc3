"""Human approval of a real mission run (ad-hoc: the flow run pauses and waits in-process).

Each test runs ``maintenance_mission`` in a thread against the Prefect test
harness, waits until its flow run is Paused, answers through
:mod:`mendflow.infra.approvals` (the same API the UI's Resume dialog uses), and checks
what reached the target branch.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from typer.testing import CliRunner

from mendflow.cli import approvals as approval_commands
from mendflow.core.errors import ApprovalError
from mendflow.flows.mission import maintenance_mission
from mendflow.infra import approvals
from tests.fakes.server import FakeServer, json_reply
from tests.fixtures.sample_project import LIB, TESTS
from tests.helpers.git import git
from tests.helpers.prefect import read_artifact
from tests.helpers.target import target_python

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]



def write_config(tmp_path: Path, **approval) -> Path:
    data = {"environment": {"type": "interpreter", "python": target_python()},
            "tools": {"mypy": {"enabled": False}, "bandit": {"enabled": False}},
            "mission": {"target_score": 100, "max_iterations": 1},
            "approval": {"poll_interval_s": 1, **approval}}
    path = tmp_path / "mendflow.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


class Mission:
    """A mission flow run in a background thread."""

    def __init__(self, repo: Path, config: Path, autonomy: str = "interactive"):
        self.mission_id = f"t-{uuid.uuid4().hex[:10]}"
        self.result = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(repo, config, autonomy),
                                       daemon=True)
        self.thread.start()

    def _run(self, repo, config, autonomy):
        try:
            self.result = maintenance_mission(path=str(repo), config_file=str(config),
                                              mission_id=self.mission_id, autonomy=autonomy)
        except BaseException as err:  # handed to the test thread
            self.error = err

    def waiting(self, timeout_s: float = 180) -> approvals.WaitingRun:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.thread.is_alive() or self.error is None, self.error
            for run in approvals.list_waiting():
                if run.mission_id == self.mission_id and run.patches_waiting:
                    return run
            time.sleep(0.5)
        raise AssertionError(f"mission {self.mission_id} never paused (error: {self.error})")

    def finish(self, timeout_s: float = 120):
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the mission did not finish after the answer"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def repo(make_repo):
    return make_repo({"pkg/__init__.py": "", "pkg/lib.py": LIB, "tests/test_lib.py": TESTS})


def flow_run_state(run_id: str) -> str:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(uuid.UUID(run_id)).state.type.value


def delivered_log(repo: Path, base: str) -> list[str]:
    return git(repo, "log", "--format=%s", f"{base}..main").splitlines()


def test_interactive_approval_delivers_every_accepted_patch(repo, tmp_path):
    base = git(repo, "rev-parse", "HEAD")
    with FakeServer("/hook") as hook:
        hook.respond_with(lambda request: json_reply({}))
        block = f"hook-{uuid.uuid4().hex[:8]}"
        CustomWebhookNotificationBlock(name="t", url=f"{hook.root_url}/hook",
                                       json_data={"text": "{{subject}}|{{body}}"}).save(block)
        mission = Mission(repo, write_config(tmp_path, notify_block=block))
        run = mission.waiting()

        # while it waits: the request is published and the report says so
        assert run.patches_waiting == 2 and run.state == "Paused" and run.repository == str(repo)
        session = json.loads((Path(approvals_report_dir(mission)) / "session_data.json")
                             .read_text())
        assert session["status"] == "awaiting_approval"
        assert {p["status"] for p in session["patches"]} == {"pending_approval"}
        artifact = read_artifact(f"mendflow-approval-{mission.mission_id}")
        assert artifact and "-import os" in artifact.data and "mendflow approve" in artifact.data
        assert git(repo, "rev-parse", "main") == base
        waiting_text = hook.requests[0].json["text"]
        assert "approval needed" in waiting_text and f"runs/flow-run/{run.run_id}" in waiting_text

        app = approvals_app()
        listed = CliRunner().invoke(app, ["approvals", "--json"])
        assert listed.exit_code == 0 and run.run_id in listed.output
        shown = CliRunner().invoke(app, ["approvals"]).output
        assert f"{run.run_id}  Paused" in shown and f"on {repo}" in shown
        answer = CliRunner().invoke(app, ["approve", run.run_id, "--approver", "Ada",
                                          "--comment", "nice"])
        assert answer.exit_code == 0, answer.output
        result = mission.finish()
        assert "finished" in hook.requests[-1].json["text"]

    assert result.status == "completed" and result.exit_code == 0
    accepted = [p for p in result.patches if p.status == "accepted"]
    assert len(accepted) == 2 and all(p.delivered_commit for p in accepted)
    assert delivered_log(repo, base) == [p.title for p in reversed(accepted)]
    assert git(repo, "log", "-1", "--format=%(trailers:key=Approved-by,valueonly)",
               "main").strip() == "Ada"
    assert "import os" not in (repo / "pkg/lib.py").read_text()  # clean checkout fast-forwarded
    record = result.approval
    assert (record.decision, record.approver, record.comment) == ("approved", "Ada", "nice")
    assert record.delivery == "fast-forward" and record.target_branch == "main"
    saved = json.loads((Path(result.report_dir) / "session_data.json").read_text())
    assert saved["approval"]["approver"] == "Ada" and saved["status"] == "completed"
    assert flow_run_state(run.run_id) == "COMPLETED"
    with pytest.raises(ApprovalError, match=f"run {run.run_id} is COMPLETED, not waiting"):
        approvals.approve(run.run_id)


def test_reject_and_bad_answers_leave_the_target_untouched(repo, tmp_path):
    base = git(repo, "rev-parse", "HEAD")
    mission = Mission(repo, write_config(tmp_path))
    run = mission.waiting()

    with pytest.raises(ApprovalError, match="refused to resume"):
        approvals.resume(run.run_id, {"approved": "maybe"})
    with pytest.raises(ApprovalError, match="not waiting for approval in this run: nope"):
        approvals.approve(run.run_id, only=["nope"])
    with pytest.raises(ApprovalError, match="no flow run"):
        approvals.approve(str(uuid.uuid4()))
    with pytest.raises(ApprovalError, match="not a flow run id"):
        approvals.approve("12")
    assert flow_run_state(run.run_id) == "PAUSED"

    approvals.reject(run.run_id, comment="not now", approver="Bob")
    result = mission.finish()

    assert git(repo, "rev-parse", "main") == base
    assert {p.status for p in result.patches} == {"rejected"}
    assert {p.reason for p in result.patches} == {"rejected by Bob: not now"}
    assert result.approval.decision == "rejected" and result.approval.delivered_commits == ()
    assert result.exit_code == 2 and result.status == "completed"


def test_partial_approval_delivers_only_the_chosen_patch(repo, tmp_path):
    base = git(repo, "rev-parse", "HEAD")
    mission = Mission(repo, write_config(tmp_path))
    run = mission.waiting()
    request = approvals._request_of(uuid.UUID(run.run_id))
    chosen = request["patch_ids"][1]

    approvals.approve(run.run_id, only=[chosen], approver="Ada")
    result = mission.finish()

    by_id = {p.id: p for p in result.patches}
    assert by_id[chosen].status == "accepted" and by_id[chosen].delivered_commit
    other = next(p for p in result.patches if p.id != chosen)
    assert other.status == "rejected" and other.reason == "rejected by Ada: not selected for approval"
    assert delivered_log(repo, base) == [by_id[chosen].title]
    assert result.approval.decision == "partial" and result.approval.patch_ids == (chosen,)


def test_unanswered_request_times_out_as_a_rejection(repo, tmp_path):
    base = git(repo, "rev-parse", "HEAD")
    mission = Mission(repo, write_config(tmp_path, timeout_s=4))
    run = mission.waiting()

    result = mission.finish()

    assert git(repo, "rev-parse", "main") == base
    assert {p.reason for p in result.patches} == {"approval timed out"}
    assert result.approval.timed_out and result.approval.decision == "rejected"
    assert flow_run_state(run.run_id) == "COMPLETED"


def test_full_autonomy_delivers_without_asking(repo, tmp_path):
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "work")  # main is not checked out: update-ref path

    result = maintenance_mission(path=str(repo), config_file=str(write_config(
        tmp_path, target_branch="main")), mission_id=f"t-{uuid.uuid4().hex[:8]}",
        autonomy="full_autonomous")

    assert result.approval.decision == "auto" and not result.approval.required
    assert len(delivered_log(repo, base)) == 2
    assert git(repo, "rev-parse", "work") == base
    assert "mendflow (full_autonomous)" in git(repo, "log", "-1", "--format=%B", "main")


def approvals_app():
    import typer

    app = typer.Typer()
    approval_commands.register(app)
    return app


def approvals_report_dir(mission: Mission) -> str:
    from mendflow.infra.layout import StateLayout

    return str(StateLayout.resolve().mission(mission.mission_id) / "report")
