"""docker-compose.yml, checked structurally (Docker is not available on the test machines).

Parsed with PyYAML (merge keys resolved as Compose resolves them): the services a fleet
needs, the variable the server reads its database from, the workers' command, and the
state the workers must share (result storage, history database) or keep to themselves.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_compose_file_has_postgres_a_server_and_two_workers():
    services = _compose()["services"]
    workers = sorted(name for name in services if name.startswith("worker"))
    assert {"postgres", "server"} <= set(services) and len(workers) == 2

    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:15")
    server = services["server"]
    assert shlex.split(server["command"])[:3] == ["prefect", "server", "start"]
    database = server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert database.startswith("postgresql+asyncpg://") and "@postgres:5432/" in database
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    leases = server["environment"]["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"]
    assert leases.endswith(".filesystem")  # survives a restart (kept in a volume)
    assert any(v.endswith(":/root/.prefect") for v in server["volumes"])
    assert "healthcheck" in server and "healthcheck" in postgres

    volumes = set(_compose()["volumes"])
    homes = set()
    for name in workers:
        worker = services[name]
        command = shlex.split(worker["command"])
        assert command[:3] == ["prefect", "worker", "start"]
        assert command[command.index("--pool") + 1] == "mendflow"
        assert command[command.index("--type") + 1] == "process"
        env = worker["environment"]
        assert env["PREFECT_API_URL"] == "http://server:4200/api"
        assert env["MENDFLOW_HISTORY_URL"].startswith("postgresql+psycopg://")
        assert worker["depends_on"]["server"]["condition"] == "service_healthy"
        mounts = dict(volume.split(":", 1) for volume in worker["volumes"])
        assert mounts["results"] == env["PREFECT_LOCAL_STORAGE_PATH"]  # one shared storage
        homes.add(next(v for v, target in mounts.items() if target == env["MENDFLOW_HOME"]))
        assert "pip install" in worker["build"]["dockerfile_inline"]
    assert len(homes) == 2 and homes | {"results", "pgdata"} <= volumes  # a home per host
