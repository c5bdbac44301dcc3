"""Fleet tasks: a worker's own clone of the repository, pushing the mission branch back, and
recording the mission on its flow run (labels) so that any host can read it from the server."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mendflow.core.models import MissionResult
from mendflow.infra.clones import push_branch, sync_clone
from mendflow.infra.fleet_runs import label_flow_run, mission_labels

_TRANSIENT = ("could not resolve host", "connection", "timed out", "timeout", "early eof",
              "the remote end hung up", "http 5", "error: 5", "temporarily")


def retry_if_network(task, task_run, state) -> bool:
    """Prefect retry condition: retry a clone or push only when git's words sound like the
    network (a missing repository or branch, or a refused push, will not get better)."""
    try:
        state.result()
    except Exception as error:  # the task's exception, re-raised by Prefect
        text = str(error).lower()
        return any(word in text for word in _TRANSIENT)
    return False


@task(name="clone-repository", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_if_network, timeout_seconds=1800)
def clone_repository(url: str, branch: str, state_root: Path) -> Path:
    """Clone (or fetch) ``url`` into this host's cache and check ``branch`` out (:func:`sync_clone`).

    Args:
        url: the repository's git URL or path.
        branch: the branch to maintain.
        state_root: the state directory (``StateLayout.root``).

    Returns:
        The clone's directory.

    Raises:
        CloneError: the URL cannot be cloned or the branch is missing (after the retries).
    """
    path = sync_clone(url, branch, state_root)
    get_run_logger().info("repository %s (%s) at %s", url, branch, path)
    return path


@task(name="push-mission-branch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_if_network, timeout_seconds=1800)
def push_mission_branch(clone: Path, result: MissionResult) -> str | None:
    """Push the mission branch to the repository's remote (never forced), if it has commits.

    Args:
        clone: the worker's clone (the mission's repository).
        result: the mission's result (its ``branch`` and ``base_commit``).

    Returns:
        The pushed commit, or None when there was nothing to push (no accepted
        patch, a dry run, a backup-only mission).

    Raises:
        CloneError: the remote refused the push or cannot be reached.
    """
    if result.dry_run or result.backup_only or not any(
            patch.status == "accepted" for patch in result.patches):
        return None
    tip = push_branch(clone, result.branch)
    get_run_logger().info("pushed %s at %s", result.branch, tip)
    return tip


@task(name="record-mission-labels", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def record_mission_labels(flow_run_id: str | None, url: str, branch: str,
                          result: MissionResult | None = None, mission_id: str | None = None) -> None:
    """Label the flow run with the mission (``mendflow.*`` keys; see :func:`mission_labels`).

    Args:
        flow_run_id: the mission's flow run (None: not on a Prefect API; nothing to do).
        url: the repository's URL.
        branch: its branch.
        result: the finished mission's result, or None at the start.
        mission_id: the mission id (at the start, before a result exists).
    """
    if flow_run_id:
        label_flow_run(flow_run_id, mission_labels(url, branch, result, mission_id))


@task(name="record-slot", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def record_slot(flow_run_id: str | None, event: str) -> None:
    """Label the flow run with when it took or gave back its repository's slot
    (``mendflow.slot_acquired_at`` / ``mendflow.slot_released_at``, ISO 8601 UTC): the
    server's own record that no two missions held one repository at once.

    Args:
        flow_run_id: the mission's flow run (None: nothing to do).
        event: ``acquired`` or ``released``.
    """
    if flow_run_id:
        label_flow_run(flow_run_id, {f"mendflow.slot_{event}_at":
                                     datetime.now(timezone.utc).isoformat()})
