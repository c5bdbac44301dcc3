"""The evolution dashboard: one tracking issue on the forge and a Prefect markdown artifact.

Both hold the same markdown (:func:`render_dashboard`): the open pull requests,
the pending approvals (flow runs of this repository paused until a human answers,
from the Prefect API), the regressions, and what waits behind a delivery limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from mendflow.core.evolution import CycleRecord
from mendflow.core.models import MissionResult
from mendflow.infra.approvals import WaitingRun, list_waiting
from mendflow.infra.retry import transient_retries
from mendflow.tasks.deliver.forge import PullInfo

__all__ = ["PendingApproval", "find_pending_approvals", "render_dashboard", "waiting_request"]

PendingApproval = WaitingRun
"""A flow run waiting for approval (see :class:`mendflow.infra.approvals.WaitingRun`)."""


def _same_repository(a: str | None, b: str) -> bool:
    if not a:
        return False
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (OSError, RuntimeError):
        return a == b


@task(name="find-pending-approvals", timeout_seconds=60, cache_policy=NO_CACHE,
      **transient_retries(1))
def find_pending_approvals(repository: str) -> list[PendingApproval]:
    """The flow runs (missions, evolution cycles) of ``repository`` that wait for approval.

    Args:
        repository: the repository root (compared with each run's request or ``path``).

    Returns:
        The waiting runs from the Prefect API (state Paused or Suspended), oldest first.
    """
    return [w for w in list_waiting() if _same_repository(w.repository, repository)]


def waiting_request(run_id: str | None, run_name: str, result: MissionResult,
                    patches: int) -> PendingApproval:
    """This cycle's own wait, shown on the dashboard just before the run pauses."""
    return PendingApproval(run_id=run_id or "?", run_name=run_name, state="Paused",
                           mission_id=result.mission_id, repository=result.repository,
                           patches_waiting=patches, deadline=None, age_s=0.0)


def render_dashboard(record: CycleRecord, open_pulls: Sequence[PullInfo],
                     pending: Sequence[PendingApproval] = (), heading: str | None = None) -> str:
    """The dashboard's markdown: open PRs, pending approvals, regressions, limits.

    Args:
        record: the cycle's record (its regressions, held patches, limit, error).
        open_pulls: mendflow's open pull requests on the forge.
        pending: flow runs of this repository waiting for approval.
        heading: the first line's status (default: the record's cycle and status).
    """
    lines = [heading or f"### mendflow evolution: cycle {record.cycle} ({record.status})", "",
             "**Open pull requests**"]
    lines += [f"- #{p.number} [{p.title}]({p.url})" for p in open_pulls] or ["- none"]
    lines += ["", "**Pending approvals**"]
    lines += [f"- flow run `{w.run_name}` ({w.run_id}): {w.patches_waiting or '?'} patch(es) "
              f"of mission `{w.mission_id or '?'}`"
              + (f", deadline {w.deadline}" if w.deadline else "")
              + f": `mendflow approve {w.run_id}`" for w in pending] or ["- none"]
    lines += ["", "**Regressions**"]
    lines += [f"- `{r.test}`: {(r.commit or '?')[:10]} → {r.action}" for r in record.regressions] \
        or ["- none"]
    lines += ["", "**Waiting behind a limit**"]
    lines += ([f"- {record.limit}: " + ", ".join(f"`{p}`" for p in record.held)]
              if record.held else ["- nothing"])
    if record.error:
        lines += ["", f"**Last error:** {record.error}"]
    return "\n".join(lines)
