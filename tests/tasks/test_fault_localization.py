"""Spectrum-based fault localization on hand-made impact maps (the pure part)."""

from __future__ import annotations

from mendflow.core.models import ImpactFile, ImpactMap
from mendflow.tasks.detect.common import is_library_path
from mendflow.tasks.detect.fault_localization import Spectrum

TESTS = ("tests/test_a.py::test_ok", "tests/test_a.py::test_ok_too", "tests/test_a.py::test_bad",
         "tests/test_a.py::test_worse", "tests/test_b.py::test_other_bad",
         *(f"tests/test_c.py::test_fine_{i}" for i in range(4)))
OK, OK_TOO, BAD, WORSE, OTHER = range(5)
FINE = tuple(range(5, 9))


def impact(lines: dict[str, dict[int, tuple[int, ...]]]) -> ImpactMap:
    return ImpactMap(tests=TESTS, files={
        path: ImpactFile(sha256=None, lines=by_line) for path, by_line in lines.items()})


def spectrum(data: ImpactMap, failing: tuple[int, ...]) -> Spectrum:
    passing = [TESTS[i] for i in range(len(TESTS)) if i not in failing]
    return Spectrum(data, [TESTS[i] for i in failing], passing, include=is_library_path)


def test_the_line_only_failing_tests_run_is_the_suspect():
    data = impact({"pkg/core.py": {
        1: (OK, OK_TOO, BAD, WORSE),  # the entry every test runs
        2: (BAD, WORSE),               # the branch only the failing tests take
        3: (OK, OK_TOO)}})
    found = spectrum(data, (BAD, WORSE))
    for test in (BAD, WORSE):
        suspect = found.suspect(TESTS[test])
        assert (suspect.path, suspect.line, suspect.failed, suspect.passed) == ("pkg/core.py", 2, 2, 0)
        assert suspect.score == 1.0


def test_two_defects_behind_one_entry_point_get_their_own_suspects():
    # every test runs the entry point (line 1) and the branch test (line 2); the two
    # failing tests of defect A take line 3, the failing test of defect B line 6,
    # and a passing test takes line 6 as well (B shows only for some inputs)
    everyone = tuple(range(len(TESTS)))
    data = impact({"pkg/core.py": {1: everyone, 2: everyone, 3: (BAD, WORSE), 6: (OK_TOO, OTHER)}})
    found = spectrum(data, (BAD, WORSE, OTHER))
    assert {found.suspect(TESTS[t]).line for t in (BAD, WORSE)} == {3}
    assert found.suspect(TESTS[OTHER]).line == 6


def test_tests_and_lines_outside_the_code_under_test_are_never_suspects():
    data = impact({"tests/test_a.py": {10: (BAD,)}, "tests/conftest.py": {3: (BAD,)},
                   "pkg/core.py": {1: (OK, BAD)}})
    found = spectrum(data, (BAD,))
    assert found.suspect(TESTS[BAD]).path == "pkg/core.py"
    assert found.suspect("tests/test_c.py::test_not_in_the_map") is None
    assert spectrum(impact({"tests/test_a.py": {10: (BAD,)}}), (BAD,)).suspect(TESTS[BAD]) is None


def test_ties_go_to_the_same_line_for_every_test_of_a_defect():
    # lines 4 and 8 are run by exactly the same tests: both tests must agree on one
    data = impact({"pkg/b.py": {8: (BAD, WORSE)}, "pkg/a.py": {4: (BAD, WORSE), 1: (OK, BAD)}})
    found = spectrum(data, (BAD, WORSE))
    assert found.suspect(TESTS[BAD]) == found.suspect(TESTS[WORSE])
    assert (found.suspect(TESTS[BAD]).path, found.suspect(TESTS[BAD]).line) == ("pkg/a.py", 4)
