"""Test-impact selection and batched full runs: the validation steps of the mission cycle.

A candidate is first validated by the tests that reach its changed lines
(:func:`validate_selected`); candidates that pass stay applied, uncommitted, in
the sandbox (``state.pending``). One full run (whole suite under coverage,
every linter) then confirms the batch (:func:`confirm_batch`): if its gates
pass, the candidates are committed one by one; if not, the batch is bisected
over its prefixes to the first candidate whose addition fails the full run,
which is rejected; the prefix before it is committed and the candidates after
it are re-applied and confirmed again. Nothing is committed without a full run
of a tree that holds it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prefect.utilities.annotations import opaque

from mendflow.core.errors import PatchRejected
from mendflow.core.models import Measurement, Patch, ValidationReport, ValidationTiming
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
from mendflow.tasks.detect.impact import (
    content_hash,
    impact_path,
    load_impact_map,
    select_tests,
)
from mendflow.tasks.detect.selective import merge_selected
from mendflow.tasks.sandbox import apply_patch, hash_tree, reset_sandbox
from mendflow.tasks.validate import judge_patch


@dataclass(frozen=True)
class Pending:
    """A candidate that passed its selective validation, applied but not yet committed."""

    patch: Patch
    report: ValidationReport
    iteration: int


def file_hashes(root: Path, files: Sequence[str]) -> dict[str, str | None]:
    """sha256 of each file just before a patch is applied (None: it does not exist)."""
    return {rel: content_hash(root / rel) for rel in files}


def selection_enabled(state) -> bool:
    config = state.config
    return config.validation.select_tests and config.tools.coverage.enabled \
        and config.tools.pytest.enabled


def validate_selected(state, patch: Patch, before: dict[str, str | None],
                      syntax) -> tuple[ValidationReport, ValidationTiming] | None:
    """Validate a candidate with the tests that reach its change, or None for a full run.

    Args:
        state: the mission state (its ``batch_base`` holds the impact data's tree).
        patch: the applied candidate.
        before: :func:`file_hashes` of its files before it was applied.
        syntax: the passed syntax gate.

    Returns:
        The report (judged against ``state.current``) and its timing, or None when
        the impact data is missing or stale (the caller runs the full suite).
    """
    started = time.monotonic()
    base = state.batch_base or state.current
    impact = load_impact_map(impact_path(state.sandbox, base.tree))
    run = state.current.test_run
    failed = {c.nodeid for c in run.cases if c.outcome in ("failed", "error")} if run else set()
    selection = select_tests(impact, patch, before, failed,
                             [item.patch.diff for item in state.pending])
    if selection.nodeids is None:
        report_progress("validate", f"{patch.id}: full run ({selection.reason})")
        return None
    report_progress("validate", f"{patch.id}: {selection.reason}")
    sandbox, env, tools = state.sandbox, state.env, state.config.tools
    tree = hash_tree(sandbox)
    futures = [run_selected_tests.submit(sandbox, env, tools, tree, selection.nodeids),
               run_ruff.submit(sandbox, tools, tree), run_mypy.submit(sandbox, env, tools, tree),
               run_bandit.submit(sandbox, tools, tree), find_todos.submit(sandbox, tools, tree)]
    results = [f.result() for f in futures]
    merged = merge_selected(state.current, results[0], results[1:], set(patch.files))
    if merged is None:
        return None
    findings = merge_findings(opaque(merged))
    after = compute_measurement(sandbox, tree, opaque(merged), opaque(findings),
                                state.config.score)
    report = judge_patch(opaque(state.current), opaque(after), patch, state.config.gates, syntax)
    ran = results[0].test_run
    timing = ValidationTiming(
        patch_id=patch.id, duration_s=round(time.monotonic() - started, 3),
        tests_run=sum(c.outcome in ("passed", "failed", "error") for c in ran.cases) if ran else 0,
        tests_total=run.collected if run else 0, full_run=False)
    return report, timing


def combined(patches: Sequence[Patch]) -> Patch:
    """One patch standing for a batch: every claimed finding and every file."""
    ids = tuple(dict.fromkeys(i for p in patches for i in p.finding_ids))
    files = tuple(dict.fromkeys(f for p in patches for f in p.files))
    return Patch(id="batch:" + "+".join(p.id for p in patches), fixer="batch", finding_ids=ids,
                 diff="", files=files, title=f"batch of {len(patches)}")


def restore(state, drops: Sequence[Pending], keep: Sequence[Pending]) -> None:
    """Reset the sandbox to its branch HEAD (deleting the files ``drops`` added), re-apply ``keep``."""
    for item in drops or [None]:
        reset_sandbox(state.sandbox, item.patch if item is not None else None)
    for item in keep:
        apply_patch(state.sandbox, item.patch)


def _full_run(state, pending: Sequence[Pending], label: str):
    """Measure the sandbox's tree fully and judge it against the batch's base."""
    from mendflow.flows.cycle import measure  # the cycle imports this module

    started = time.monotonic()
    patch = combined([p.patch for p in pending])
    after = measure(state.sandbox, state.env, state.config, label=label)
    report = judge_patch(opaque(state.batch_base), opaque(after), patch, state.config.gates,
                         pending[-1].report.gates[0])
    run = after.test_run
    state.validation_timings.append(ValidationTiming(
        patch_id=patch.id, duration_s=round(time.monotonic() - started, 3),
        tests_run=sum(c.outcome in ("passed", "failed", "error") for c in run.cases) if run else 0,
        tests_total=state.batch_base.test_run.collected if state.batch_base.test_run else 0,
        full_run=True))
    state.validations.append(report)
    return after, report


def confirm_batch(state, commit) -> None:
    """Confirm ``state.pending`` with one full run; bisect and blame when it fails.

    Args:
        state: the mission state; its sandbox holds every pending candidate.
        commit: ``commit(state, pending, report, measurement)``: commits the
            candidates of a passed prefix (the cycle's accept step).
    """
    pending = list(state.pending)
    state.pending = []
    while pending:
        after, report = _full_run(state, pending, f"batch of {len(pending)}")
        if report.accepted:
            commit(state, pending, after)
            return
        report_progress("validate", f"the full run of a batch of {len(pending)} failed "
                        f"({report.reason}): bisecting")
        good, good_after, blamed, blame_report = _bisect(state, pending, report)
        restore(state, pending, pending[:good])
        if good:
            commit(state, pending[:good], good_after)
        yield_blame(state, pending[good], blame_report)
        pending = _reapply(state, pending[good + 1:])


def _bisect(state, pending: list[Pending], failing: ValidationReport):
    """The longest passing prefix: ``(length, its measurement, the blamed index, its report)``."""
    lo, hi = 0, len(pending)  # the prefix of lo candidates passes, the one of hi fails
    lo_after: Measurement = state.batch_base
    hi_report = failing
    while hi - lo > 1:
        mid = (lo + hi) // 2
        restore(state, pending, pending[:mid])
        after, report = _full_run(state, pending[:mid], f"bisect {mid} of {len(pending)}")
        if report.accepted:
            lo, lo_after = mid, after
        else:
            hi, hi_report = mid, report
    return lo, lo_after, hi - 1, hi_report


def yield_blame(state, item: Pending, report: ValidationReport) -> None:
    """Reject the candidate the bisection blamed, with the failing full run's gates."""
    from mendflow.flows.cycle import _reject  # the cycle imports this module

    blamed = report.model_copy(update={"patch_id": item.patch.id,
                                       "reason": f"full run: {report.reason}"})
    state.validations.append(blamed)
    _reject(state, item.patch, blamed.reason, item.iteration, blamed)


def _reapply(state, rest: Sequence[Pending]) -> list[Pending]:
    """Re-apply the candidates after a blamed one; those that no longer apply go back to the queue."""
    kept: list[Pending] = []
    for item in rest:
        try:
            apply_patch(state.sandbox, item.patch)
            kept.append(item)
        except PatchRejected:
            state.tried = {t for t in state.tried if not set(item.patch.finding_ids) & t}
            restore(state, [*kept, item], kept)
    return kept
