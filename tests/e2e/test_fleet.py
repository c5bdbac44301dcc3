"""A fleet on a PostgreSQL-backed Prefect server with two workers standing in for two hosts.

Shares nothing with the other e2e tests (it needs PostgreSQL): its own throwaway
PostgreSQL 15 cluster, ``prefect server start`` on it (asyncpg), ``mendflow fleet
deploy --pool``, two ``prefect worker start --pool`` processes with their own
MENDFLOW_HOME and PREFECT_HOME, and 3 small repositories served from bare
repositories through ``file://`` URLs (a fleet of three with two slots; the other
tests run missions on the same repositories again). The worker-crash test comes first:
the one-by-one reference missions (a local process started with the fixture) run during
its wait for the crash automation (three silent heartbeat periods), not beside the fleet.
The result storage is one directory both workers use (what an S3 or NFS result storage
is in production).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from mendflow.core.fleet import repository_key
from tests.helpers.fleet import (
    Fleet,
    make_bare_repos,
    mission_overrides,
    restart_server,
    start_postgres,
    start_server,
    start_worker,
    submissions,
    wait_polling,
    wait_workers,
    write_fleet,
)
from tests.helpers.git import git
from tests.helpers.prefect_db import seed_prefect_home
from tests.helpers.prefect_env import QUIET_SERVICES, client_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]
POOL = "e2e-fleet"
SLOT_POLL = {"PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": "2"}
"""A mission waiting for its repository's (or the fleet's) slot asks again after the
server's Retry-After: the limit's mean occupancy (a mission's ~30 s here) capped by this
setting (30 s by default), so every wait for a slot ended up to ~40 s after the slot was
free. 2 s here, as the server's other loops of the suite are shortened."""
NO_EVENT_STORE = {"PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false"}
"""The server does not write the events it receives to its events table (PostgreSQL): no
test here reads events back, and the automations (the crash automation of a killed worker's
run) are evaluated by the triggers service from the event stream, not from that table.
Storing every task run's events was the biggest part of this server's CPU."""
WORKER_LIMIT = 3
"""Flow runs a worker takes at a time: with the six runs of the fleet-of-three test, one host
cannot take them all when the other's poll comes a moment later (both hosts work)."""
REFERENCE = """
import json, subprocess, sys
from mendflow.flows.mission import maintenance_mission
out = {}
for url, clone, overrides in json.loads(sys.argv[1]):
    subprocess.run(["git", "clone", "-q", url, clone], check=True)
    result = maintenance_mission(path=clone, config_overrides=overrides)
    tree = subprocess.run(["git", "-C", clone, "rev-parse", result.branch + "^{tree}"],
                          check=True, capture_output=True, text=True).stdout.strip()
    out[url] = {"tree": tree, "score": result.quality_score.after,
                "accepted": sum(p.status == "accepted" for p in result.patches)}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """PostgreSQL, the server, the pool's deployment and two workers; the 3 repositories."""
    base = tmp_path_factory.mktemp("fleet")
    # PostgreSQL runs as `postgres`: its data must stay readable to that user. Not under
    # pytest's /tmp/pytest-of-<user>, which any pytest run started on the machine meanwhile
    # sets back to mode 0700 (pytest >= 7.3): the cluster then PANICs ("could not open file
    # global/pg_control: Permission denied") and the server answers 500 to everything.
    pg_base = Path(tempfile.mkdtemp(prefix="fleet-pg-", dir=os.environ.get("MENDFLOW_TESTS_TMPDIR")))
    postgres = start_postgres(pg_base / "pg")
    try:
        server = start_server(base / "server", postgres.url(), env={**SLOT_POLL, **NO_EVENT_STORE})
    except BaseException:
        postgres.stop()
        shutil.rmtree(pg_base, ignore_errors=True)
        raise
    running = Fleet(postgres=postgres, server=server, pool=POOL, base=base)
    try:
        repos = make_bare_repos(base / "repos", 3)
        running.repos = repos  # type: ignore[attr-defined]
        running.reference = _start_reference(base, repos)  # type: ignore[attr-defined]
        deployed = running.mendflow("fleet", "deploy", "--pool", POOL)
        assert "leases in memory" not in deployed.stderr  # the server persists them
        shared = base / "results"
        shared.mkdir()
        running.shared = shared  # type: ignore[attr-defined]
        for name in ("host-a", "host-b"):
            running.workers.append(start_worker(server, POOL, name, base / "hosts", shared,
                                                postgres.url("mendflow", "psycopg"),
                                                limit=WORKER_LIMIT))
        wait_workers(server, POOL, 2)
        wait_polling(running.workers)
        yield running
    finally:
        running.close()
        shutil.rmtree(pg_base, ignore_errors=True)


def _start_reference(base: Path, repos: list[Path]) -> subprocess.Popen:
    """The same missions one by one, in one local process (ephemeral Prefect, its own homes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MENDFLOW_"))}
    env.update({"PREFECT_HOME": str(seed_prefect_home(base / "ref-prefect")),
                "MENDFLOW_HOME": str(base / "ref-home"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
                "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL", **client_env(),
                **QUIET_SERVICES})  # its temporary server: nothing reads its events
    jobs = [(repo.as_uri(), str(base / "ref" / repo.stem), mission_overrides()) for repo in repos]
    return subprocess.Popen([sys.executable, "-c", REFERENCE, json.dumps(jobs)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _reference(fleet) -> dict:
    """The one-by-one results: ``{url: {"tree", "score", "accepted"}}``."""
    if not hasattr(fleet, "reference_out"):
        out, errors = fleet.reference.communicate(timeout=900)
        assert fleet.reference.returncode == 0, errors[-3000:]
        fleet.reference_out = json.loads(out.strip().splitlines()[-1])
    return fleet.reference_out


def _slot_intervals(fleet, run_ids: list[str]) -> list[tuple[datetime, datetime, str]]:
    """When each run held its repository's slot: the labels the mission writes on its flow run
    right after taking the slot and right before giving it back (the server's record)."""
    intervals = []
    for run_id in run_ids:
        labels = fleet.server.api("GET", f"/flow_runs/{run_id}")["labels"]
        intervals.append((datetime.fromisoformat(labels["mendflow.slot_acquired_at"]),
                          datetime.fromisoformat(labels["mendflow.slot_released_at"]), run_id))
    return sorted(intervals)


def _state(fleet, run_id: str) -> str | None:
    """The run's state type; None while the server answers an error (it is restarting)."""
    try:
        return fleet.server.state(run_id)[0]
    except httpx.HTTPError:
        return None


def _server_log(fleet) -> str:
    return (fleet.server.home / "server.log").read_text(errors="replace")[-4000:]


def _why(fleet, ids: list[str]) -> str:
    """Each run's state and message, and the tails of the workers' and the server's logs."""
    states = []
    for run_id in ids:  # the diagnosis must not fail on the busy server it explains
        try:
            run = fleet.server.api("GET", f"/flow_runs/{run_id}")
            states.append((run_id, run["state_type"], (run["state"] or {}).get("message")))
        except httpx.HTTPError as err:
            states.append((run_id, "unread", f"{type(err).__name__}: {err}"))
    logs = [w.log.read_text(errors="replace")[-3000:] for w in fleet.workers]
    restarted = fleet.server.home / "server-restarted.log"
    if restarted.is_file():
        logs.append(restarted.read_text(errors="replace")[-3000:])
    return "\n\n".join([repr(states), *logs, _server_log(fleet)])


def _linted(worker, mission_id: str) -> bool:
    """Has the mission's baseline ruff run finished on this host (its flow-run process's own
    log lines in the worker's log: immediate, where the server's task-run records lag)?"""
    log = worker.log.read_text(errors="replace")
    start = log.find(f"mission {mission_id} on ")
    return start >= 0 and re.search(r"Task run 'run-ruff-\w+' - Finished in state Completed",
                                     log[start:]) is not None


def test_worker_killed_mid_mission_is_finished_by_the_other(fleet, tmp_path):
    url = fleet.repos[2].as_uri()
    spec = write_fleet(tmp_path / "crash.yaml", [url])
    submitted = json.loads(fleet.mendflow("fleet", "run", str(spec), "--pool", POOL,
                                          "--json").stdout)["runs"]
    run_id = submitted[0]["flow_run_id"]
    deadline = time.monotonic() + 300
    mission_id = None
    while True:  # mid-mission: its sandbox exists on the host that runs it, and its baseline
        if not mission_id:  # lint has run (the label read from the server until it is there)
            labels = fleet.server.api("GET", f"/flow_runs/{run_id}")["labels"]
            mission_id = labels.get("mendflow.mission_id")
        hosts = [worker for worker in fleet.workers if mission_id and
                 (worker.home / "mendflow" / "worktrees" / mission_id).is_dir()
                 and _linted(worker, mission_id)]
        if hosts:
            break
        assert time.monotonic() < deadline, _state(fleet, run_id)
        time.sleep(0.1)
    victim = hosts[0]
    victim.kill()
    survivor = next(worker for worker in fleet.workers if worker is not victim)

    deadline = time.monotonic() + 480
    while _state(fleet, run_id) != "COMPLETED":
        assert time.monotonic() < deadline, (_state(fleet, run_id), _server_log(fleet))
        time.sleep(2)
    states = [s["type"] for s in fleet.server.api("GET", f"/flow_run_states/?flow_run_id={run_id}")]
    assert "CRASHED" in states, states  # marked by the crash automation, then rescheduled
    assert states.index("CRASHED") < len(states) - 1
    assert fleet.server.api("GET", f"/flow_runs/{run_id}")["run_count"] >= 2
    # finished on the surviving host, with the steps of the first attempt from the cache
    assert run_id in survivor.log.read_text(errors="replace")
    assert any(t["state_name"] == "Cached" for t in fleet.server.task_runs(run_id))
    replay = _replay_counts(fleet, run_id)
    print(f"cacheable steps: first attempt completed {sum(replay['first'].values())}; resumed "
          f"on the other host: {sum(replay['cached'].values())} from the cache, "
          f"{sum(replay['rerun'].values())} run: {replay}")
    # every step the first host finished comes back from the cache on the second host
    assert replay["first"] and not replay["first"] - replay["cached"], replay
    labels = fleet.server.api("GET", f"/flow_runs/{run_id}")["labels"]
    assert int(labels["mendflow.patches_accepted"]) == 2
    pushed = git(fleet.repos[2], "rev-parse", f"mendflow/{labels['mendflow.mission_id']}^{{tree}}")
    assert pushed == _reference(fleet)[url]["tree"]  # the same result as one by one


CACHED_STEPS = {"new-mission-id", "plan-timeouts", "plan-fixer-timeouts", "load-priors",
                "run-ruff", "run-mypy", "run-bandit", "find-todos", "run-pytest",
                "run-selected-tests", "propose-patch", "record-tool-durations"}
"""The mission's steps with persisted, input-keyed results (``MISSION_STEP``)."""


def _replay_counts(fleet, run_id: str) -> dict[str, Counter]:
    """Of a resumed flow run's cacheable steps: those its first attempt completed, and those
    its last attempt got from the cache or ran again (``Counter`` of task names)."""
    runs = fleet.server.task_runs(run_id)
    last = max(run["flow_run_run_count"] for run in runs)
    name = lambda run: run["name"].rsplit("-", 1)[0]  # noqa: E731  (minus Prefect's suffix)
    mine = [run for run in runs if name(run) in CACHED_STEPS]
    return {"first": Counter(name(r) for r in mine if r["flow_run_run_count"] < last
                             and r["state_type"] == "COMPLETED"),
            "cached": Counter(name(r) for r in mine if r["flow_run_run_count"] == last
                              and r["state_name"] == "Cached"),
            "rerun": Counter(name(r) for r in mine if r["flow_run_run_count"] == last
                             and r["state_name"] != "Cached")}


def test_fleet_of_three_completes_like_one_by_one_and_never_overlaps(fleet, tmp_path):
    _revive_workers(fleet)  # the host the crash test killed: two hosts again
    urls = [repo.as_uri() for repo in fleet.repos]
    learned = _history_rows(fleet)  # the crash test's mission already taught repository 2's
    # two slots for three repositories: the fleet's own limit holds one mission back
    main = write_fleet(tmp_path / "nightly.yaml", urls, concurrent=2)
    # a second fleet naming two of the same repositories, and a URL no worker can clone
    other = write_fleet(tmp_path / "other.yaml", [urls[0], urls[1], "file:///nonexistent/x.git"])
    first = subprocess.Popen(
        [sys.executable, "-m", "mendflow.cli", "fleet", "run", str(main), "--pool", POOL, "--wait",
         "--json"], env=fleet.server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = fleet.mendflow("fleet", "run", str(other), "--pool", POOL, "--wait", "--json",
                            check=False, timeout=900)
    out, errors = first.communicate(timeout=900)
    assert first.returncode == 0, errors[-3000:]
    runs = json.loads(out)["runs"]
    assert [run["repository"] for run in runs] == urls
    assert {tuple(run) for run in runs} == {("repository", "flow_run_id", "state", "mission_id",
                                             "quality_score", "patches_accepted")}
    assert all(run["state"] == "COMPLETED" for run in runs), runs

    reference = _reference(fleet)
    for run, repo in zip(runs, fleet.repos, strict=True):
        expected = reference[repo.as_uri()]
        assert (run["quality_score"], run["patches_accepted"]) == (expected["score"],
                                                                   expected["accepted"])
        pushed = git(repo, "rev-parse", f"mendflow/{run['mission_id']}^{{tree}}")
        assert pushed == expected["tree"]  # the mission branch, pushed back, has the same tree
        assert git(repo, "rev-parse", "main") == git(repo, "rev-parse",
                                                     f"mendflow/{run['mission_id']}~2")

    assert second.returncode == 1  # one run failed: the unclonable URL
    others = json.loads(second.stdout)["runs"]
    assert [run["state"] for run in others] == ["COMPLETED", "COMPLETED", "FAILED"]
    failed = fleet.server.api("GET", f"/flow_runs/{others[2]['flow_run_id']}")
    assert "git" in failed["state"]["message"] and "nonexistent" in failed["state"]["message"]

    # never two missions on one repository at once (the server's run history)
    for index in (0, 1):
        ids = [runs[index]["flow_run_id"], others[index]["flow_run_id"]]
        held = _slot_intervals(fleet, ids)
        assert held[0][1] <= held[1][0], held
    # both hosts worked: each started flow runs of these fleets (its log since it started),
    # and has clones of their repositories
    ids = [run["flow_run_id"] for run in runs + others]
    hosts = {worker.name for worker in fleet.workers
             if any(submissions(fleet, run_id, [worker]) for run_id in ids)}
    assert hosts == {"host-a", "host-b"}
    assert {path.parent.parent.parent.name for path in
            (fleet.base / "hosts").glob("*/mendflow/clones/*")} == {"host-a", "host-b"}

    status = json.loads(fleet.mendflow("fleet", "status", str(main), "--json").stdout)["runs"]
    assert [(row["repository"], row["state"]) for row in status][2:] == [
        (url, "COMPLETED") for url in urls[2:]]
    # the registry is the server: the CLI's host (its own, empty MENDFLOW_HOME) lists every mission
    listed = json.loads(fleet.mendflow("mission", "list", "--json").stdout)
    assert {run["mission_id"] for run in runs} <= {row["mission_id"] for row in listed}
    # the learned durations of both hosts went to the one shared database, for every repository
    rows = _history_rows(fleet)
    assert set(rows) == {repository_key(url) for url in urls}
    assert all(count > learned.get(key, 0) for key, count in rows.items()), (learned, rows)


def _history_rows(fleet) -> dict[str, int]:
    """Rows per repository key of the shared duration history (PostgreSQL, psql)."""
    done = subprocess.run(
        ["/usr/lib/postgresql/15/bin/psql", "-h", "127.0.0.1", "-p", str(fleet.postgres.port),
         "-U", "postgres", "-d", "mendflow", "-At", "-c",
         "select repo_key, count(*) from mendflow_step_durations where step = 'pytest' "
         "group by repo_key"], capture_output=True, text=True)
    if done.returncode and "does not exist" in done.stderr:
        return {}  # no mission has recorded a duration yet (the table comes with the first)
    assert done.returncode == 0, done.stderr
    return {key: int(count) for key, count in
            (line.split("|") for line in done.stdout.splitlines() if line)}


def _revive_workers(fleet) -> None:
    """Start again (same name and homes) any worker an earlier test killed: two hosts again."""
    for index, worker in enumerate(fleet.workers):
        if worker.process.poll() is not None:
            fleet.workers[index] = start_worker(fleet.server, POOL, worker.name,
                                                worker.home.parent, fleet.shared,
                                                fleet.postgres.url("mendflow", "psycopg"),
                                                limit=WORKER_LIMIT)
    wait_workers(fleet.server, POOL, 2)
    wait_polling(fleet.workers)


def test_server_restarted_during_a_fleet(fleet, tmp_path):
    """The server stops mid-fleet and starts again on the same port and database: the flow
    runs and the workers ride it out, every mission completes once, the slots are freed."""
    _revive_workers(fleet)
    urls = [fleet.repos[index].as_uri() for index in (1, 2)]
    spec = write_fleet(tmp_path / "restart.yaml", urls, concurrent=2)
    submitted = json.loads(fleet.mendflow("fleet", "run", str(spec), "--pool", POOL,
                                          "--json").stdout)["runs"]
    ids = [run["flow_run_id"] for run in submitted]
    deadline = time.monotonic() + 300
    while not any(fleet.server.api("GET", f"/flow_runs/{i}")["labels"].get(
            "mendflow.slot_acquired_at") for i in ids):  # a mission holds its slot: mid-fleet
        assert time.monotonic() < deadline, [_state(fleet, i) for i in ids]
        time.sleep(0.3)
    down_s = restart_server(fleet.server, down_s=2)
    print(f"server down {down_s:.1f} s")

    deadline = time.monotonic() + 480
    while (seen := [_state(fleet, i) for i in ids]) != ["COMPLETED"] * len(ids):
        assert not {"FAILED", "CANCELLED"} & set(seen), _why(fleet, ids)
        assert time.monotonic() < deadline, _why(fleet, ids)
        time.sleep(2)
    for run_id in ids:  # completed once, by one process, never two at a time
        states = [s["type"] for s in
                  fleet.server.api("GET", f"/flow_run_states/?flow_run_id={run_id}")]
        assert states.count("COMPLETED") == 1, states
        assert submissions(fleet, run_id) == 1, (run_id, states)
        labels = fleet.server.api("GET", f"/flow_runs/{run_id}")["labels"]
        assert labels["mendflow.slot_acquired_at"] <= labels["mendflow.slot_released_at"]
        assert int(labels["mendflow.patches_accepted"]) == 2
    # the repositories' slots were given back (no lease lost with the restart)
    for url in urls:
        limit = fleet.server.api("GET", f"/v2/concurrency_limits/mendflow-repo-{repository_key(url)}")
        assert limit["active_slots"] == 0, limit
    wait_workers(fleet.server, POOL, 2)  # both workers reconnected
    status = json.loads(fleet.mendflow("fleet", "status", str(spec), "--json").stdout)["runs"]
    assert [(row["repository"], row["flow_run_id"], row["state"]) for row in status] == [
        (url, run_id, "COMPLETED") for url, run_id in zip(urls, ids, strict=True)]


def test_database_unreachable_is_a_clear_error(fleet, tmp_path):
    """Last (it stops PostgreSQL): the server answers, its database does not."""
    spec = write_fleet(tmp_path / "late.yaml", [fleet.repos[0].as_uri()])
    fleet.postgres.stop()
    started = time.monotonic()
    done = fleet.server.run(sys.executable, "-m", "mendflow.cli", "fleet", "status", str(spec),
                            "--json", check=False, timeout=300,
                            env={"PREFECT_CLIENT_MAX_RETRIES": "1"})
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert "Prefect server" in done.stderr and "database" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 240
