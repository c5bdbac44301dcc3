"""Candidate validation: selected tests first, then one full run per batch, bisected on failure.

A candidate passes its syntax and test-files gates, then the tests that reach
its change (:mod:`mendflow.flows.selection`); it then stays applied,
uncommitted, in the sandbox (``state.pending``). One full run (whole suite
under coverage, every linter) confirms the batch (:func:`confirm_batch`): if
its gates pass, the candidates are committed one by one; if not, the batch is
bisected over its prefixes to the first candidate whose addition fails the
full run, which is refused; the prefix before it is committed and the
candidates after it are re-applied and confirmed again. A candidate without
usable impact data (or every candidate, with ``validation.select_tests`` off)
is a batch of its own, validated by its own full run at once: the ordinary
full validation. Nothing is committed without a full run of a tree that holds
it, and every verdict ends in :mod:`mendflow.flows.verdict`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prefect.utilities.annotations import opaque

from mendflow.core.errors import PatchRejected
from mendflow.core.models import GateResult, Measurement, Patch, ValidationReport
from mendflow.core.outcomes import FULL_RUN_PREFIX, joint_gate, validation_timing
from mendflow.flows.cycle_learning import Held, settle
from mendflow.flows.ledger import MissionLedger
from mendflow.flows.measure import measure
from mendflow.flows.selection import selection_enabled, validate_selected
from mendflow.flows.verdict import Pending, accept, refuse
from mendflow.infra.progress import report_progress
from mendflow.tasks.sandbox import apply_patch, reset_sandbox
from mendflow.tasks.validate import check_patch_syntax, format_feedback, judge_patch
from mendflow.tasks.validate_tests import check_test_files


def validate_candidate(ledger: MissionLedger, patch: Patch, before: dict[str, str | None],
                       iteration: int, held: Held) -> str | None:
    """Validate an applied candidate: its selected tests (then its batch), else a full run now.

    Args:
        state: the mission state; the candidate is applied in its sandbox.
        patch: the candidate.
        before: :func:`mendflow.flows.selection.file_hashes` of its files before it was applied.
        iteration: the cycle it was proposed in.
        held: its learning notes (:meth:`GroupAttempts.hold`), settled with its verdict.

    Returns:
        None when the candidate was kept (pending its batch's full run, or
        committed), else the feedback for the fixer's next attempt.
    """
    started = time.monotonic()
    try:
        syntax = check_patch_syntax(ledger.sandbox, patch)
        tests = test_files_gate(ledger, patch)
        quick = None
        if syntax.passed and tests.passed:
            quick = validate_selected(ledger, patch, before, syntax, tests) \
                if selection_enabled(ledger) else None
            if quick is None:  # no usable impact data: a full run, with the pending batch
                placeholder = ValidationReport(patch_id=patch.id, accepted=True,
                                               gates=(syntax, tests))
                return _validate_fully(ledger, Pending(patch, placeholder, iteration, held))
            report, timing = quick
        else:  # refused without a test run
            report = judge_patch(opaque(ledger.current), opaque(ledger.current), patch,
                                 ledger.config.gates, syntax, tests)
            timing = validation_timing(patch.id, time.monotonic() - started, None,
                                       ledger.baseline.test_run, full_run=False)
        ledger.validation_timings.append(timing)
    except BaseException:
        # never leave a half-validated tree behind: the pending candidates go too (a
        # resumed mission replays them from the cache)
        for item in [*ledger.pending, None]:
            reset_sandbox.fn(ledger.sandbox, item.patch if item is not None else patch)
        ledger.pending = []
        raise
    ledger.validations.append(report)
    item = Pending(patch, report, iteration, held, selected=quick is not None)
    if not report.accepted:
        restore(ledger, [*ledger.pending, item], ledger.pending)
        refuse(ledger, patch, report.reason, iteration, report, held)
        return format_feedback(report)
    ledger.pending.append(item)
    if report.after is not None:
        ledger.current = report.after
    report_progress("validate", f"{patch.id} passed its selected tests; "
                    f"{len(ledger.pending)} candidate(s) await a full run")
    if len(ledger.pending) >= ledger.config.validation.batch_size:
        confirm_batch(ledger)
    return None


def _validate_fully(ledger: MissionLedger, item: Pending) -> str | None:
    """Confirm the pending batch with ``item`` at once; None if it was accepted, else feedback."""
    ledger.pending.append(item)
    refused = confirm_batch(ledger)
    patch_id = item.patch.id
    if any(o.id == patch_id and o.status == "accepted" for o in ledger.outcomes):
        return None
    report = next((r for r in refused if r.patch_id == patch_id), None)
    return format_feedback(report) if report is not None else "rejected"


def test_files_gate(ledger: MissionLedger, patch: Patch) -> GateResult:
    """The ``test-files`` gate: the patch leaves the tests and their configuration alone."""
    pytest_result = ledger.baseline.result_of("pytest")
    return check_test_files(ledger.sandbox, patch,
                            opaque(pytest_result.test_run if pytest_result else None),
                            ledger.config.gates)


def combined(patches: Sequence[Patch]) -> Patch:
    """One patch standing for a batch: every claimed finding and every file."""
    ids = tuple(dict.fromkeys(i for p in patches for i in p.finding_ids))
    files = tuple(dict.fromkeys(f for p in patches for f in p.files))
    return Patch(id="batch:" + "+".join(p.id for p in patches), fixer="batch", finding_ids=ids,
                 diff="", files=files, title=f"batch of {len(patches)}")


def restore(ledger: MissionLedger, drops: Sequence[Pending], keep: Sequence[Pending]) -> None:
    """Reset the sandbox to its branch HEAD (deleting the files ``drops`` added), re-apply ``keep``."""
    for item in drops or [None]:
        reset_sandbox(ledger.sandbox, item.patch if item is not None else None)
    for item in keep:
        apply_patch(ledger.sandbox, item.patch)


def _full_run(ledger: MissionLedger, pending: Sequence[Pending], patch: Patch,
              label: str) -> tuple[Measurement, ValidationReport]:
    """Measure the sandbox's tree fully and judge it against the batch's base (timed)."""
    started = time.monotonic()
    base = ledger.batch_base or ledger.current
    after = measure(ledger.sandbox, ledger.env, ledger.config, label=label, compared_with=base)
    gates = {name: joint_gate([g for p in pending for g in p.report.gates if g.gate == name],
                              name) for name in ("syntax", "test-files")}
    report = judge_patch(opaque(base), opaque(after), patch, ledger.config.gates,
                         gates["syntax"], gates["test-files"])
    ledger.validation_timings.append(validation_timing(
        patch.id, time.monotonic() - started, after.test_run, base.test_run, full_run=True))
    return after, report


def confirm_batch(ledger: MissionLedger) -> list[ValidationReport]:
    """Confirm ``state.pending`` with one full run; bisect and blame when it fails.

    A batch of one is that candidate's own full validation (its report bears its id).

    Returns:
        The reports of the candidates refused (each bears the candidate's id).
    """
    pending = list(ledger.pending)
    ledger.pending = []
    try:
        return _confirm(ledger, pending)
    except BaseException:  # never leave a half-validated tree behind (a resume replays them)
        for item in pending:
            reset_sandbox.fn(ledger.sandbox, item.patch)
        raise


def _confirm(ledger: MissionLedger, pending: list[Pending]) -> list[ValidationReport]:
    refused: list[ValidationReport] = []
    while pending:
        solo = len(pending) == 1
        patch = pending[0].patch if solo else combined([p.patch for p in pending])
        after, report = _full_run(ledger, pending, patch,
                                  f"candidate {patch.id}" if solo else f"batch of {len(pending)}")
        if report.accepted or not solo:
            ledger.validations.append(report)
        if report.accepted:
            commit_batch(ledger, pending, after, report)
            break
        if not solo:
            report_progress("validate", f"the full run of a batch of {len(pending)} failed "
                            f"({report.reason}): bisecting")
        good, good_after, good_report, blame_report = _bisect(ledger, pending, report)
        restore(ledger, pending, pending[:good])
        if good_report is not None:
            commit_batch(ledger, pending[:good], good_after, good_report)
        refused.append(blame(ledger, pending[good], blame_report))
        pending = _reapply(ledger, pending[good + 1:])
    return refused


def commit_batch(ledger: MissionLedger, items: Sequence[Pending], after: Measurement,
                 report: ValidationReport) -> None:
    """Commit the candidates a full run confirmed, one commit each, in order.

    Args:
        state: the mission state; its sandbox holds every candidate of ``items``.
        items: the confirmed candidates.
        after: the full run's measurement of the tree holding them all.
        report: that full run's report. It becomes the validation of a candidate
            judged alone, or of one that had no selective validation; a candidate
            of a larger batch keeps its selective one.
    """
    dry_run = ledger.config.mission.dry_run
    solo = len(items) == 1
    if dry_run or not solo:
        restore(ledger, items, [])
    for item in items:
        if not dry_run and not solo:
            apply_patch(ledger.sandbox, item.patch)
        own = item.report if item.selected and not solo else \
            report.model_copy(update={"patch_id": item.patch.id})
        accept(ledger, item, own)
    ledger.current = ledger.batch_base = ledger.batch_base if dry_run else after


def _bisect(ledger: MissionLedger, pending: list[Pending], failing: ValidationReport,
            ) -> tuple[int, Measurement, ValidationReport | None, ValidationReport]:
    """The longest passing prefix: ``(its length, its measurement and report, the failing
    report of the prefix one longer)``."""
    lo, hi = 0, len(pending)  # the prefix of lo candidates passes, the one of hi fails
    lo_after: Measurement = ledger.batch_base or ledger.current
    lo_report: ValidationReport | None = None
    hi_report = failing
    while hi - lo > 1:
        mid = (lo + hi) // 2
        restore(ledger, pending, pending[:mid])
        prefix = pending[:mid]
        after, report = _full_run(ledger, prefix, combined([p.patch for p in prefix]),
                                  f"bisect {mid} of {len(pending)}")
        ledger.validations.append(report)
        if report.accepted:
            lo, lo_after, lo_report = mid, after, report
        else:
            hi, hi_report = mid, report
    return lo, lo_after, lo_report, hi_report


def blame(ledger: MissionLedger, item: Pending, report: ValidationReport) -> ValidationReport:
    """Refuse the candidate whose full run (or the bisection) failed, with that run's gates.

    A candidate that had passed its selected tests is refused as ``full run: <gates>``.
    """
    reason = f"{FULL_RUN_PREFIX}{report.reason}" if item.selected else report.reason
    blamed = report.model_copy(update={"patch_id": item.patch.id, "reason": reason})
    ledger.validations.append(blamed)
    refuse(ledger, item.patch, reason, item.iteration, blamed, item.held)
    return blamed


def _reapply(ledger: MissionLedger, rest: Sequence[Pending]) -> list[Pending]:
    """Re-apply the candidates after a blamed one; those that no longer apply go back to the queue."""
    kept: list[Pending] = []
    for item in rest:
        try:
            apply_patch(ledger.sandbox, item.patch)
            kept.append(item)
        except PatchRejected as err:
            ledger.tried = {t for t in ledger.tried if not set(item.patch.finding_ids) & t}
            settle(ledger, item.held, "rejected", gate="conflict",
                   reason=f"no longer applies once a candidate before it was refused: {err}")
            restore(ledger, [*kept, item], kept)
    return kept
