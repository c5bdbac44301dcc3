"""Delivery to a remote: push mission branches, open pull / merge requests, keep them tidy.

Helpers: :mod:`mendflow.tasks.deliver.forge` (PyGithub / python-gitlab clients),
:mod:`mendflow.tasks.deliver.remote` (git push / fetch / revert, never forced),
:mod:`mendflow.tasks.deliver.pulls` (grouping, duplicates, limits, the PR body).
This module holds the Prefect tasks the ``evolution-cycle`` flow composes. A
forge or push failure is never raised half-way: it is returned in the task's
result (``error``), and the next cycle picks up where this one stopped (open
PRs are found again by their branch and their findings marker).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from mendflow.blocks.forge import resolve_forge_token
from mendflow.core.config import DeliveryConfig
from mendflow.core.errors import DeliveryError
from mendflow.core.models import ApprovalNeed, Contract, MissionResult
from mendflow.infra.retry import transient_retries
from mendflow.tasks.approve.build import build_approved, git_outcome
from mendflow.tasks.approve.outcome import approved_commits
from mendflow.tasks.deliver.forge import Forge, PullInfo, open_forge
from mendflow.tasks.deliver.pulls import (
    PullPlan,
    capacity,
    plan_pulls,
    render_body,
    split_duplicates,
    stale_pulls,
)
from mendflow.tasks.deliver.remote import (
    auth_env,
    build_revert,
    delete_remote_branch,
    push_branch,
    remote_url,
    sync_target,
)

__all__ = ["PullDelivery", "Remote", "check_pulls", "connect", "deliver_pulls",
           "deliver_revert", "list_open_pulls", "sync_with_remote", "update_dashboard"]

STALE_COMMENT = ("mendflow closes this pull request: the findings it fixes are no longer "
                 "present on `{branch}` (fixed or gone another way).")


class PullDelivery(Contract):
    """What one cycle did on the remote and the forge."""

    opened: tuple[PullInfo, ...] = ()
    closed: tuple[PullInfo, ...] = ()
    duplicates: tuple[str, ...] = ()
    held: tuple[str, ...] = ()
    limit: str | None = None
    open_pulls: tuple[PullInfo, ...] = ()
    pushed: tuple[str, ...] = ()
    merged: tuple[int, ...] = Field((), description="PRs merged by mendflow (full autonomy)")
    error: str | None = None
    error_reason: str | None = None


class Remote:
    """The remote end of delivery: git remote, its URL, auth env, and the forge (if any)."""

    def __init__(self, root: Path, config: DeliveryConfig):
        self.root, self.config = Path(root), config
        self.url = remote_url(self.root, config.remote) if config.remote else None
        token = resolve_forge_token(config.forge, config.token_block) if config.forge else None
        self.env = auth_env(self.url, token, config.forge)
        self.forge: Forge | None = open_forge(config, token, self.url) if token else None


def connect(root: Path, config: DeliveryConfig) -> Remote:
    """Open the remote (raises ForgeError ``no-token`` / ``invalid``)."""
    return Remote(root, config)


@task(name="sync-with-remote", timeout_seconds=300,
      cache_policy=NO_CACHE, **transient_retries(2))
def sync_with_remote(root: Path, config: DeliveryConfig, branch: str) -> str:
    """Fast-forward the local target branch to the remote's (see :func:`sync_target`).

    Returns:
        The target tip after the sync (the local tip when no remote is configured).

    Raises:
        DeliveryError: ``diverged``, ``remote-gone``, ``fetch-failed``, ``dirty-checkout``.
    """
    from mendflow.infra.gitops import rev_parse

    if not config.remote:
        return rev_parse(root, f"refs/heads/{branch}") or ""
    env = auth_env(remote_url(root, config.remote), _token_or_none(config), config.forge)
    return sync_target(root, config.remote, branch, env)


def _token_or_none(config: DeliveryConfig):
    if not config.forge:
        return None
    try:
        return resolve_forge_token(config.forge, config.token_block)
    except DeliveryError:
        return None


def _remote_has(remote: Remote, branch: str) -> bool:
    status, out, _ = git_outcome(remote.root, "ls-remote", "--heads", remote.config.remote or "",
                                 f"refs/heads/{branch}", env=remote.env)
    return status == 0 and bool(out.strip())


def _open_one(remote: Remote, result: MissionResult, plan: PullPlan, target: str,
              body: str, approver: str, work_parent: Path) -> PullInfo | None:
    """Push one plan's branch (unless a resumed cycle pushed it already) and open its PR."""
    if not _remote_has(remote, plan.branch):
        commits = approved_commits(result, plan.patch_ids)
        built = build_approved(remote.root, result.base_commit, commits,
                               [("Approved-by", approver)], work_parent)
        push_branch(remote.root, remote.config.remote or "", built[-1].commit or "",
                    plan.branch, remote.env)
    if remote.forge is None:
        return None
    return remote.forge.open_pull(plan.branch, target, plan.title, body, remote.config.labels)


@task(name="deliver-pull-requests", retries=0, timeout_seconds=900, cache_policy=NO_CACHE)
def deliver_pulls(result: MissionResult, approved: Sequence[str], needs: Sequence[ApprovalNeed],
                  approver: str, config: DeliveryConfig, target: str, opened_at: Sequence[str],
                  work_parent: Path, merge: bool = False) -> PullDelivery:
    """Close stale PRs, then push and open the cycle's new PRs within the limits.

    Args:
        result: the cycle's mission result (its ``findings`` are the target tip's).
        approved: approved patch ids.
        needs: the approval assessment (shown in the PR body).
        approver: who approved (the ``Approved-by`` trailer).
        config: the ``delivery`` section.
        target: the target branch (the PRs' base).
        opened_at: ISO times of PRs opened before (for ``max_prs_per_hour``).
        work_parent: where temporary worktrees go (under the state dir).
        merge: full autonomy: merge each PR once opened.

    Returns:
        A :class:`PullDelivery`; a failure is in ``error`` / ``error_reason``
        (what was done before it stands and is found again next cycle).
    """
    logger = get_run_logger()
    done: dict[str, list] = {"opened": [], "closed": [], "pushed": [], "held": [], "dupes": [],
                             "merged": []}
    open_pulls: list[PullInfo] = []
    limit = None
    try:
        remote = connect(Path(result.repository), config)
        if remote.forge is not None:
            open_pulls = _close_stale(remote, result, target, done["closed"])
        new, dupes = split_duplicates(plan_pulls(result, approved, config.group), open_pulls)
        done["dupes"] = [i for p in dupes for i in p.patch_ids]
        room, limit = capacity(len(open_pulls), opened_at, config.max_open_prs,
                               config.max_prs_per_hour, datetime.now(timezone.utc), len(new))
        if remote.forge is None:
            room, limit = len(new), None
        done["held"] = [i for p in new[room:] for i in p.patch_ids]
        limit = limit if done["held"] else None
        if done["held"]:
            logger.warning("delivery limit: %s; %d patch(es) wait: %s", limit,
                           len(done["held"]), ", ".join(done["held"]))
        for plan in new[:room]:
            body = render_body(result, plan, needs, approver)
            pull = _open_one(remote, result, plan, target, body, approver, work_parent)
            done["pushed"].append(plan.branch)
            if pull is not None:
                done["opened"].append(pull)
                open_pulls.append(pull)
                logger.info("opened PR #%d %s (%s)", pull.number, pull.url, plan.branch)
                if merge and remote.forge is not None:
                    remote.forge.merge_pull(pull.number)
                    done["merged"].append(pull.number)
                    open_pulls.remove(pull)
                    logger.info("merged PR #%d (full autonomy)", pull.number)
    except DeliveryError as err:
        logger.warning("delivery stopped: %s", err)
        return _delivery(done, open_pulls, limit, error=str(err).splitlines()[0],
                         reason=err.reason)
    return _delivery(done, open_pulls, limit)


def _close_stale(remote: Remote, result: MissionResult, target: str,
                 closed: list[PullInfo]) -> list[PullInfo]:
    """Close the open PRs whose findings are gone (a comment; their branch deleted);
    return the PRs still open. Closed ones are appended to ``closed``."""
    assert remote.forge is not None
    config = remote.config
    open_pulls = remote.forge.list_pulls(config.labels[0] if config.labels else "mendflow",
                                         "open")
    for pull in stale_pulls(open_pulls, {f.id for f in result.findings}):
        remote.forge.close_pull(pull.number, STALE_COMMENT.format(branch=target))
        delete_remote_branch(remote.root, config.remote or "", pull.head, remote.env)
        closed.append(pull)
        get_run_logger().info("closed stale PR #%d (%s)", pull.number, pull.head)
    return [p for p in open_pulls if p not in closed]


def _delivery(done: dict, open_pulls: list, limit: str | None, error: str | None = None,
              reason: str | None = None) -> PullDelivery:
    return PullDelivery(opened=tuple(done["opened"]), closed=tuple(done["closed"]),
                        pushed=tuple(done["pushed"]), held=tuple(done["held"]),
                        duplicates=tuple(done["dupes"]), limit=limit,
                        merged=tuple(done["merged"]),
                        open_pulls=tuple(open_pulls), error=error, error_reason=reason)


@task(name="list-open-pull-requests", timeout_seconds=120,
      cache_policy=NO_CACHE, **transient_retries(1))
def list_open_pulls(root: Path, config: DeliveryConfig) -> list[PullInfo]:
    """mendflow's open pull requests on the forge (those carrying the first label).

    Raises:
        ForgeError: the forge failed (auth, not found, unavailable, timeout).
    """
    if not config.forge:
        return []
    remote = connect(root, config)
    if remote.forge is None:
        return []
    return remote.forge.list_pulls(config.labels[0] if config.labels else "mendflow", "open")


@task(name="check-pull-requests", retries=0, timeout_seconds=300,
      cache_policy=NO_CACHE)
def check_pulls(root: Path, config: DeliveryConfig, numbers: Sequence[int]) -> dict[int, str]:
    """The state (open | closed | merged) of PRs opened by earlier cycles (forge API)."""
    if not numbers or not config.forge:
        return {}
    remote = connect(root, config)
    assert remote.forge is not None
    return {n: remote.forge.get_pull(n).state for n in numbers}


@task(name="deliver-revert", retries=0, timeout_seconds=600, cache_policy=NO_CACHE)
def deliver_revert(root: Path, config: DeliveryConfig, target: str, tip: str, culprit: str,
                   reason: str, work_parent: Path, direct: bool) -> tuple[str, str | None]:
    """Revert ``culprit`` on ``target``: a revert commit in a PR, or pushed directly (``direct``).

    Returns:
        ``(revert commit sha, PR url or None)``.

    Raises:
        DeliveryError: the revert conflicts, the push was refused, the forge failed.
    """
    commit = build_revert(root, tip, culprit, reason, work_parent)
    remote = connect(root, config)
    branch = f"mendflow/revert-{culprit[:10]}"
    if direct or not config.remote:
        from mendflow.tasks.approve.merge import _checkout_of, _move_target

        ref = f"refs/heads/{target}"
        _move_target(root, ref, tip, commit, _checkout_of(root, ref),
                     f"mendflow evolve: revert {culprit[:10]}")
        if config.remote:
            push_branch(root, config.remote, commit, target, remote.env)
        return commit, None
    if not _remote_has(remote, branch):
        push_branch(root, config.remote, commit, branch, remote.env)
    if remote.forge is None:
        return commit, None
    label = config.labels[0] if config.labels else "mendflow"
    opened = [p for p in remote.forge.list_pulls(label, "open") if p.head == branch]
    if opened:  # a resumed cycle (a suspended run re-runs from the top) proposed it already
        return commit, opened[0].url
    body = (f"mendflow's post-merge watch found that `{culprit[:10]}` (delivered by mendflow) "
            f"is the first bad commit: {reason}\n\nThis reverts it.\n\n"
            f"<!-- mendflow:revert {culprit} -->")
    pull = remote.forge.open_pull(branch, target, f"Revert {culprit[:10]}: {reason[:60]}",
                                  body, config.labels)
    return commit, pull.url


@task(name="update-dashboard", timeout_seconds=120,
      cache_policy=NO_CACHE, **transient_retries(1))
def update_dashboard(root: Path, config: DeliveryConfig, title: str, body: str) -> str | None:
    """Create or update the tracking issue (``delivery.dashboard``); its URL, or None."""
    if not config.dashboard or not config.forge:
        return None
    remote = connect(root, config)
    assert remote.forge is not None
    return remote.forge.upsert_issue(title, body, config.labels[0] if config.labels else
                                     "mendflow")
