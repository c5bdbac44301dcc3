"""Reading back what a flow run published in Prefect."""

from __future__ import annotations


def read_artifact(key: str, wait_s: float = 30.0):
    """Read an artifact back through the Prefect client, waiting up to ``wait_s`` seconds
    for it to appear (on a loaded machine the API may record it a moment after the flow
    run's state changed); None if it never does.

    ``prefect.artifacts.Artifact.get`` sends ``offset``/``flow_runs``/``sort`` as null, which
    the Prefect 3.8.8 server (with fastapi 0.154) answers with 422; explicit values work.
    """
    import time

    deadline = time.monotonic() + wait_s
    while (found := _read_artifact(key)) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


def _read_artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        TaskRunFilter,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            flow_run_filter=FlowRunFilter(), task_run_filter=TaskRunFilter(), offset=0, limit=1,
            sort=ArtifactSort.UPDATED_DESC)
    return found[0] if found else None
