"""The scheduled fleet: one flow run that submits a fleet's missions to a work pool.

``mendflow fleet deploy --pool NAME --fleet fleet.yaml --cron "0 3 * * *"`` deploys it
(``fleet-run/<fleet>``) with the fleet's content as a parameter, so that the
worker that runs it needs no copy of the file.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from mendflow.core.fleet import parse_fleet
from mendflow.infra.fleet_submit import submit_fleet


@flow(name="fleet-run", log_prints=False)
def fleet_run(fleet: dict[str, Any], pool: str) -> list[dict[str, str]]:
    """Submit one mission flow run per repository of ``fleet`` to ``pool`` (not waiting).

    Args:
        fleet: the content of a ``fleet.yaml`` (with its ``name``).
        pool: the work pool whose mission deployment runs the missions.

    Returns:
        ``[{"repository": URL, "flow_run_id": ID}, ...]``.

    Raises:
        FleetError: the fleet is invalid or the pool has no mission deployment.
    """
    spec = parse_fleet(fleet, source="the fleet-run parameters")
    submitted = submit_fleet(spec, pool)
    get_run_logger().info("fleet %s: %d missions submitted to %s", spec.name, len(submitted), pool)
    return [run.model_dump() for run in submitted]
