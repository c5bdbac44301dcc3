"""Tests of mendflow.infra.prefect_api: the temporary Prefect API server started early.

Each case runs in a fresh Python process (Prefect must not be imported before
the spawn), against a real ``uvicorn`` Prefect server on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import psutil
import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""
    import json, os, sys
    from mendflow.infra.prefect_api import spawn_server
    server = spawn_server()
    if sys.argv[1] == "profile-names-a-server":
        os.environ["PREFECT_API_URL"] = "http://127.0.0.1:9/api"  # as a profile would
    adopted = server.adopt()
    out = {"pid": server.process.pid, "port": server.port, "adopted": adopted,
           "alive_after_adopt": server.process.poll() is None}
    if adopted:
        from prefect.client.orchestration import get_client
        with get_client(sync_client=True) as client:
            out["api_url"] = str(client.api_url)
            out["health"] = client.api_healthcheck() is None
    print(json.dumps(out))
""")


def run_script(tmp_path, case: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")  # a busy machine
    proc = subprocess.run([sys.executable, "-c", SCRIPT, case], env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_early_server_becomes_prefects_own_and_stops_at_exit(tmp_path):
    out = run_script(tmp_path, "ephemeral")
    assert out["adopted"] is True and out["alive_after_adopt"] is True
    assert out["api_url"].startswith(f"http://127.0.0.1:{out['port']}/api")
    assert out["health"] is True
    assert not psutil.pid_exists(out["pid"]) or \
        psutil.Process(out["pid"]).status() == psutil.STATUS_ZOMBIE  # stopped at exit


def test_a_configured_api_url_stops_the_early_server(tmp_path):
    out = run_script(tmp_path, "profile-names-a-server")
    assert out["adopted"] is False and out["alive_after_adopt"] is False
    assert "api_url" not in out


def test_no_early_server_when_the_environment_names_an_api(monkeypatch):
    from mendflow.infra.prefect_api import spawn_server

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert spawn_server() is None


def test_settling_waits_for_a_quiet_count_and_gives_up_on_a_dead_server(prefect_harness):
    """The exit-time wait for the server's recorder: it returns once the count of task runs
    stays the same for ``quiet_s``, and at once when no server answers."""
    import socket
    import time

    from prefect.settings import PREFECT_API_URL

    from mendflow.infra.prefect_api import settle_records

    started = time.monotonic()
    assert settle_records(PREFECT_API_URL.value(), timeout_s=30, quiet_s=0.5)
    assert 0.5 <= time.monotonic() - started < 30
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert not settle_records(f"http://127.0.0.1:{port}/api", timeout_s=30)
