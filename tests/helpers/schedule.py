"""The order in which ``pytest -n 2 --dist loadfile`` hands test files to its workers.

xdist's loadfile scheduler hands out whole files from a queue, and by default sorts
that queue by the number of tests per file (``--loadscope-reorder``): the e2e files,
a few tests of minutes each, came last, and one worker ran one of them alone while
the other had nothing left. Here the queue is longest-first instead (the classic LPT
rule): every worker's collection is sorted by each file's expected seconds, and the
controller keeps that order (``loadscopereorder = False``), so the last files handed
out are the short ones and both workers finish close together.

The expected seconds of a file are its figure in ``tests/durations.json`` (seconds per
file measured on a full CI run of 2 workers; refresh it with
``MENDFLOW_RECORD_DURATIONS=tests/durations.json python -m pytest -n 2 --dist loadfile``),
else an estimate from its tests' marks. Only the order changes: every test still runs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

DURATIONS = Path(__file__).resolve().parents[1] / "durations.json"
"""``{"tests/e2e/test_fleet.py": 300.0, ...}``: measured seconds per test file."""


def estimate_s(item: pytest.Item) -> float:
    """A test's expected seconds when its file has no measured figure, from its marks."""
    if item.get_closest_marker("e2e"):
        return 40.0
    if item.get_closest_marker("slow"):
        return 15.0
    if "prefect_harness" in getattr(item, "fixturenames", ()):
        return 6.0  # runs flows on the session's Prefect API
    return 0.5


def file_of(item: pytest.Item, root: Path) -> str:
    return item.path.relative_to(root).as_posix()


def longest_first(items: list[pytest.Item], root: Path) -> None:
    """Sort ``items`` in place: whole files, the longest expected first; a file's tests
    keep their order, and files of equal weight keep the collection's order."""
    measured = json.loads(DURATIONS.read_text(encoding="utf-8")) if DURATIONS.exists() else {}
    estimated: dict[str, float] = defaultdict(float)
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        name = file_of(item, root)
        estimated[name] += estimate_s(item)
        first.setdefault(name, index)
    weight = {name: float(measured.get(name, estimated[name])) for name in estimated}
    items.sort(key=lambda item: (-weight[file_of(item, root)], first[file_of(item, root)]))


class DurationRecorder:
    """Adds up each test file's setup + call + teardown seconds of a run (in the xdist
    controller, from the workers' reports) and writes them as JSON at the end."""

    def __init__(self, path: Path, root: Path):
        self.path, self.root = path, root
        self.seconds: dict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[report.nodeid.split("::", 1)[0]] += report.duration

    def pytest_sessionfinish(self) -> None:
        ranked = dict(sorted(((k, round(v, 1)) for k, v in self.seconds.items()),
                             key=lambda kv: -kv[1]))
        self.path.write_text(json.dumps(ranked, indent=1) + "\n", encoding="utf-8")
