"""`mendflow evolve serve` against a real `prefect server start`: a scheduled deployment with an
interval of a few seconds, one triggered by `prefect deployment run`, and overlapping runs
cancelled by the deployment's concurrency limit of 1 and recorded as skipped."""

from __future__ import annotations

import json
import sys
import time
import uuid

import httpx
import pytest
import yaml

from tests.fixtures.sample_project import LIB, TESTS
from tests.helpers.e2e import start, stop
from tests.helpers.git import git, write_files

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _history(server, work) -> list[dict]:
    """The loop's cycle records as ``mendflow evolve history --json`` prints them."""
    return json.loads(server.mendflow("evolve", "history", str(work), "--json").stdout)


def _records(server, work) -> list[dict]:
    """The same records, read in this process from the loop's folder under the served
    MENDFLOW_HOME (what the command reads): polled every second, where a command line would
    cost a second of CPU a poll."""
    from mendflow.infra.evolution_store import loop_dir, read_history
    from mendflow.infra.layout import StateLayout

    layout = StateLayout.resolve(server.env["MENDFLOW_HOME"])
    return [r.model_dump(mode="json") for r in read_history(loop_dir(layout, str(work.resolve())))]


def _wait(predicate, timeout_s: float, what: str, log) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise AssertionError(f"{what} after {timeout_s} s:\n{log.read_text()[-4000:]}")


def test_served_evolution_loop(prefect_server, tmp_path):
    server = prefect_server
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    write_files(seed, {"pkg/__init__.py": "", "pkg/lib.py": LIB, "tests/test_lib.py": TESTS})
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "initial")
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(tmp_path / "remote.git"))
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(tmp_path / "remote.git"), str(work))
    config = tmp_path / "evolve.yaml"
    config.write_text(yaml.safe_dump({
        "environment": {"type": "interpreter", "python": sys.executable},
        "tools": {"mypy": {"enabled": False}, "bandit": {"enabled": False}},
        "mission": {"max_iterations": 1},
        "delivery": {"remote": "origin", "forge": None}}), encoding="utf-8")
    name = f"evo-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "evolve.log"
    process = start([sys.executable, "-m", "mendflow.cli", "evolve", "serve", "--config",
                     str(config), "--name", name, "--interval-s", "4", str(work)],
                    server.env, log)
    server.processes.append(process)

    def registered() -> bool:
        try:
            server.api("GET", f"/deployments/name/evolution-cycle/{name}")
            return True
        except httpx.HTTPStatusError:
            return False

    try:
        _wait(registered, 180, "the deployment was not registered", log)
        deployment = server.api("GET", f"/deployments/name/evolution-cycle/{name}")
        assert deployment["concurrency_limit"] == 1 or \
            deployment.get("global_concurrency_limit", {}).get("limit") == 1
        # two by hand at once, while the schedule also runs: at most one runs at a time
        for _ in range(2):
            server.run(sys.executable, "-m", "prefect", "deployment", "run",
                       f"evolution-cycle/{name}")
        _wait(lambda: len([r for r in _records(server, work) if r["status"] != "skipped"]) >= 3,
              400, "three cycles did not run", log)
        _wait(lambda: any(r["status"] == "skipped" for r in _records(server, work)), 120,
              "no overlapping run was recorded as skipped", log)
        records = _history(server, work)
        ran = [r for r in records if r["status"] != "skipped"]
        assert ran[0]["status"] == "completed" and ran[0]["patches_accepted"] >= 1, ran[0]
        assert "unchanged" in [r["status"] for r in ran[1:]]
        assert [r["cycle"] for r in records] == list(range(1, len(records) + 1))
        pushed = git(tmp_path / "remote.git", "branch", "--list", "mendflow/evolve-*")
        assert pushed.strip(), "the cycle's branch was not pushed"
        unchanged = [r for r in ran if r["status"] == "unchanged"]
        # nothing measured again (its cost is a benchmark's figure: bench/evolution.py)
        assert all(r["mission_id"] is None and r["tests_total"] is None for r in unchanged)
    finally:  # the schedule runs a cycle every 4 s: never for the rest of the session
        stop(process)
        server.processes.remove(process)
        try:
            deployment_id = server.api("GET", f"/deployments/name/evolution-cycle/{name}")["id"]
            httpx.delete(f"{server.url}/deployments/{deployment_id}", timeout=30)
        except httpx.HTTPError:
            pass


def test_prefect_deploy_accepts_the_evolution_yaml(prefect_server, tmp_path):
    server = prefect_server
    server.run(sys.executable, "-m", "prefect", "work-pool", "create", "evolution-e2e",
               "--type", "process")
    done = server.run(sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--prefect-file",
                      "deployments/evolution.prefect.yaml", "--all", "--pool", "evolution-e2e",
                      env={"MENDFLOW_REPO": str(tmp_path), "MENDFLOW_WORKDIR": str(tmp_path),
                           "MENDFLOW_GIT_URL": "https://git.example/mendflow.git"}, check=False)
    output = done.stdout + done.stderr
    assert "evolution-cycle/evolution' successfully created" in output, output
    deployment = server.api("GET", "/deployments/name/evolution-cycle/evolution")
    assert deployment["entrypoint"] == "mendflow.flows.evolution.evolution_cycle"
    assert deployment["parameters"] == {"path": str(tmp_path), "config_file": None}
    clone = deployment["pull_steps"][0]["prefect.deployments.steps.git_clone"]
    assert clone["repository"] == "https://git.example/mendflow.git"
    assert [s["schedule"]["interval"] for s in deployment["schedules"]] == [300.0]
    assert deployment["job_variables"] == {"working_dir": str(tmp_path)}


PROBE = """
import os

from prefect import flow

VERSION = {version}


@flow(name="pull-step-probe")
def probe(out: str) -> None:
    with open(out, "a", encoding="utf-8") as handle:
        handle.write(f"{{VERSION}} {{os.getcwd()}}\\n")
"""


def test_worker_runs_each_cycle_from_the_branch_head(prefect_server, tmp_path):
    """The evolution yaml's pull steps, run by a process worker: each flow run imports its
    (module-path) entrypoint from the clone, moved to the branch head first."""
    server = prefect_server
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    write_files(seed, {"probe_pkg/__init__.py": "", "probe_pkg/cycle.py": PROBE.format(version=1)})
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "version 1")
    remote = tmp_path / "probe.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(remote))
    git(seed, "remote", "add", "origin", str(remote))
    real = yaml.safe_load(open("deployments/evolution.prefect.yaml", encoding="utf-8"))
    [evolution] = real["deployments"]
    workdir, pool = tmp_path / "workdir", f"pull-{uuid.uuid4().hex[:6]}"
    workdir.mkdir()
    server.run(sys.executable, "-m", "prefect", "work-pool", "create", pool, "--type", "process")
    # the yaml's own pull steps and job variables (`prefect deploy` of it: the test above)
    pull = json.loads(json.dumps(real["pull"]).replace("{{ $MENDFLOW_GIT_URL }}", str(remote)))
    flow_id = server.api("POST", "/flows/", {"name": "pull-step-probe"})["id"]
    deployment = server.api("POST", "/deployments/", {
        "name": pool, "flow_id": flow_id, "entrypoint": "probe_pkg.cycle.probe",
        "pull_steps": pull, "work_pool_name": pool,
        "job_variables": {"working_dir": str(workdir)},
        "parameters": {"out": str(tmp_path / "runs.txt")}})
    assert evolution["work_pool"]["job_variables"] == {"working_dir": "{{ $MENDFLOW_WORKDIR }}"}
    worker = start([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool],
                   {**server.env, "PREFECT_WORKER_QUERY_SECONDS": "1"}, tmp_path / "worker.log")
    server.processes.append(worker)
    try:
        for version in (1, 2):
            if version == 2:  # a cycle delivered a change to the loop's own code
                write_files(seed, {"probe_pkg/cycle.py": PROBE.format(version=2)})
                git(seed, "commit", "-q", "-am", "version 2")
                git(seed, "push", "-q", "origin", "main")
            run = server.api("POST", f"/deployments/{deployment['id']}/create_flow_run", {})
            server.wait_state(run["id"], "COMPLETED", timeout_s=240)
    finally:
        stop(worker)
    runs = (tmp_path / "runs.txt").read_text().split("\n")
    clone = workdir / "probe-main"  # git_clone names it <repository>-<branch>
    assert runs[:2] == [f"1 {clone}", f"2 {clone}"], runs
