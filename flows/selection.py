"""Test-impact selection: validate a candidate with only the tests that reach its change.

Every full test run records which tests reach which lines (coverage.py
contexts, :mod:`mendflow.tasks.detect.impact`). A candidate is first run
against the tests that reach its changed lines, the tests failing before it
and the test files it touches, with the linters beside them; its batch's full
run (:mod:`mendflow.flows.batch`) confirms it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from prefect.utilities.annotations import opaque

from mendflow.core.models import (
    GateResult,
    ImpactMap,
    Patch,
    ValidationReport,
    ValidationTiming,
)
from mendflow.core.outcomes import validation_timing
from mendflow.flows.ledger import MissionLedger
from mendflow.infra.progress import report_progress
from mendflow.tasks.bookkeeping import compute_measurement
from mendflow.tasks.detect import (
    find_todos,
    merge_findings,
    run_bandit,
    run_mypy,
    run_ruff,
    run_selected_tests,
)
from mendflow.tasks.detect.impact import content_hash, select_tests
from mendflow.tasks.detect.impact_record import read_impact_map
from mendflow.tasks.detect.selective import merge_selected
from mendflow.tasks.sandbox import hash_tree
from mendflow.tasks.validate import judge_patch


def file_hashes(root: Path, files: Sequence[str]) -> dict[str, str | None]:
    """sha256 of each file just before a patch is applied (None: it does not exist)."""
    return {rel: content_hash(root / rel) for rel in files}


def selection_enabled(ledger: MissionLedger) -> bool:
    """``validation.select_tests`` with coverage and pytest enabled (the impact data's source)."""
    config = ledger.config
    return config.validation.select_tests and config.tools.coverage.enabled \
        and config.tools.pytest.enabled


def _impact_map(ledger: MissionLedger, tree: str) -> ImpactMap | None:
    """The impact map of ``tree``, read once per batch base (a task run; cached, so a
    resume on another host gets it from Prefect's result storage)."""
    if ledger.impact is None or ledger.impact[0] != tree:
        ledger.impact = (tree, read_impact_map(ledger.sandbox, tree))
    return ledger.impact[1]


def validate_selected(ledger: MissionLedger, patch: Patch, before: dict[str, str | None],
                      syntax: GateResult, tests: GateResult,
                      ) -> tuple[ValidationReport, ValidationTiming] | None:
    """Validate a candidate with the tests that reach its change, or None for a full run.

    Args:
        state: the mission state (its ``batch_base`` holds the impact data's tree).
        patch: the applied candidate.
        before: :func:`file_hashes` of its files before it was applied.
        syntax: the passed syntax gate.
        tests: the passed test-files gate.

    Returns:
        The report (judged against ``state.current``) and its timing, or None when
        the impact data is missing or stale (the caller runs the full suite).
    """
    started = time.monotonic()
    base = ledger.batch_base or ledger.current
    impact = _impact_map(ledger, base.tree)
    run = ledger.current.test_run
    failed = {c.nodeid for c in run.cases if c.outcome in ("failed", "error")} if run else set()
    selection = select_tests(impact, patch, before, failed,
                             [item.patch.diff for item in ledger.pending])
    if selection.nodeids is None:
        report_progress("validate", f"{patch.id}: full run ({selection.reason})")
        return None
    report_progress("validate", f"{patch.id}: {selection.reason}")
    sandbox, env, tools = ledger.sandbox, ledger.env, ledger.config.tools
    tree = hash_tree(sandbox)
    futures = [run_selected_tests.submit(sandbox, env, tools, tree, selection.nodeids),
               run_ruff.submit(sandbox, tools, tree), run_mypy.submit(sandbox, env, tools, tree),
               run_bandit.submit(sandbox, tools, tree), find_todos.submit(sandbox, tools, tree)]
    results = [f.result() for f in futures]
    merged = merge_selected(ledger.current, results[0], results[1:], set(patch.files))
    if merged is None:
        return None
    findings = merge_findings(opaque(merged))
    after = compute_measurement(sandbox, tree, opaque(merged), opaque(findings),
                                ledger.config.score)
    report = judge_patch(opaque(ledger.current), opaque(after), patch, ledger.config.gates, syntax,
                         tests)
    timing = validation_timing(patch.id, time.monotonic() - started, results[0].test_run, run,
                               full_run=False)
    return report, timing
