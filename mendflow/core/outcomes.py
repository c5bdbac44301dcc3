"""The records a mission keeps of its candidates: outcomes, validation timings, suite states.

Pure functions over the contracts of :mod:`mendflow.core.models`; the mission
cycle (``mendflow.flows``) builds every ``PatchOutcome`` and ``ValidationTiming``
through them, whichever validation path (own full run, selected tests, batch)
judged the candidate.
"""

from __future__ import annotations

from mendflow.core.models import (
    GateResult,
    Measurement,
    Patch,
    PatchOutcome,
    PatchStatus,
    SuiteSummary,
    TestRun,
    ValidationReport,
    ValidationTiming,
)

FULL_RUN_PREFIX = "full run: "


def patch_outcome(patch: Patch, status: PatchStatus, reason: str | None, iteration: int,
                  report: ValidationReport | None = None,
                  commit: str | None = None) -> PatchOutcome:
    """One candidate's fate for ``session_data.json`` (its report without the bulky ``after``)."""
    return PatchOutcome(id=patch.id, finding_ids=patch.finding_ids, fixer=patch.fixer,
                        status=status, reason=reason, commit=commit, title=patch.title,
                        confidence=patch.confidence, iteration=iteration, files=patch.files,
                        validation=report.model_copy(update={"after": None}) if report else None)


def tests_ran(run: TestRun | None) -> int:
    """Test cases that really ran (passed, failed or errored; skipped and deselected left out)."""
    return sum(c.outcome in ("passed", "failed", "error") for c in run.cases) if run else 0


def validation_timing(patch_id: str, duration_s: float, run: TestRun | None,
                      base: TestRun | None, *, full_run: bool) -> ValidationTiming:
    """The wall time (seconds) and test counts of one validation (``timings.validations``).

    Args:
        patch_id: the candidate's id, or ``batch:<id>+<id>`` for a batch's full run.
        duration_s: wall time of the validation, seconds.
        run: the patched tree's test run (None: no test ran, e.g. refused by a gate first).
        base: the test run of the tree it was judged against (its ``collected`` is the total).
        full_run: the whole suite under coverage and every linter ran.
    """
    return ValidationTiming(patch_id=patch_id, duration_s=round(duration_s, 3),
                            tests_run=tests_ran(run), tests_total=base.collected if base else 0,
                            full_run=full_run)


def suite_summary(measurement: Measurement) -> SuiteSummary | None:
    """Tests passed of those run, coverage, and the test modules that could not be collected.

    Returns:
        None without a test run.
    """
    run = measurement.test_run
    if run is None:
        return None
    ran = [c for c in run.cases if c.outcome in ("passed", "failed", "error")]
    return SuiteSummary(passed=sum(c.outcome == "passed" for c in ran), total=len(ran),
                        coverage_percent=run.coverage_percent,
                        uncollected=len(run.collection_errors))


def joint_gate(gates: list[GateResult], name: str) -> GateResult:
    """The gates of one name over several candidates, as one (passed if every one passed)."""
    if len(gates) == 1:
        return gates[0]
    details = list(dict.fromkeys(g.detail for g in gates if g.detail))
    return GateResult(gate=name, passed=all(g.passed for g in gates), detail="; ".join(details))
