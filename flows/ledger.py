"""What a mission's flow accumulates while it runs (flow-local, never passed to a task)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mendflow.core.config import MendflowConfig
from mendflow.core.findings import in_scope
from mendflow.core.learning import AttemptRecord, Choice, Prior
from mendflow.core.models import (
    BackupEntry,
    Finding,
    ImpactMap,
    LLMUsage,
    Measurement,
    PatchOutcome,
    RepoTarget,
    Sandbox,
    TargetEnv,
    ValidationReport,
    ValidationTiming,
)
from mendflow.tasks.validate_tests import collected_test_files, why_test_file

if TYPE_CHECKING:
    from mendflow.flows.batch import Pending


@dataclass
class MissionLedger:
    """What the flow accumulates while it runs (flow-local, never passed to a task).

    ``current`` is the measurement of the sandbox's tree with every kept
    candidate applied; ``batch_base`` the one of the mission branch's HEAD (the
    last full run), which the pending candidates' batch is judged against.
    """

    mission_id: str
    target: RepoTarget
    sandbox: Sandbox
    env: TargetEnv
    config: MendflowConfig
    baseline: Measurement
    current: Measurement
    backups_dir: Path
    started_at: str | None = None
    state_root: Path | None = None
    priors: dict[tuple[str, str], Prior] = field(default_factory=dict)
    choices: list[Choice] = field(default_factory=list)
    attempt_log: list[AttemptRecord] = field(default_factory=list)
    outcomes: list[PatchOutcome] = field(default_factory=list)
    validations: list[ValidationReport] = field(default_factory=list)
    validation_timings: list[ValidationTiming] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    batch_base: Measurement | None = None
    impact: tuple[str, ImpactMap | None] | None = None
    """The test-impact map last read, with the tree it belongs to (``batch_base.tree``)."""
    baseline_s: float = 0.0
    environment_s: float = 0.0
    """Wall time (seconds) of preparing the target's environment (a first venv build)."""
    backups: list[BackupEntry] = field(default_factory=list)
    tried: set[frozenset[str]] = field(default_factory=set)
    rejected_patches: set[str] = field(default_factory=set)
    llm_usage: LLMUsage = field(default_factory=LLMUsage)
    fixer_disabled: str | None = None
    paused: str | None = None
    started: float = field(default_factory=time.monotonic)
    iterations: int = 0
    stop_reason: str = ""

    def scoped(self, findings) -> list[Finding]:
        return [f for f in findings if in_scope(f, self.target)]

    def fixable(self, findings) -> list[Finding]:
        """In-scope findings a fixer may work on.

        Findings located in test files (a file pytest collected tests from at
        baseline, a ``conftest.py``, ``gates.test_globs``, test or CI
        configuration: whatever the ``test-files`` gate would refuse to see
        changed, :func:`~mendflow.tasks.validate_tests.why_test_file`) are
        left out unless the gates allow test changes, except failing tests
        themselves: their fix belongs in the code under test (and the
        ``test-files`` gate still refuses any test edit).
        Only the categories of ``mission.fix_categories`` are given to the fixer
        (None = all): the others are measured and never attempted.
        """
        gates, wanted = self.config.gates, self.config.mission.fix_categories
        tests = self.baseline.result_of("pytest")
        collected = collected_test_files(tests.test_run if tests else None)
        return [f for f in self.scoped(findings)
                if (wanted is None or f.category in wanted)
                and (gates.allow_test_changes or f.category == "test-failure"
                     or why_test_file(f.path, collected=collected,
                                      globs=gates.test_globs) is None)]

    def exit_code(self) -> int:
        """0 success; 2 a patch was rejected or the target score was not reached;
        3 paused (low disk): validation cannot go on until space is freed."""
        if self.paused:
            return 3
        rejected = any(o.status == "rejected" for o in self.outcomes)
        below = self.current.score < self.config.mission.target_score
        return 2 if rejected or (below and not self.config.mission.backup_only) else 0
