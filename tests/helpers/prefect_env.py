"""Test-only Prefect settings that every process of the suite inherits.

Each Prefect API client (``get_client()``: one per flow run, task run, API call of the
engine) builds an ``ssl.SSLContext`` loading ``PREFECT_API_SSL_CERT_FILE``, by default
certifi's whole CA bundle: ~36 ms of CPU per client, ~10 % of a flow-running process's
CPU in the suite (py-spy, tests/flows/test_evolution.py). Every Prefect API of the suite
is plain HTTP on loopback, where no certificate is ever read, so the suite points the
setting at a PEM holding one certificate (of certifi's bundle): ~0.7 ms per client.
"""

from __future__ import annotations

import os
from pathlib import Path

CERT_FILE = "PREFECT_API_SSL_CERT_FILE"

QUIET_SERVICES = {"PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED": "false",
                  "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
                  "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false"}
"""The Prefect API servers of the suite that inherit this environment (the session's
harness, the temporary server of each CLI run; tests/conftest.py sets it) run without the
services that turn the flow runs' events into rows: the task-run recorder (task runs and
their states), the event persister (the events table) and the triggers (and so the
actions: automations). The flow runs, their states, artifacts, variables and concurrency
slots are written by API calls and stay; the events still reach the server. No test on
such a server reads task runs or events back or waits for an automation to fire; those
that do run on an API with every service (``recording_api`` and ``events_api``,
tests/conftest.py; ``cli_env`` of tests/cli/test_ctrl_c.py). The e2e servers (``prefect
server start``) are started without the suite's ``PREFECT_*`` environment and run every
service (the fleet's without the event persister: tests/e2e/test_fleet.py).

Measured (CPU-seconds, py-spy and /proc): the recorder writes a row and a state per task
run event, ~250 events and ~2.5 CPU-seconds of the server per mission; with the persister
and the triggers, ~60 % of a harness server's CPU per mission (tests/flows/
test_mission_llm.py: 105 -> 64 CPU-seconds, its server's 53 -> 20)."""


def one_certificate_pem(directory: Path) -> Path:
    """Write ``directory/one-ca.pem``: the first certificate of certifi's CA bundle.

    Returns:
        The file's path.
    """
    import certifi

    bundle = Path(certifi.where()).read_text(encoding="ascii")
    end = "-----END CERTIFICATE-----"
    start = bundle.index("-----BEGIN CERTIFICATE-----")
    path = directory / "one-ca.pem"
    path.write_text(bundle[start:bundle.index(end, start) + len(end)] + "\n", encoding="ascii")
    return path


def client_env() -> dict[str, str]:
    """The suite's Prefect client settings, for an environment built without ``PREFECT_*``
    (a server's or a CLI's of its own); empty outside the suite."""
    return {CERT_FILE: os.environ[CERT_FILE]} if CERT_FILE in os.environ else {}
