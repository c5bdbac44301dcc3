"""What goes into which pull request, what is a duplicate, what waits behind a limit.

Pure functions over the mission's result and the forge's open pull requests
(no git, no HTTP): :func:`plan_pulls`, :func:`split_duplicates`,
:func:`stale_pulls`, :func:`capacity`, :func:`render_body`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from mendflow.core.models import ApprovalNeed, Contract, Finding, MissionResult, PatchOutcome
from mendflow.tasks.deliver.forge import PullInfo, body_marker, marked_findings

BRANCH_PREFIX = "mendflow/evolve-"


class PullPlan(Contract):
    """One pull request to open: its branch, title and the patches (commits) it carries."""

    branch: str
    title: str
    patch_ids: tuple[str, ...]
    finding_ids: tuple[str, ...]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"


def plan_pulls(result: MissionResult, approved: Sequence[str], group: str) -> list[PullPlan]:
    """Group the approved, committed patches into pull requests.

    Args:
        result: the cycle's mission result.
        approved: the approved patch ids.
        group: ``cycle`` (one PR, each patch its own commit), ``rule`` (one PR per
            rule of the patch's first finding) or ``patch`` (one PR per patch).

    Returns:
        The plans, in commit order; empty when nothing is approved.
    """
    wanted = set(approved)
    patches = [p for p in result.patches if p.status == "accepted" and p.commit and p.id in wanted]
    if not patches:
        return []
    rules = {f.id: f.rule for f in result.findings}
    buckets: dict[str, list[PatchOutcome]] = {}
    for index, patch in enumerate(patches, 1):
        if group == "cycle":
            key = ""
        elif group == "rule":
            key = _slug(rules.get(patch.finding_ids[0], "misc") if patch.finding_ids else "misc")
        else:
            key = str(index)
        buckets.setdefault(key, []).append(patch)
    plans = []
    for key, members in buckets.items():
        branch = BRANCH_PREFIX + result.mission_id + (f"-{key}" if key else "")
        title = (members[0].title if len(members) == 1 else
                 f"mendflow: {len(members)} fixes" + (f" ({key})" if key else ""))
        plans.append(PullPlan(branch=branch, title=title or f"mendflow: {members[0].id}",
                              patch_ids=tuple(p.id for p in members),
                              finding_ids=tuple(sorted({f for p in members
                                                        for f in p.finding_ids}))))
    return plans


def split_duplicates(plans: Sequence[PullPlan], open_pulls: Sequence[PullInfo],
                     ) -> tuple[list[PullPlan], list[PullPlan]]:
    """``(new, duplicates)``: a plan whose findings an open PR already fixes is a duplicate."""
    covered: set[str] = set()
    heads = {p.head for p in open_pulls}
    for pull in open_pulls:
        covered |= marked_findings(pull.body)
    new, dupes = [], []
    for plan in plans:
        if plan.branch in heads or (plan.finding_ids and set(plan.finding_ids) <= covered):
            dupes.append(plan)
        else:
            new.append(plan)
    return new, dupes


def stale_pulls(open_pulls: Sequence[PullInfo], present: set[str]) -> list[PullInfo]:
    """Open mendflow PRs none of whose findings is still on the target branch."""
    return [p for p in open_pulls if (ids := marked_findings(p.body)) and not ids & present]


def capacity(open_count: int, opened_at: Sequence[str], max_open: int,
             max_per_hour: int | None, now: datetime, wanted: int = 0) -> tuple[int, str | None]:
    """How many PRs this cycle may open, and the limit that binds (None = none binds).

    Args:
        open_count: mendflow PRs open now.
        opened_at: ISO 8601 times of PRs mendflow opened (its own record).
        max_open: ``delivery.max_open_prs``.
        max_per_hour: ``delivery.max_prs_per_hour`` (None = no cap).
        now: the current time (aware).
        wanted: PRs the cycle would open; a limit binds when the room is below it.
    """
    room = max(0, max_open - open_count)
    reason = None
    if room < max(wanted, 1):
        reason = f"max_open_prs ({max_open}) reached: {open_count} open"
    if max_per_hour is not None:
        hour_ago = now - timedelta(hours=1)
        recent = sum(1 for t in opened_at if datetime.fromisoformat(t) > hour_ago)
        hourly = max(0, max_per_hour - recent)
        if hourly < room:
            room = hourly
            if hourly < max(wanted, 1):
                reason = (f"max_prs_per_hour ({max_per_hour}) reached: {recent} opened in "
                          "the last hour")
    return room, reason


def _finding_line(finding: Finding) -> str:
    where = f"{finding.path}:{finding.line}" if finding.line else finding.path
    return f"  - `{finding.rule}` ({finding.source}) at `{where}`: {finding.message[:200]}"


def render_body(result: MissionResult, plan: PullPlan, needs: Sequence[ApprovalNeed],
                approver: str) -> str:
    """The pull request's body: the approval report of its patches.

    Each patch: title, the findings it fixes, the gates it passed, its approval;
    then the cycle's quality score before and after, and the hidden marker
    naming the findings (used to find duplicates and stale PRs).
    """
    findings = {f.id: f for f in result.findings}
    reasons = {n.patch_id: n for n in needs}
    lines = [f"Automated maintenance by **mendflow** (mission `{result.mission_id}`, base "
             f"`{result.base_commit[:10]}`). Each patch is its own commit and passed every "
             "gate below in a sandbox.", ""]
    for patch in (p for p in result.patches if p.id in plan.patch_ids):
        lines += [f"### {patch.title or patch.id}", f"- patch `{patch.id}` by {patch.fixer} "
                  f"(confidence {patch.confidence or 'n/a'}), files: "
                  + ", ".join(f"`{f}`" for f in patch.files), "- findings fixed:"]
        lines += [_finding_line(findings[i]) for i in patch.finding_ids if i in findings] or \
            ["  - (none recorded)"]
        if patch.validation is not None:
            gates = ", ".join(f"{g.gate} {'✅' if g.passed else '❌'}"
                              for g in patch.validation.gates)
            lines.append(f"- gates: {gates}")
        need = reasons.get(patch.id)
        lines.append(f"- approval: {'approved by ' + approver if need and need.reasons else 'within policy'}"
                     + (f" ({'; '.join(need.reasons)})" if need and need.reasons else ""))
        lines.append("")
    score = result.quality_score
    lines += [f"**Quality score:** {score.before:.1f} → {score.after:.1f} (0-100, whole cycle)",
              "", body_marker(plan.finding_ids)]
    return "\n".join(lines)
