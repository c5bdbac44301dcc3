"""``mendflow fleet deploy``: the process work pool, the mission deployment on it (module
entrypoint, heartbeats, crash automations) and the scheduled fleet (Prefect test harness)."""

from __future__ import annotations

import pytest

from mendflow.core.errors import FleetError
from mendflow.core.fleet import parse_fleet
from mendflow.deployments.automation import crash_name, resume_name
from mendflow.deployments.fleet import deploy_missions, deploy_schedule, ensure_work_pool

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_deploy_creates_the_pool_and_the_mission_deployment():
    from prefect.client.orchestration import get_client

    deployment_id = deploy_missions("fleet-pool-t")
    assert ensure_work_pool("fleet-pool-t") is False  # already there: left alone
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool("fleet-pool-t")
        deployment = client.read_deployment(deployment_id)
        automations = [a.name for a in client.read_automations()]
    assert pool.type == "process"
    assert deployment.name == "fleet-pool-t" and deployment.work_pool_name == "fleet-pool-t"
    assert deployment.entrypoint == "mendflow.flows.mission.maintenance_mission"
    assert not deployment.pull_steps
    assert deployment.job_variables["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"
    assert {crash_name("fleet-pool-t"), resume_name("fleet-pool-t")} <= set(automations)


def test_scheduled_fleet_carries_the_fleet_and_its_cron():
    from prefect.client.orchestration import get_client

    fleet = parse_fleet({"repositories": [{"url": "https://example.org/a.git"}]},
                        source="t", default_name="nightly")
    ensure_work_pool("fleet-pool-s")
    deployment_id = deploy_schedule(fleet, "fleet-pool-s", "0 3 * * *")
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(deployment_id)
    assert deployment.entrypoint == "mendflow.flows.fleet.fleet_run"
    assert deployment.parameters["pool"] == "fleet-pool-s"
    assert parse_fleet(deployment.parameters["fleet"], source="t") == fleet
    assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * *"]


def test_invalid_cron_is_a_fleet_error():
    fleet = parse_fleet({"repositories": [{"url": "a"}]}, source="t")
    with pytest.raises(FleetError, match="cron"):
        deploy_schedule(fleet, "fleet-pool-s", "every night")


def test_a_server_with_leases_in_memory_is_warned_about():
    """Prefect's default lease storage forgets held slots on a restart (the e2e fleet test's
    server persists them and gets no warning)."""
    from mendflow.infra.engine_limits import LEASE_STORAGE_ENV, lease_storage_warning

    warning = lease_storage_warning()
    assert warning is not None and LEASE_STORAGE_ENV in warning and "restart" in warning
