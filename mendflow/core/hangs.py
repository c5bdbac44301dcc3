"""Per-test timeouts of a validation run, learned from the run it is compared with.

A test suite's hanging tests must stay cheap without a slow, honest test being
taken for a hang (see README, "Hanging tests"). The baseline runs every test
with a short first timeout and gives the tests that hit it a second chance
with the long one; the tests still without a result then *hang*
(``TestCase.timed_out``, a ``pytest``/``hang`` finding). Each validation run of
a candidate patch then uses what that run measured:

- a test that passed in ``d`` seconds gets ``max(first_timeout_s, factor × d)``,
  at most ``per_test_timeout_s``;
- a test that hung gets ``hang_timeout_s`` and no second chance: hanging again
  is no regression, and its tests run apart from the others, at the same time;
- any other test (failed, skipped, new) gets ``first_timeout_s``.
"""

from __future__ import annotations

from mendflow.core.config import PytestConfig
from mendflow.core.models import TestPlan, TestRun


def plan_test_timeouts(run: TestRun | None, pytest: PytestConfig) -> TestPlan:
    """The per-test timeouts of a test run compared with ``run``.

    Args:
        run: the earlier test run (its cases' outcomes and durations, seconds),
            or None: every test gets ``first_timeout_s``.
        pytest: the ``tools.pytest`` config (timeouts in seconds).

    Returns:
        The :class:`TestPlan` (node id -> seconds; the node ids that hung).
    """
    first, longest = pytest.first_timeout_s, pytest.per_test_timeout_s
    if run is None:
        return TestPlan(default_s=first, hang_s=pytest.hang_timeout_s)
    timeouts: dict[str, float] = {}
    hung: list[str] = []
    for case in run.cases:
        if case.timed_out:
            hung.append(case.nodeid)
        elif case.outcome == "passed":
            learned = max(first, round(pytest.learned_timeout_factor * case.duration_s, 1))
            if learned > first:
                timeouts[case.nodeid] = min(longest, learned)
    return TestPlan(default_s=first, timeouts=timeouts, hung=tuple(hung),
                    hang_s=pytest.hang_timeout_s)
