"""The order in which ``pytest -n 2 --dist loadfile`` hands test files to its workers.

xdist's loadfile scheduler hands out whole files from a queue, and by default sorts
that queue by the number of tests per file (``--loadscope-reorder``): the e2e files,
a few tests of minutes each, came last, and one worker ran one of them alone while
the other had nothing left. Here the queue is longest-first instead (the classic LPT
rule): every worker's collection is sorted by each unit's expected seconds, and the
controller's scheduler (:func:`make_scheduler`) keeps that order, so the last units
handed out are the short ones and both workers finish close together.

A unit is a test file, except ``tests/e2e/``: its files are one unit, run by one
worker, since they share that worker's ``prefect server start`` and served deployment
(session fixtures of tests/e2e/conftest.py): one worker starts them, not both.

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


GROUPED = ("tests/e2e/",)
"""Folders whose test files are one unit of work (one worker runs them all)."""


def file_of(item: pytest.Item, root: Path) -> str:
    return item.path.relative_to(root).as_posix()


def scope_of(nodeid: str) -> str:
    """The unit of work of a test id (``tests/a/test_b.py::test_c``): its file, or the
    grouped folder the file is in."""
    path = nodeid.split("::", 1)[0]
    return next((folder for folder in GROUPED if path.startswith(folder)), path)


def longest_first(items: list[pytest.Item], root: Path) -> None:
    """Sort ``items`` in place: whole units, the longest expected first; a unit's files
    stay together and keep their order, so do a file's tests, and units of equal weight
    keep the collection's order."""
    measured = json.loads(DURATIONS.read_text(encoding="utf-8")) if DURATIONS.exists() else {}
    estimated: dict[str, float] = defaultdict(float)
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        name = file_of(item, root)
        estimated[name] += estimate_s(item)
        first.setdefault(name, index)
        first.setdefault(scope_of(name), index)
    weight: dict[str, float] = defaultdict(float)
    for name in estimated:
        weight[scope_of(name)] += float(measured.get(name, estimated[name]))

    def key(item: pytest.Item) -> tuple[float, int, int]:
        name = file_of(item, root)
        return -weight[scope_of(name)], first[scope_of(name)], first[name]

    items.sort(key=key)


def make_scheduler(config: pytest.Config, log):
    """xdist's loadfile scheduler with :func:`scope_of` units, in the workers' order."""
    from xdist.scheduler import LoadFileScheduling

    class LongestFirstScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    config.option.loadscopereorder = False  # keep the workers' (longest-first) order
    return LongestFirstScheduling(config, log)


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
