"""A fleet's deployments on a work pool: ``mendflow fleet deploy --pool NAME``.

* creates the work pool (type ``process``) if it is missing;
* registers ``maintenance-mission/<pool>`` on it: the installed module
  ``mendflow.flows.mission.maintenance_mission`` as entrypoint (no pull step:
  mendflow is installed on every worker), runs sending a heartbeat every
  ``heartbeat_s`` seconds;
* installs the crash automations of that deployment
  (:mod:`mendflow.deployments.automation`): a run whose heartbeats stop (its
  worker was killed) is marked Crashed and rescheduled, and the pool's next free
  worker resumes it from its cached steps;
* with ``--fleet FILE --cron EXPR``, registers ``fleet-run/<fleet>`` on the same
  pool: a scheduled flow run that submits the fleet.

Workers are plain Prefect: ``prefect worker start --pool NAME`` on each host.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import httpx

from mendflow.core.errors import MendflowError
from mendflow.core.fleet import Fleet
from mendflow.infra.engine_limits import engine_error
from mendflow.infra.fleet_submit import deployment_name

POOL_TYPE = "process"


def ensure_work_pool(pool: str) -> bool:
    """Create the ``process`` work pool ``pool`` if it is missing.

    Returns:
        True if it was created.

    Raises:
        EngineUnavailable: the Prefect API cannot be reached.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    try:
        with get_client(sync_client=True) as client:
            try:
                client.read_work_pool(pool)
                return False
            except ObjectNotFound:
                pass
            template = ProcessWorker.get_default_base_job_template()
            try:
                client.create_work_pool(WorkPoolCreate(name=pool, type=POOL_TYPE,
                                                       base_job_template=template))
            except ObjectAlreadyExists:
                return False
            return True
    except httpx.HTTPError as err:
        raise engine_error(err, f"create the work pool {pool}") from None


def deploy_missions(pool: str, *, heartbeat_s: int = 30, auto_resume: bool = True) -> UUID:
    """Register ``maintenance-mission/<pool>`` on the pool, with its crash automations.

    Args:
        pool: the work pool (created if missing).
        heartbeat_s: the runs' heartbeat period, seconds (at least 30).
        auto_resume: reschedule runs marked Crashed (a worker died) so that another
            worker resumes them from their cached steps.

    Returns:
        The deployment's id.

    Raises:
        EngineUnavailable: the Prefect API cannot be reached.
    """
    from prefect.deployments.runner import EntrypointType

    from mendflow.deployments.automation import install_crash_automations
    from mendflow.flows.mission import maintenance_mission

    ensure_work_pool(pool)
    deployment = maintenance_mission.to_deployment(
        name=pool, tags=["mendflow"], entrypoint_type=EntrypointType.MODULE_PATH,
        description="mendflow fleet missions: one flow run per repository, submitted by "
                    "`mendflow fleet run`",
        work_pool_name=pool,
        job_variables={"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(heartbeat_s)}})
    try:
        deployment_id = deployment.apply(work_pool_name=pool)
        install_crash_automations(deployment_id, pool, heartbeat_s, auto_resume)
    except httpx.HTTPError as err:
        raise engine_error(err, f"register {deployment_name(pool)}") from None
    return deployment_id


def deploy_schedule(fleet: Fleet, pool: str, cron: str, timezone: str = "UTC") -> UUID:
    """Register ``fleet-run/<fleet>`` on the pool: it submits the fleet on the cron schedule.

    Args:
        fleet: the fleet (its content becomes the run's parameter).
        pool: the work pool of both deployments.
        cron: a cron expression (``0 3 * * *``).
        timezone: the cron's time zone.

    Returns:
        The deployment's id.

    Raises:
        FleetError: the cron expression is invalid.
        EngineUnavailable: the Prefect API cannot be reached.
    """
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.deployments.runner import EntrypointType

    from mendflow.core.errors import FleetError
    from mendflow.flows.fleet import fleet_run

    try:
        schedule = CronSchedule(cron=cron, timezone=timezone)
    except ValueError as err:
        raise FleetError(f"invalid cron expression: {err}", subject=cron,
                         hint='use five fields, for example "0 3 * * *"') from None
    deployment = fleet_run.to_deployment(
        name=fleet.name, tags=["mendflow"], entrypoint_type=EntrypointType.MODULE_PATH,
        parameters={"fleet": fleet.model_dump(mode="json"), "pool": pool},
        schedule=schedule, work_pool_name=pool,
        description=f"mendflow: submit the fleet {fleet.name} to {pool} ({cron})")
    try:
        return deployment.apply(work_pool_name=pool)
    except httpx.HTTPError as err:
        raise engine_error(err, f"register fleet-run/{fleet.name}") from None


def deploy(pool: str, *, heartbeat_s: int = 30, fleet_file: Path | None = None,
           cron: str | None = None) -> list[str]:
    """``mendflow fleet deploy``: the pool, the mission deployment, and optionally the schedule.

    Returns:
        The names of the deployments registered.

    Raises:
        FleetError: a schedule without a fleet file (or the other way round), or a bad file.
        EngineUnavailable: the Prefect API cannot be reached.
    """
    from mendflow.core.errors import FleetError
    from mendflow.core.fleet import load_fleet

    if (fleet_file is None) != (cron is None):
        raise FleetError("--fleet and --cron go together", subject="fleet deploy",
                         hint="pass both to schedule a fleet, or neither")
    fleet = load_fleet(fleet_file) if fleet_file else None
    deploy_missions(pool, heartbeat_s=heartbeat_s)
    names = [deployment_name(pool)]
    if fleet is not None and cron is not None:
        deploy_schedule(fleet, pool, cron)
        names.append(f"fleet-run/{fleet.name}")
    return names


__all__ = ["MendflowError", "deploy", "deploy_missions", "deploy_schedule", "ensure_work_pool"]
