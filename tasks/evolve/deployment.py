"""The served loop's deployment: its interval (back-off) and the cycles Prefect skipped.

Both talk to the Prefect API about the deployment the current flow run belongs to
(``prefect.runtime.deployment.id``); an ad-hoc run has none and they do nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client

from mendflow.infra.retry import transient_retries


@task(name="apply-interval", timeout_seconds=60, cache_policy=NO_CACHE, **transient_retries(2))
def apply_interval(deployment_id: str, seconds: float) -> bool:
    """Set the deployment's interval schedule(s) to ``seconds`` (the back-off); True if changed."""
    from prefect.client.schemas.schedules import IntervalSchedule

    changed = False
    with get_client(sync_client=True) as client:
        for entry in client.read_deployment_schedules(UUID(deployment_id)):
            current = getattr(entry.schedule, "interval", None)
            if current is None or abs(current.total_seconds() - seconds) < 0.5:
                continue
            client.update_deployment_schedule(
                UUID(deployment_id), entry.id,
                schedule=IntervalSchedule(interval=timedelta(seconds=seconds)))
            changed = True
    return changed


@task(name="find-skipped-cycles", timeout_seconds=60, cache_policy=NO_CACHE, **transient_retries(2))
def find_skipped(deployment_id: str, since: datetime) -> list[tuple[str, str]]:
    """Flow runs of the deployment that Prefect cancelled since ``since`` (concurrency limit 1:
    a cycle that would overlap the running one); ``[(flow run id, ISO time)]``, oldest first."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[UUID(deployment_id)])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CANCELLED])),
                expected_start_time=FlowRunFilterExpectedStartTime(after_=since)))
    found = [(str(r.id), (r.expected_start_time or r.created or since).isoformat()) for r in runs]
    return sorted(found, key=lambda x: x[1])
