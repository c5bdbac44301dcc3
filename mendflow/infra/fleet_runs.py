"""Missions as Prefect flow runs: tags to find them, labels to describe them (from any host).

A fleet mission's flow run carries the tags ``mendflow``, ``fleet:<name>`` and
``repo:<repository key>`` (set when ``mendflow fleet run`` submits it), and the
mission writes labels on it (``PATCH /flow_runs/{id}/labels``)::

    mendflow.repository       the URL
    mendflow.branch           the branch
    mendflow.mission_id       m-20261201-1712-3f9a1c2b
    mendflow.status           completed | awaiting_approval | failed | paused
    mendflow.quality_before   0-100
    mendflow.quality_score    0-100 (after)
    mendflow.patches_accepted N
    mendflow.slot_acquired_at / mendflow.slot_released_at   when it held its repository (ISO 8601)

So the mission registry is the server's flow runs: ``mendflow fleet status`` and
``mendflow mission list`` read it from any host.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
from pydantic import BaseModel, ConfigDict

from mendflow.core.models import MissionResult
from mendflow.infra.engine_limits import engine_error, ride_out_outage

MISSION_FLOW = "maintenance-mission"
TAG = "mendflow"
LABEL = "mendflow."


def fleet_tag(name: str) -> str:
    """The tag of a fleet's flow runs."""
    return f"fleet:{name}"


def repository_tag(key: str) -> str:
    """The tag of a repository's flow runs."""
    return f"repo:{key}"


def mission_labels(url: str, branch: str, result: MissionResult | None,
                   mission_id: str | None = None) -> dict[str, str | int | float]:
    """The labels that describe a mission on its flow run."""
    labels: dict[str, str | int | float] = {f"{LABEL}repository": url, f"{LABEL}branch": branch}
    if mission_id:
        labels[f"{LABEL}mission_id"] = mission_id
    if result is not None:
        labels.update({
            f"{LABEL}mission_id": result.mission_id, f"{LABEL}status": result.status,
            f"{LABEL}quality_before": result.quality_score.before,
            f"{LABEL}quality_score": result.quality_score.after,
            f"{LABEL}patches_accepted": sum(1 for p in result.patches if p.status == "accepted")})
    return labels


def label_flow_run(flow_run_id: str, labels: dict[str, Any]) -> None:
    """Merge ``labels`` into a flow run's labels.

    Raises:
        EngineUnavailable: the Prefect API stayed unreachable for
            :data:`~mendflow.infra.engine_limits.OUTAGE_S` seconds.
    """
    from prefect.client.orchestration import get_client

    def update() -> None:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(UUID(flow_run_id), labels)

    ride_out_outage(update, "label the flow run")  # a server restarted mid-fleet is waited for


class RunSummary(BaseModel):
    """One mission flow run as the server knows it (``fleet run --wait`` / ``fleet status``).

    Attributes:
        repository: the repository URL (from the labels, else the run's parameters).
        flow_run_id: the flow run.
        state: its state type (``COMPLETED``, ``RUNNING``, ``CRASHED``, ...).
        state_name: its state name (``Completed``, ``Suspended``, ``AwaitingRetry``, ...).
        mission_id: the mission (None before the mission started).
        quality_score: the score after the mission, 0-100 (None until it finished).
        patches_accepted: accepted patches (None until it finished).
        started: ISO 8601 start time (None if not started).
        message: the state's message (why a run failed).
    """

    model_config = ConfigDict(frozen=True)

    repository: str
    flow_run_id: str
    state: str
    state_name: str | None = None
    mission_id: str | None = None
    quality_score: float | None = None
    patches_accepted: int | None = None
    started: str | None = None
    message: str | None = None

    @classmethod
    def of(cls, run: Any) -> RunSummary:
        """The summary of a Prefect ``FlowRun``."""
        labels = dict(run.labels or {})
        score = labels.get(f"{LABEL}quality_score")
        accepted = labels.get(f"{LABEL}patches_accepted")
        return cls(
            repository=str(labels.get(f"{LABEL}repository") or run.parameters.get("url")
                           or run.parameters.get("path") or ""),
            flow_run_id=str(run.id), state=run.state.type.value if run.state else "UNKNOWN",
            state_name=run.state.name if run.state else None,
            mission_id=labels.get(f"{LABEL}mission_id"),
            quality_score=float(score) if score is not None else None,
            patches_accepted=int(accepted) if accepted is not None else None,
            started=run.start_time.isoformat() if run.start_time else None,
            message=(run.state.message or None) if run.state else None)


def read_runs(client: Any, tags: list[str], limit: int = 200) -> list[Any]:
    """Mission flow runs carrying every tag of ``tags``, newest first (up to ``limit``).

    Args:
        client: a synchronous Prefect client.
        tags: tags the runs must all carry.
        limit: at most this many runs.

    Returns:
        Prefect ``FlowRun`` objects.
    """
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort

    return client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[MISSION_FLOW])),
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=tags)),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=limit)


def read_summaries(flow_run_ids: list[str]) -> list[RunSummary]:
    """The summaries of the given flow runs (in that order).

    Raises:
        EngineUnavailable: the Prefect API cannot be reached.
    """
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            return [RunSummary.of(client.read_flow_run(UUID(i))) for i in flow_run_ids]
    except httpx.HTTPError as err:
        raise engine_error(err, "read the flow runs") from None


def latest_by_repository(fleet: str | None, keys: list[str]) -> dict[str, RunSummary | None]:
    """Each repository's latest mission flow run (of any fleet, or of ``fleet`` when given).

    Args:
        fleet: a fleet name to restrict to, or None.
        keys: repository keys.

    Returns:
        ``{key: summary or None}``.

    Raises:
        EngineUnavailable: the Prefect API cannot be reached.
    """
    from prefect.client.orchestration import get_client

    found: dict[str, RunSummary | None] = {}
    try:
        with get_client(sync_client=True) as client:
            for key in keys:
                tags = [TAG, repository_tag(key)] + ([fleet_tag(fleet)] if fleet else [])
                runs = read_runs(client, tags, limit=1)
                found[key] = RunSummary.of(runs[0]) if runs else None
    except httpx.HTTPError as err:
        raise engine_error(err, "read the flow runs") from None
    return found
