"""Deployed missions: suspended for approval, resumed by the CLI, re-run by the served deployment.

Three runs of the served ``maintenance-mission/<name>`` deployment go at once:

* A: approved with ``mendflow approve`` → delivered to ``main``;
* B: the target branch gets a conflicting commit while the run waits → approved,
  but the delivery conflicts and nothing changes;
* C: nobody answers; the server's timeout sweeper answers for them → rejected;
* D: approved in the Prefect UI's "Resume" dialog by a real headless Chromium → delivered
  (its mission runs with the others': one served deployment, one wait for all four).
"""

from __future__ import annotations

import json
import re
import sys

import pytest

from tests.helpers.crash import crash_tests_follow
from tests.helpers.e2e import (
    ROOT,
    Served,
    approved_log,
    make_target_repo,
    mission_config,
    session_of,
)
from tests.helpers.git import git
from tests.helpers.ui import SCREENSHOT, approve_in_ui, require_browser

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]  # 4 missions in setup

TOOL_STEPS = ("run-pytest", "run-ruff", "run-mypy", "run-bandit", "find-todos", "propose-patch",
              "plan-timeouts", "new-mission-id")
"""The work before the suspend (tool runs, fixer proposals) that a resumed run must take
from the cache, never run again. Git bookkeeping (apply, commit) replays deterministically
in milliseconds and re-creates the very same commits (see README, "Long missions")."""


@pytest.fixture(scope="module")
def runs(served: Served, tmp_path_factory, request):
    if crash_tests_follow(request):  # their 2-minute wait for Prefect passes beside these runs
        request.getfixturevalue("crash_scenarios").start()
    work = tmp_path_factory.mktemp("deployed")
    server = served.server
    repo_a = make_target_repo(work / "a")
    repo_b = make_target_repo(work / "b")
    repo_c = make_target_repo(work / "c")
    repo_d = make_target_repo(work / "d")
    git(repo_b, "checkout", "-q", "-b", "work")  # B's checkout is on `work`; target is main
    base = {r: git(r, "rev-parse", "HEAD") for r in (repo_a, repo_b, repo_c, repo_d)}
    b_config = mission_config(work / "b.yaml", target_branch="main")
    c_config = mission_config(work / "c.yaml", timeout_s=5)

    run_a = served.run(repo_a, autonomy="interactive")
    run_b = served.run(repo_b, autonomy="interactive", config_file=str(b_config))
    run_c = served.run(repo_c, autonomy="interactive", config_file=str(c_config))
    run_d = served.run(repo_d, autonomy="interactive")  # approved in the UI (the last test)
    for run in (run_a, run_b, run_d):
        assert server.wait_state(run, "PAUSED") == "Suspended"
    listed = json.loads(server.mendflow("approvals", "--json").stdout)
    waiting = {item["run_id"]: item for item in listed}

    # B: someone commits a conflicting change to main while the run waits
    other = work / "b-main"
    git(repo_b, "worktree", "add", "-q", str(other), "main")
    (other / "pkg/lib.py").write_text((other / "pkg/lib.py").read_text()
                                      .replace("import os", "import os  # used by plugins"))
    git(other, "commit", "-qam", "keep os")
    git(repo_b, "worktree", "remove", str(other))
    b_main = git(repo_b, "rev-parse", "main")

    server.mendflow("approve", run_a, "--approver", "Ada", "--comment", "ship it")
    server.mendflow("approve", run_b, "--approver", "Ada")
    for run in (run_a, run_b, run_c):
        server.wait_state(run, "COMPLETED")
    return {"a": (run_a, repo_a, base[repo_a]), "b": (run_b, repo_b, b_main),
            "c": (run_c, repo_c, base[repo_c]), "d": (run_d, repo_d, base[repo_d]),
            "waiting": waiting, "server": server}


def test_cli_approval_resumes_the_suspended_run_and_delivers(runs):
    run, repo, base = runs["a"]
    server = runs["server"]
    assert runs["waiting"][run]["patches_waiting"] == 2
    assert runs["waiting"][run]["state"] == "Suspended"
    session = session_of(server, run)

    accepted = [p for p in session["patches"] if p["status"] == "accepted"]
    assert len(accepted) == 2 and all(p["delivered_commit"] for p in accepted)
    assert approved_log(repo, base) == [(p["title"], "Ada") for p in reversed(accepted)]
    assert session["approval"]["decision"] == "approved"
    assert session["approval"]["comment"] == "ship it"
    assert git(repo, "status", "--porcelain") == ""  # the clean checkout followed main
    again = server.mendflow("approve", run, check=False)
    assert again.returncode == 1
    assert f"run {run} is COMPLETED, not waiting for approval" in again.stderr
    unknown = server.mendflow("reject", "0" * 8 + "-0000-4000-8000-" + "0" * 12, "--comment",
                              "x", check=False)
    assert unknown.returncode == 1 and "no flow run" in unknown.stderr


def test_no_step_before_the_suspend_runs_twice(runs):
    run, _, _ = runs["a"]
    task_runs = runs["server"].task_runs(run)
    executed: dict[str, int] = {}
    for task_run in task_runs:
        name = re.sub(r"-[0-9a-f]{3}$", "", task_run["name"])
        if task_run["state_name"] != "Cached":
            executed[name] = executed.get(name, 0) + 1
    first_pass = task_runs[: next(i for i, t in enumerate(task_runs)
                                  if t["name"].startswith("publish-approval-request")) + 1]
    before: dict[str, int] = {}
    for task_run in first_pass:  # a tree measured twice in the first pass is cached there too
        name = re.sub(r"-[0-9a-f]{3}$", "", task_run["name"])
        if task_run["state_name"] != "Cached":
            before[name] = before.get(name, 0) + 1
    for step in TOOL_STEPS:
        assert executed.get(step, 0) == before.get(step, 0), (step, executed, before)


def test_target_moved_during_the_wait_is_a_conflict_and_changes_nothing(runs):
    run, repo, moved_main = runs["b"]
    session = session_of(runs["server"], run)

    assert git(repo, "rev-parse", "main") == moved_main
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "work"
    approval = session["approval"]
    assert approval["delivery"] == "conflict" and "pkg/lib.py" in approval["error"]
    assert approval["delivered_commits"] == [] and session["exit_code"] == 1
    assert all("approved but not delivered" in p["reason"] for p in session["patches"])


def test_unanswered_suspended_run_times_out_through_the_served_sweeper(runs):
    run, repo, base = runs["c"]
    session = session_of(runs["server"], run)

    assert git(repo, "rev-parse", "main") == base
    assert session["approval"]["timed_out"] and session["approval"]["decision"] == "rejected"
    assert {p["reason"] for p in session["patches"]} == {"approval timed out"}


def test_served_deployment_has_the_configured_parameters(served: Served):
    deployment = served.server.api("GET", f"/deployments/name/{served.deployment}")
    assert deployment["entrypoint"] == "mendflow.flows.mission.maintenance_mission"
    assert deployment["parameters"]["config_file"] == str(served.config)
    assert deployment["parameters"]["autonomy"] is None  # the config's approval.autonomy


def test_prefect_deploy_accepts_prefect_yaml(served: Served, tmp_path):
    server = served.server
    server.run(sys.executable, "-m", "prefect", "work-pool", "create", "mendflow",
               "--type", "process")

    done = server.run(sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--prefect-file",
                      "deployments/prefect.yaml", "--all", env={"MENDFLOW_REPO": str(tmp_path)},
                      check=False)

    output = done.stdout + done.stderr
    assert "maintenance-mission/mendflow' successfully created" in output, output
    # prefect 3.8.8's CLI then checks for workers and sends limit/offset as null, which its
    # own server answers with 422: the deployment exists, only that last check fails
    assert done.returncode == 0 or "workers/filter" in output, output

    deployment = server.api("GET", "/deployments/name/maintenance-mission/mendflow")
    assert deployment["entrypoint"] == "mendflow.flows.mission.maintenance_mission"
    assert deployment["parameters"] == {"path": str(tmp_path), "config_file": None,
                                        "autonomy": "interactive"}
    assert deployment["work_pool_name"] == "mendflow"
    assert [s["schedule"]["interval"] for s in deployment["schedules"]] == [86400.0]
    assert deployment["pull_steps"][0]["prefect.deployments.steps.set_working_directory"] == \
        {"directory": str(ROOT)}


def test_resume_dialog_approves_the_suspended_mission(runs):
    """The Prefect UI's "Resume" dialog renders the mission's approval form; filled in like a
    person would (tests/helpers/ui.py), it resumes the suspended run, which delivers."""
    require_browser()
    run, repo, base = runs["d"]
    server = runs["server"]
    assert server.state(run) == ("PAUSED", "Suspended")

    approve_in_ui(server.ui, run, approver="Grace", comment="approved in the UI")

    server.wait_state(run, "COMPLETED")
    session = session_of(server, run)
    accepted = [p for p in session["patches"] if p["status"] == "accepted"]
    assert len(accepted) == 2
    assert approved_log(repo, base) == [(p["title"], "Grace") for p in reversed(accepted)]
    assert "Approval-comment: approved in the UI" in git(repo, "log", "-1", "--format=%B", "main")
    assert session["approval"]["approver"] == "Grace"
    assert SCREENSHOT.stat().st_size > 10_000
