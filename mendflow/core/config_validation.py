"""Config section of candidate validation: test-impact selection and batched full runs.

Part of the one validated config; import it from :mod:`mendflow.core.config`.
"""

from __future__ import annotations

from pydantic import Field

from mendflow.core.config_base import Section


class ValidationConfig(Section):
    """How candidates are validated.

    With ``select_tests``, every full test run records which tests reach which
    lines (coverage.py contexts); a candidate is first validated by only the
    tests that reach its changed lines, the tests failing before it and the test
    files it touches, with the linters' findings of its changed files. Candidates
    that pass are confirmed by one full run (whole suite, coverage, every linter)
    per batch of at most ``batch_size``; a failing batch is bisected to the
    candidate to blame. No commit lands without a full run that covers it.
    Without it, every candidate is validated by its own full run.
    """

    select_tests: bool = Field(
        True, description="validate candidates first with the tests that reach their change, "
        "then confirm them by one full run per batch")
    batch_size: int = Field(
        8, ge=1, le=1000, description="candidates confirmed together by one full run, at most")
    test_workers: int = Field(
        0, ge=0, le=256, description="pytest-xdist workers of a full test run under coverage: "
        "0 = decided per run (one per core when the previous run's test time, against the "
        "other tools beside it, says spreading saves 25 %; serial at a repository's first "
        "baseline), 1 = always serial, N = N workers; serial whenever the suite does not "
        "allow it")
