"""The task that hands a measured tree's test-impact map to validation.

The map is written beside the worktree by the full test run of a tree
(:func:`~mendflow.tasks.detect.run_pytest`, a file on this host). Validation
reads it through :func:`read_impact_map`, whose result Prefect persists under the
same host-neutral cache key on every host (:data:`~mendflow.infra.caching.MISSION_STEP`):
a mission resumed on another worker (which replays the test run from the cache,
so the file is never written there) gets the map from the shared result storage
and still validates candidates with the tests that reach them.
"""

from __future__ import annotations

from prefect import task

from mendflow.core.models import ImpactMap, Sandbox
from mendflow.infra.caching import MISSION_STEP
from mendflow.infra.retry import transient_retries
from mendflow.tasks.detect.impact import impact_path, load_impact_map


@task(name="read-impact-map", timeout_seconds=300, cache_policy=MISSION_STEP,
      persist_result=True, **transient_retries(1, first_delay_s=1))
def read_impact_map(sandbox: Sandbox, tree: str) -> ImpactMap | None:
    """The test-impact map the full test run of ``tree`` recorded in ``sandbox``.

    Args:
        sandbox: the mission's sandbox (the map lives in its tool home).
        tree: the content hash of the measured tree (``git write-tree``): the key
            of the map, and of this task's cached result.

    Returns:
        The map (coverage.py contexts reduced by
        :func:`~mendflow.tasks.detect.impact.impact_map_from_coverage_json`), or
        None when that run recorded none (coverage off, an unreadable report):
        selection then runs the whole suite.
    """
    return load_impact_map(impact_path(sandbox, tree))
