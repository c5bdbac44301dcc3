"""One-line texts about a mission's result, shared by the CLI's summary table and the report."""

from __future__ import annotations

from mendflow.core.models import MissionResult, SuiteSummary


def suite_text(suite: SuiteSummary | None) -> str:
    """``"41/45 passed, coverage 87.5%"`` (``"not measured"`` without a test run).

    Test modules that pytest could not collect are named as such
    (``"1/1 passed, 5 test modules not collected, coverage 31.3%"``): their tests
    never ran, so "1/1 passed" alone would read as a healthy suite.
    """
    if suite is None:
        return "not measured"
    coverage = (f"coverage {suite.coverage_percent:.1f}%" if suite.coverage_percent is not None
                else "coverage not measured")
    uncollected = ""
    if suite.uncollected:
        plural = "s" if suite.uncollected > 1 else ""
        uncollected = f", {suite.uncollected} test module{plural} not collected"
    return f"{suite.passed}/{suite.total} passed{uncollected}, {coverage}"


def delivered_text(result: MissionResult) -> str:
    """What the mission delivered, and where.

    Returns:
        For example ``"3 commit(s) to main (fast-forward), pushed to origin"``, or
        ``"nothing yet: 2 commit(s) on mendflow/m1 to review and merge"``.
    """
    accepted = [p for p in result.patches if p.status == "accepted" and p.commit]
    approval = result.approval
    if approval is not None and approval.delivered_commits:
        where = approval.target_branch or "the target branch"
        text = f"{len(approval.delivered_commits)} commit(s) to {where} ({approval.delivery})"
        return text + (f", pushed to {approval.pushed_to}" if approval.pushed_to else "")
    if approval is not None and approval.error:
        return f"nothing: delivery failed ({approval.error})"
    if result.dry_run:
        return "nothing (dry run)"
    if result.backup_only:
        # the copies live beside the report (missions/<id>/backups/): name the index of them
        where = f"{result.report_dir}/backup_history.json" if result.report_dir else "the report"
        return f"nothing (backup only); backups listed in {where}"
    if not accepted:
        return "nothing (no patch accepted)"
    if any(p.status == "pending_approval" for p in result.patches) or \
            result.status == "awaiting_approval":
        return f"nothing yet: {len(accepted)} commit(s) on {result.branch} await approval"
    return f"nothing yet: {len(accepted)} commit(s) on {result.branch} to review and merge"
