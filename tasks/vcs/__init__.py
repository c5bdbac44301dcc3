"""The VCS stage: find the target repository, guard the user's checkout, commit, roll back.

mendflow works on the *committed* HEAD of the user's repository; uncommitted
changes in the user's checkout are not part of a mission (they are reported
with a warning and left alone). Every change happens in a sandbox worktree on
branch ``mendflow/<mission-id>``; :func:`snapshot_checkout` and
:func:`verify_checkout` prove the user's status, branches, tags and HEAD did
not move.

Each accepted patch becomes one commit whose message ends with the trailers
``Mendflow-Patch: <patch id>`` and ``Mendflow-Mission: <mission id>``; that
makes :func:`commit_patch` idempotent (a re-run after a crash finds the commit).
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mendflow.core.models import CheckoutSnapshot, CommitRecord, Patch, RepoTarget, Sandbox
from mendflow.infra.gitops import base_ref, check_mission_id, mission_branch, retry_on_sandbox_error
from mendflow.infra.retry import transient_retries
from mendflow.tasks.vcs.commit import commit_message, commit_patch, find_patch_commit, identity_env
from mendflow.tasks.vcs.repository import (
    ScopeName,
    resolve_repository,
    snapshot_checkout,
    uncommitted_changes,
    verify_checkout,
)
from mendflow.tasks.vcs.rollback import rollback_mission

__all__ = [
    "ScopeName", "base_ref", "check_mission_id", "commit_accepted_patch", "commit_message",
    "commit_patch", "find_patch_commit", "identity_env", "mission_branch", "resolve_repository",
    "resolve_target", "rollback_mission", "snapshot_user_checkout", "snapshot_checkout",
    "uncommitted_changes", "verify_user_checkout", "verify_checkout",
]


# --- Prefect tasks --------------------------------------------------------------------


@task(name="resolve-target", retries=0, timeout_seconds=120, cache_policy=NO_CACHE)
def resolve_target(path: str | Path, scope: ScopeName = "auto") -> RepoTarget:
    """Prefect task around :func:`resolve_repository`; warns about uncommitted changes."""
    target = resolve_repository(path, scope)
    dirty = uncommitted_changes(target.root)
    if dirty:
        get_run_logger().warning(
            "%d uncommitted change(s) in %s are not part of the mission (it works on the "
            "committed HEAD %s)", len(dirty), target.root, target.head_commit[:12])
    return target


@task(name="snapshot-user-checkout", timeout_seconds=300,
      cache_policy=NO_CACHE, **transient_retries(1))
def snapshot_user_checkout(root: Path) -> CheckoutSnapshot:
    """Prefect task around :func:`snapshot_checkout`."""
    return snapshot_checkout(root)


@task(name="verify-user-checkout", retries=0, timeout_seconds=300, cache_policy=NO_CACHE)
def verify_user_checkout(root: Path, before: CheckoutSnapshot) -> None:
    """Prefect task around :func:`verify_checkout`."""
    verify_checkout(root, before)


@task(name="commit-accepted-patch", timeout_seconds=300,  cache_policy=NO_CACHE,
      **transient_retries(2, condition=retry_on_sandbox_error))
def commit_accepted_patch(sandbox: Sandbox, patch: Patch, summary: str,
                          backups_dir: Path, date: str | None = None) -> CommitRecord:
    """Prefect task around :func:`commit_patch` (idempotent, so retries are safe)."""
    return commit_patch(sandbox, patch, summary, backups_dir, date)
