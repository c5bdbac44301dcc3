"""Submitting a fleet to a work pool, and waiting for it (Prefect's ``run_deployment``).

One flow run of the pool's mission deployment (``maintenance-mission/<pool>``,
registered by ``mendflow fleet deploy --pool <pool>``) per repository, tagged
``mendflow``, ``fleet:<name>`` and ``repo:<key>``. The server queues them; the
pool's workers run them; the concurrency limits (:mod:`mendflow.infra.engine_limits`)
keep one mission per repository and the fleet's ``concurrent_missions``.
"""

from __future__ import annotations

import time
from uuid import UUID

import httpx
from pydantic import BaseModel, ConfigDict

from mendflow.core.errors import FleetError
from mendflow.core.fleet import Fleet
from mendflow.infra.engine_limits import engine_error, ensure_limit, fleet_limit
from mendflow.infra.fleet_runs import (
    MISSION_FLOW,
    TAG,
    RunSummary,
    fleet_tag,
    read_summaries,
    repository_tag,
)
from mendflow.infra.flow_runs import CRASH_MARK

_FINAL = {"COMPLETED", "FAILED", "CANCELLED", "PAUSED"}


def deployment_name(pool: str) -> str:
    """The mission deployment of a work pool: ``maintenance-mission/<pool>``."""
    return f"{MISSION_FLOW}/{pool}"


class Submitted(BaseModel):
    """A repository's flow run, as submitted."""

    model_config = ConfigDict(frozen=True)

    repository: str
    flow_run_id: str


def submit_fleet(fleet: Fleet, pool: str) -> list[Submitted]:
    """Create one mission flow run per repository on the pool's deployment (not waiting).

    Args:
        fleet: the fleet.
        pool: the work pool (its deployment ``maintenance-mission/<pool>``).

    Returns:
        The submitted runs, in the fleet's order.

    Raises:
        FleetError: the pool has no mission deployment (run ``mendflow fleet deploy``).
        EngineUnavailable: the Prefect API cannot be reached or failed.
    """
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    ensure_limit(fleet_limit(fleet.name), fleet.limits.concurrent_missions, update=True)
    submitted = []
    try:
        for repository in fleet.repositories:
            run = run_deployment(
                deployment_name(pool), timeout=0, as_subflow=False,
                flow_run_name=f"{fleet.name}/{repository.key}",
                tags=[TAG, fleet_tag(fleet.name), repository_tag(repository.key)],
                parameters={"url": repository.url, "branch": repository.branch,
                            "fleet": fleet.name,
                            "config_overrides": fleet.repository_config(repository) or None})
            submitted.append(Submitted(repository=repository.url, flow_run_id=str(run.id)))
    except ObjectNotFound:
        raise FleetError(f"the work pool {pool!r} has no mission deployment",
                         subject=deployment_name(pool),
                         hint=f"run `mendflow fleet deploy --pool {pool}` first") from None
    except httpx.HTTPError as err:
        raise engine_error(err, f"submit the fleet ({len(submitted)} of "
                                f"{len(fleet.repositories)} runs were submitted)") from None
    return submitted


def is_final(summary: RunSummary) -> bool:
    """Has the run stopped for good (or paused for an approval)?

    A run the crash automation marked Crashed is not: it is being rescheduled.
    """
    if summary.state == "CRASHED":
        return not (summary.message or "").endswith(CRASH_MARK)
    return summary.state in _FINAL


def wait_for_runs(flow_run_ids: list[str], *, poll_s: float = 2.0,
                  timeout_s: float | None = None) -> list[RunSummary]:
    """Poll the server until every run is final (:func:`is_final`).

    Args:
        flow_run_ids: the runs.
        poll_s: seconds between polls.
        timeout_s: stop waiting after this many seconds (None: no limit).

    Returns:
        The runs' summaries (in the given order), as last seen.

    Raises:
        EngineUnavailable: the server stayed unreachable for 5 minutes.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    outage_since: float | None = None
    while True:
        try:
            summaries = read_summaries(flow_run_ids)
            outage_since = None
        except Exception as err:  # the server restarting: keep waiting a while
            outage_since = outage_since or time.monotonic()
            if time.monotonic() - outage_since > 300:
                raise err
            time.sleep(poll_s)
            continue
        if all(is_final(s) for s in summaries):
            return summaries
        if deadline is not None and time.monotonic() > deadline:
            return summaries
        time.sleep(poll_s)


def state_history(flow_run_id: str) -> list[tuple[str, str]]:
    """A flow run's states, oldest first: ``[(type, ISO timestamp), ...]``."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            states = client.read_flow_run_states(UUID(flow_run_id))
    except httpx.HTTPError as err:
        raise engine_error(err, "read the flow run's states") from None
    return [(s.type.value, s.timestamp.isoformat()) for s in states]
