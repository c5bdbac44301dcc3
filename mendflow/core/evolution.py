"""Contracts of the evolution loop: one cycle's history record and the loop's state.

The :class:`CycleRecord` fields named in issue 12's Contract are what
``mendflow evolve history PATH --json`` prints (a JSON list, oldest first):
``cycle, started_at, duration_s, status, head_before, head_after, findings,
patches_accepted, prs_opened, prs_closed, reverts, regressions, quality_score,
coverage, restarted``; the others add detail.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mendflow.core.models import Contract

CycleStatus = Literal["completed", "unchanged", "skipped", "failed"]
RegressionAction = Literal["reverted", "revert-proposed", "reported", "revert-failed"]


class Regression(Contract):
    """A test that passed at the previous cycle's tip and fails at this one."""

    test: str = Field(description="the pytest node id")
    commit: str | None = Field(description="the first bad commit (git bisect run); None = unknown")
    action: RegressionAction = Field(description="reverted | revert-proposed (a PR) | reported "
                                     "(a human's commit: nothing reverted) | revert-failed")
    delivered_by_mendflow: bool = False
    author: str = ""
    detail: str = ""


class CycleRecord(Contract):
    """One cycle of the evolution loop, as appended to ``evolution_history.json``."""

    cycle: int = Field(ge=1)
    started_at: str = Field(description="ISO 8601, UTC")
    duration_s: float
    status: CycleStatus
    head_before: str | None = Field(description="the target tip the previous cycle saw")
    head_after: str | None = Field(description="the target tip this cycle saw after the sync")
    findings: int = 0
    patches_accepted: int = 0
    prs_opened: int = 0
    prs_closed: int = 0
    prs_merged: int = 0
    reverts: int = 0
    regressions: tuple[Regression, ...] = ()
    quality_score: float | None = None
    coverage: float | None = Field(None, description="line coverage of the tip, percent")
    restarted: bool = False
    findings_by_source: dict[str, int] = Field(default_factory=dict)
    patches_by_category: dict[str, int] = Field(default_factory=dict)
    tests_passed: int | None = None
    tests_total: int | None = None
    cost: dict[str, int] = Field(default_factory=dict, description="LLM calls and tokens")
    below_thresholds: tuple[str, ...] = Field((), description="thresholds the tip misses")
    limit: str | None = Field(None, description="the delivery limit that held patches back")
    held: tuple[str, ...] = Field((), description="patch ids waiting behind a limit")
    pull_requests: tuple[str, ...] = Field((), description="URLs of PRs opened this cycle")
    mission_id: str | None = None
    flow_run_id: str | None = None
    interval_s: float | None = Field(None, description="the interval after this cycle, seconds")
    error: str | None = None
    note: str = ""

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this cycle: 1 when it failed, else 0."""
        return 1 if self.status == "failed" else 0


class LoopMemory(Contract):
    """What the loop remembers between cycles (``evolution_memory.json``)."""

    last_tip: str | None = None
    failing_tests: tuple[str, ...] = ()
    passing_tests: tuple[str, ...] = ()
    open_prs: tuple[int, ...] = Field((), description="PR numbers mendflow opened, open last cycle")
    opened_at: tuple[str, ...] = Field((), description="ISO times PRs were opened (last 24 h)")
    pending: bool = Field(False, description="something waits: a failed delivery, held patches")
    plateau: int = Field(0, description="cycles in a row without an accepted patch")
    interval_s: float | None = None
    restart_requested: bool = False
    skipped_runs: tuple[str, ...] = Field((), description="cancelled overlapping flow runs "
                                          "already recorded as skipped (the newest 100)")
