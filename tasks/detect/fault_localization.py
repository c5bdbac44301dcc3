"""Spectrum-based fault localization: the line a failing test most likely fails because of.

When a failing test's traceback has no frame in the code under test (the test
asserts on a wrong result), the traceback cannot say where the defect lives.
The baseline's per-test coverage can: a full run records which tests execute
which lines (coverage.py contexts, the :class:`~mendflow.core.models.ImpactMap`
that test selection also uses). A line that the failing tests execute and the
passing tests do not is suspicious. Its Tarantula score (Jones and Harrold,
2005) is::

    score = (failed(line) / total_failed) /
            (failed(line) / total_failed + passed(line) / total_passed)

where ``failed(line)`` and ``passed(line)`` count the failing and the passing
tests that execute the line. Each failing test's suspect is the most suspicious
line it executes itself, so tests of different defects get different suspects;
ties go to the line more failing tests execute, then to the lower path and line,
the same for every test, so the tests of one defect agree on one suspect.

Tarantula ranks a line by the share of the tests executing it that fail, so a
line that every failing test runs (the entry point of a library, shared by
several defects) does not outrank the branch that only one defect's tests take.
On 44 bugs injected three at a time into tabulate, more-itertools and toolz
(``bench/grouping.py``, seed 7) no group mixed two bugs and one pass over the
groups fixed all 44 (46 model calls); Ochiai, which weighs how many failing
tests execute a line, mixed two groups and left a bug for a later cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mendflow.core.models import ImpactMap


@dataclass(frozen=True)
class Suspect:
    """One line of the code under test and how suspicious it is.

    Attributes:
        path: the repository-relative POSIX path of the file.
        line: the 1-based line number.
        score: the Tarantula score, in [0, 1].
        failed: the failing tests that execute the line.
        passed: the passing tests that execute the line.
    """

    path: str
    line: int
    score: float
    failed: int
    passed: int

    def rank(self) -> tuple[float, int, str, int]:
        """Sort key, smallest first: highest score, most failing tests, lowest path and line."""
        return (-self.score, -self.failed, self.path, self.line)


class Spectrum:
    """The suspects of the failing tests of one test run.

    Args:
        impact: the run's impact map (which tests executed which lines).
        failing: node ids of the tests that failed or errored in that run.
        passing: node ids of the tests that passed in that run (skipped ones are neither).
        include: which files count as code under test (a path predicate, e.g.
            :func:`mendflow.tasks.detect.common.is_library_path`); lines of other
            files (tests, conftest) are never suspects.
    """

    def __init__(self, impact: ImpactMap, failing: Iterable[str], passing: Iterable[str],
                 include: Callable[[str], bool]) -> None:
        index = {test: i for i, test in enumerate(impact.tests)}
        failed = {index[t] for t in failing if t in index}
        passed = {index[t] for t in passing if t in index} - failed
        self._best: dict[int, Suspect] = {}
        self._index = index
        total, total_passed = len(failed), len(passed)
        if not total or not total_passed:  # no passing test: every line scores the same
            return
        for path, data in impact.files.items():
            if not include(path):
                continue
            for line, tests in data.lines.items():
                here = [t for t in tests if t in failed]
                if not here:
                    continue
                ep = sum(1 for t in tests if t in passed)
                suspect = Suspect(path, line, _tarantula(len(here), ep, total, total_passed),
                                  len(here), ep)
                for test in here:
                    best = self._best.get(test)
                    if best is None or suspect.rank() < best.rank():
                        self._best[test] = suspect

    def suspect(self, nodeid: str) -> Suspect | None:
        """The most suspicious line that this failing test executes.

        Args:
            nodeid: a pytest node id of a test that failed in the run.

        Returns:
            The :class:`Suspect`, or None when the test is not in the map (it ran in
            no measured context), executed no line of the code under test, or no test
            passed (the spectrum then tells no line from another).
        """
        position = self._index.get(nodeid)
        return self._best.get(position) if position is not None else None


def _tarantula(failed: int, passed: int, total_failed: int, total_passed: int) -> float:
    fail_rate = failed / total_failed
    pass_rate = passed / total_passed
    return fail_rate / (fail_rate + pass_rate)
