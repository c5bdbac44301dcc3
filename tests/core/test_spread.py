"""The choice between a serial and a spread test run (mendflow.core.spread)."""

from __future__ import annotations

import pytest

from mendflow.core.measurements import TestCase, TestRun
from mendflow.core.spread import (
    FIXED_STEP,
    TESTS_STEP,
    SuiteCost,
    cost_from_history,
    cost_of_run,
    estimate_s,
    plan_workers,
)

# shapes measured on a 2-core machine (bench/detect.py): toolz spends its run
# collecting and mypy is its long pole; more-itertools spends it in its tests
TOOLZ = SuiteCost(fixed_s=6.0, tests_s=2.0, others_s=13.0)
MORE_ITERTOOLS = SuiteCost(fixed_s=6.0, tests_s=24.0, others_s=5.0)


def test_the_tests_time_against_the_tools_beside_it_decides():
    assert plan_workers(0, 2, MORE_ITERTOOLS) == 2
    assert plan_workers(0, 2, TOOLZ) == 1
    assert estimate_s(MORE_ITERTOOLS, 2, 2) < estimate_s(MORE_ITERTOOLS, 1, 2)


@pytest.mark.parametrize(("configured", "cores", "cost", "expected"), [
    (0, 2, None, 1),                 # a first baseline: nothing known, serial
    (0, 1, MORE_ITERTOOLS, 1),       # one core: nothing to spread over
    (1, 2, MORE_ITERTOOLS, 1),       # serial by config
    (3, 2, TOOLZ, 3),                # N by config, whatever the estimate
    (0, 4, MORE_ITERTOOLS, 4),
    (0, 2, SuiteCost(fixed_s=8.0, tests_s=14.0, others_s=5.0), 1),  # a 20 % gain: not enough
])
def test_configured_workers_and_edges(configured, cores, cost, expected):
    assert plan_workers(configured, cores, cost) == expected


def test_cost_of_a_run_counts_the_fixed_part_per_worker():
    cases = tuple(TestCase(nodeid=f"t.py::t{i}", outcome="passed", duration_s=2.0)
                  for i in range(4))
    serial = cost_of_run(TestRun(collected=4, cases=cases, duration_s=11.0), [3.0, 1.5])
    assert serial == SuiteCost(fixed_s=3.0, tests_s=8.0, others_s=4.5)
    spread = cost_of_run(TestRun(collected=4, cases=cases, duration_s=7.0, workers=2), [])
    assert spread == SuiteCost(fixed_s=3.0, tests_s=8.0, others_s=0.0)


def test_cost_from_the_duration_history_takes_the_newest_run():
    assert cost_from_history({"pytest": [20.0], "mypy": [4.0]}) is None
    history = {TESTS_STEP: [9.0, 24.0], FIXED_STEP: [1.0, 6.0], "pytest": [30.0],
               "mypy": [9.0, 3.5], "bandit": [1.5], "ruff": [0.2], "llm": [8.0]}
    assert cost_from_history(history) == SuiteCost(fixed_s=6.0, tests_s=24.0, others_s=5.2)
