"""The measurement of a candidate validated by selected tests only (test-impact selection).

The selected tests ran without coverage and the linters ran on the patched
tree; :func:`merge_selected` lays those results over the current
measurement: the selected tests' outcomes replace theirs, the other tests
keep their outcomes and the coverage stays the current one (the batch's full
run checks coverage); each linter's findings are the new ones for the changed
files and the current ones for every other file.
"""

from __future__ import annotations

from collections.abc import Sequence

from mendflow.core.models import Measurement, ToolResult


def merge_selected(current: Measurement, selected: ToolResult, linters: Sequence[ToolResult],
                   changed: set[str]) -> list[ToolResult] | None:
    """Lay a selective run over the current measurement.

    Args:
        current: the measurement of the tree the candidate was applied to.
        selected: the ``pytest`` result of the selected tests on the patched tree.
        linters: the other tools' results on the patched tree.
        changed: the candidate's files (repository-relative POSIX paths).

    Returns:
        One merged :class:`ToolResult` per tool, or None when the current
        measurement has no test run to merge into (validate with a full run).
    """
    base = current.result_of("pytest")
    if base is None or base.test_run is None or selected.test_run is None or not selected.ok:
        return None if base is None or base.test_run is None else [selected, *linters]
    ran = selected.test_run.cases
    rerun = {case.nodeid for case in ran}
    cases = {case.nodeid: case for case in base.test_run.cases}
    cases.update((case.nodeid, case) for case in ran)
    files = {nodeid.split("::", 1)[0] for nodeid in rerun}
    errors = [e for e in base.test_run.collection_errors if e not in files]
    run = base.test_run.model_copy(update={
        "cases": tuple(cases.values()), "collected": len(cases),
        "duration_s": selected.test_run.duration_s,
        "collection_errors": (*errors, *selected.test_run.collection_errors)})
    kept = [f for f in base.findings if not (f.test_id and f.test_id in rerun)
            and not (f.rule == "collection-error" and f.path in files)]
    pytest_result = selected.model_copy(update={
        "findings": (*kept, *selected.findings), "test_run": run})
    merged = [pytest_result]
    for result in linters:
        before = current.result_of(result.tool)
        if before is None:
            merged.append(result)
            continue
        findings = [f for f in before.findings if f.path not in changed]
        findings += [f for f in result.findings if f.path in changed]
        merged.append(result.model_copy(update={"findings": tuple(findings)}))
    return merged
