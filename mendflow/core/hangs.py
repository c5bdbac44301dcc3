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

A repository's later baseline learns the same way from the durations of the
tests that passed in its earlier runs (:func:`plan_from_durations`): an honest
slow test then runs once, with a timeout long enough, instead of hitting the
first timeout and running again as a second chance.
"""

from __future__ import annotations

from collections.abc import Mapping

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
    if run is None:
        return TestPlan(default_s=pytest.first_timeout_s, hang_s=pytest.hang_timeout_s)
    hung = tuple(case.nodeid for case in run.cases if case.timed_out)
    passed = {case.nodeid: case.duration_s for case in run.cases
              if case.outcome == "passed" and not case.timed_out}
    return TestPlan(default_s=pytest.first_timeout_s, timeouts=_learned(passed, pytest), hung=hung,
                    hang_s=pytest.hang_timeout_s)


def plan_from_durations(durations: Mapping[str, float], pytest: PytestConfig) -> TestPlan | None:
    """The per-test timeouts of a baseline, from the tests' durations in earlier passing runs.

    Unlike :func:`plan_test_timeouts`, nothing is taken for a hang: a test
    missing from ``durations`` (new, or failed or hung before) gets
    ``first_timeout_s`` and its second chance, as at a first baseline.

    Args:
        durations: node id -> seconds the test took when it last passed
            (:func:`mendflow.infra.test_durations.load_test_durations`).
        pytest: the ``tools.pytest`` config (timeouts in seconds).

    Returns:
        The :class:`TestPlan`, or None when no test gets more than ``first_timeout_s``
        (the plain first-baseline plan).
    """
    timeouts = _learned(durations, pytest)
    if not timeouts:
        return None
    return TestPlan(default_s=pytest.first_timeout_s, timeouts=timeouts,
                    hang_s=pytest.hang_timeout_s)


def _learned(durations: Mapping[str, float], pytest: PytestConfig) -> dict[str, float]:
    """``max(first, factor × d)`` seconds (at most ``per_test_timeout_s``) for each test
    whose learned timeout is longer than the first one."""
    first, longest = pytest.first_timeout_s, pytest.per_test_timeout_s
    timeouts: dict[str, float] = {}
    for nodeid, seconds in durations.items():
        learned = max(first, round(pytest.learned_timeout_factor * seconds, 1))
        if learned > first:
            timeouts[nodeid] = min(longest, learned)
    return timeouts
