"""A real ``prefect server start`` and a served mission deployment, in subprocesses.

Everything talks to the server the way a user would: the real ``prefect`` and
``mendflow`` command lines (``python -m mendflow.cli``), and its REST API for
checks. Processes are started in their own session and their whole group is
killed at the end.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers.crash import CrashScenarios
from tests.helpers.e2e import USER_PROJECT, Served, Server, free_port, mission_config, start, stop
from tests.helpers.git import GIT_ENV, write_files
from tests.helpers.prefect_db import seed_prefect_home
from tests.helpers.prefect_env import client_env


@pytest.fixture(scope="package")
def prefect_server(tmp_path_factory) -> Server:
    """``prefect server start`` on a free loopback port, with its own PREFECT_HOME (its
    database migrated already: :func:`seed_prefect_home`).

    One for the e2e package, stopped when the worker leaves it: under ``-n 2 --dist
    loadfile`` each of the two groups of e2e files runs whole on one worker (see
    tests/helpers/schedule.py), not interleaved with other files, so one per group.
    Idle, the server polls for ~1.5-3 CPU-seconds a minute: it does not outlive its tests.
    """
    home = tmp_path_factory.mktemp("prefect-server")
    seed_prefect_home(home / "prefect")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(home / "prefect"), "PREFECT_SERVER_API_HOST": "127.0.0.1",
                "PREFECT_SERVER_API_PORT": str(port),
                "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                "PREFECT_RUNNER_POLL_FREQUENCY": "2", "MENDFLOW_HOME": str(home / "mendflow"),
                "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
                # proactive automations (the crash automation) evaluated every second, not 5
                "PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY": "PT1S", **client_env(), **GIT_ENV})
    server = Server(url=f"http://127.0.0.1:{port}/api", env=env, home=home)
    process = start([sys.executable, "-m", "prefect", "server", "start"], env,
                    home / "server.log")
    server.processes.append(process)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("prefect server did not start:\n"
                                     + (home / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def served(prefect_server: Server, tmp_path_factory) -> Iterator[Served]:
    """``python -m mendflow.deployments.serve`` serving maintenance-mission/<name> against the server.

    It serves from the working directory of a user's project that has a ``tasks.py``
    and a ``flows/`` package of its own (they raise when imported): every served flow
    run of the e2e tests shows that they cannot shadow mendflow's namespace.

    One per test module that uses it, stopped after the module: idle, its runner's polls
    and its 1 s approval-timeout sweeps cost ~3 CPU-seconds a minute, and the e2e
    modules between two that use it do not need it.
    """
    work = tmp_path_factory.mktemp("served")
    write_files(work, USER_PROJECT)
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    config = mission_config(work / "mendflow.yaml")
    process = start([sys.executable, "-m", "mendflow.deployments.serve", "--config", str(config),
                     "--name", name, "--timeout-sweep-s", "1"], prefect_server.env,
                    work / "serve.log", cwd=work)
    prefect_server.processes.append(process)
    deadline = time.monotonic() + 120
    while True:
        try:
            prefect_server.api("GET", f"/deployments/name/maintenance-mission/{name}")
            break
        except httpx.HTTPStatusError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("serve did not register the deployment:\n"
                                 + (work / "serve.log").read_text()[-3000:])
        time.sleep(0.5)
    yield Served(server=prefect_server, name=name, config=config)
    stop(process)
    prefect_server.processes.remove(process)


@pytest.fixture(scope="package")
def crash_scenarios(prefect_server: Server, tmp_path_factory) -> Iterator[CrashScenarios]:
    """The crash automations' scenarios on the package's server (tests/helpers/crash.py), not
    started yet: :meth:`CrashScenarios.start` runs them in a background thread (the e2e
    module before the crash module starts them early, tests/e2e/test_deployment_approval.py),
    :meth:`CrashScenarios.outcome` waits for their end."""
    scenarios = CrashScenarios(prefect_server, tmp_path_factory.mktemp("crash"))
    try:
        yield scenarios
    finally:
        scenarios.close()
