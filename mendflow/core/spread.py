"""How many pytest-xdist workers a full test run under coverage gets (1 = serial).

Spreading the suite over the cores is not free, and detection runs the other
tools (mypy, bandit, ruff) beside it on the same cores. Measured on a 2-core
machine (README, "Validation at the speed of the change"): every xdist worker
repeats pytest's startup and the whole collection (importing every test module
and the code under test) under coverage's tracer, and the worker's own
bookkeeping (reports sent to the controller) is traced too. On toolz 1.0.0,
whose collection is most of its run, two workers cost 2.3 x the serial run's
CPU; on more-itertools 10.5.0, whose tests run longer, 1.5 x.

So the choice is a small model of the run, fed with what an earlier run measured:

- ``fixed_s``: the part of the test run that every worker repeats (startup,
  collection, the coverage report): the run's wall time minus its tests' time;
- ``tests_s``: the sum of the tests' durations (what the workers share);
- ``others_s``: the other tools' time beside it (mypy + bandit + ruff ...).

With ``n`` workers on ``cores`` cores the run is estimated to end at
``max(fixed_s + tests_s / n, others_s, (n * fixed_s + tests_s + others_s) / cores)``
(the longest process, or all the CPU work shared by the cores), serially at the
same with ``n = 1``; the suite is spread only when that saves at least
:data:`MIN_GAIN` of the serial estimate. Without an earlier run it stays serial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mendflow.core.measurements import TestRun

TESTS_STEP = "pytest-tests"
"""The duration-history step of a test run's tests: the sum of their durations, seconds."""
FIXED_STEP = "pytest-fixed"
"""The duration-history step of a test run's time outside its tests, per worker, seconds."""
OTHER_TOOLS = ("ruff", "mypy", "bandit")
"""The tools run beside the test suite whose time counts as ``others_s``."""

MIN_GAIN = 0.25
"""The share of the serial estimate spreading must save. The estimate is rough and
misses one cost: on a loaded machine a spread run's tests run slower, so more of
them hit the baseline's short first timeout and pay a second chance (a new
process collecting their module again under coverage). On more-itertools, an
estimated 19 % gain was a loss in 3 of 4 runs on the 2-core machine measured."""


@dataclass(frozen=True)
class SuiteCost:
    """What an earlier run of the suite and the tools beside it took (seconds, wall time).

    Attributes:
        fixed_s: the test run's time outside its tests (startup, collection, reports).
        tests_s: the sum of its tests' durations.
        others_s: the longest chain of the other tools run beside it (their sum:
            on 2 cores they share the one core the serial suite leaves).
    """

    fixed_s: float
    tests_s: float
    others_s: float


def tests_s(run: TestRun) -> float:
    """The sum of a run's tests' durations, seconds (JUnit ``time`` of each case)."""
    return sum(case.duration_s for case in run.cases)


def fixed_s(run: TestRun) -> float:
    """A run's time outside its tests, as one worker's share: ``duration - tests / workers``."""
    return max(run.duration_s - tests_s(run) / max(run.workers, 1), 0.0)


def cost_of_run(run: TestRun, others: Sequence[float]) -> SuiteCost:
    """The cost of an earlier measurement: its test run and the other tools' durations."""
    return SuiteCost(fixed_s=fixed_s(run), tests_s=tests_s(run), others_s=sum(others))


def cost_from_history(history: Mapping[str, Sequence[float]]) -> SuiteCost | None:
    """The cost of the newest measurement in a repository's duration history.

    Args:
        history: step -> durations, oldest first (:func:`mendflow.infra.timeouts.load_history`).

    Returns:
        The cost, or None when the history has no test run split into
        :data:`TESTS_STEP` and :data:`FIXED_STEP` yet.
    """
    tests, fixed = history.get(TESTS_STEP), history.get(FIXED_STEP)
    if not tests or not fixed:
        return None
    others = sum(history[tool][-1] for tool in OTHER_TOOLS if history.get(tool))
    return SuiteCost(fixed_s=fixed[-1], tests_s=tests[-1], others_s=others)


def estimate_s(cost: SuiteCost, workers: int, cores: int) -> float:
    """The estimated wall time, seconds, of a measurement with ``workers`` xdist workers."""
    work = workers * cost.fixed_s + cost.tests_s + cost.others_s
    return max(cost.fixed_s + cost.tests_s / workers, cost.others_s, work / max(cores, 1))


def plan_workers(configured: int, cores: int, cost: SuiteCost | None) -> int:
    """The number of xdist workers for one full test run (1 = serial).

    Args:
        configured: ``validation.test_workers``: 0 decides from ``cost``; N >= 1
            is taken as is (1 always serial).
        cores: the cores this process may use.
        cost: what an earlier run took (None: nothing known yet).

    Returns:
        ``configured`` when it is >= 1; else ``cores`` when spreading over them
        is estimated to save at least :data:`MIN_GAIN`, else 1.
    """
    if configured >= 1:
        return configured
    if cost is None or cores < 2:
        return 1
    serial = estimate_s(cost, 1, cores)
    spread = estimate_s(cost, cores, cores)
    return cores if spread <= (1 - MIN_GAIN) * serial else 1
