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

QUIET_SERVICES = {"PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
                  "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false"}
"""The Prefect API servers of the suite that inherit this environment (the session's
harness, the temporary server of each CLI run; tests/conftest.py sets it) run without the
event persister and the triggers (and so the actions): the flow runs' events still reach
them and the task-run recorder still records every task run, but no event is written to
the events table and none is matched against automations. No test on such a server reads
events back or waits for an automation to fire: the one that reads events runs on an API
of its own (``events_api``, tests/conftest.py); the e2e servers (``prefect server start``)
are started without the suite's ``PREFECT_*`` environment and run every service (the
fleet's without the event persister: tests/e2e/test_fleet.py). Per flow run, a server's
CPU falls ~15 % (~1 CPU-second of a CLI mission's ~6 on its server, measured)."""


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
