"""The order in which ``pytest -n 2 --dist loadfile`` hands test files to its workers.

xdist's loadfile scheduler hands out whole files from a queue, and by default sorts
that queue by the number of tests per file (``--loadscope-reorder``): the e2e files,
a few tests of minutes each, came last, and one worker ran one of them alone while
the other had nothing left. Here the queue is longest-first instead (the classic LPT
rule): every worker's collection is sorted by each unit's expected seconds, and the
controller's scheduler (:func:`make_scheduler`) keeps that order, so the last units
handed out are the short ones and both workers finish close together.

A unit is a test file, except in ``tests/e2e/``: its files make :data:`E2E_GROUPS`
units of about equal expected seconds, each run whole by one worker. The e2e files
share a ``prefect server start`` (package-scoped in tests/e2e/conftest.py): one per
group, stopped when its last test is done, instead of one per worker kept alive (and
polling) until the worker's last test; and no group is so long that it alone outlasts
the rest of the suite on the other worker.

The expected seconds of a file are its figure in ``tests/durations.json`` (seconds per
file measured on a full CI run of 2 workers; refresh it with
``MENDFLOW_RECORD_DURATIONS=tests/durations.json python -m pytest -n 2 --dist loadfile``),
else an estimate. Only the order changes: every test still runs.
"""

from __future__ import annotations

import functools
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest

DURATIONS = Path(__file__).resolve().parents[1] / "durations.json"
"""``{"tests/e2e/test_fleet.py": 300.0, ...}``: measured seconds per test file."""

E2E = "tests/e2e/"
E2E_GROUPS = 2
E2E_TEST_S = 40.0
"""Expected seconds of an e2e test whose file has no measured figure."""


@functools.cache
def measured() -> dict[str, float]:
    if not DURATIONS.exists():
        return {}
    return {k: float(v) for k, v in json.loads(DURATIONS.read_text(encoding="utf-8")).items()}


def estimate_s(item: pytest.Item) -> float:
    """A test's expected seconds when its file has no measured figure, from its marks."""
    if item.get_closest_marker("e2e"):
        return E2E_TEST_S
    if item.get_closest_marker("slow"):
        return 15.0
    if "prefect_harness" in getattr(item, "fixturenames", ()):
        return 6.0  # runs flows on the session's Prefect API
    return 0.5


def file_of(nodeid: str) -> str:
    """``tests/a/test_b.py`` of ``tests/a/test_b.py::test_c[x]``."""
    return nodeid.split("::", 1)[0]


def units(nodeids: Iterable[str]) -> dict[str, str]:
    """Each test file of ``nodeids`` -> its unit of work: the file itself, or for an e2e
    file ``tests/e2e/ (group N)``. The groups are filled longest file first, each into
    the group with the fewest expected seconds so far (measured, else
    :data:`E2E_TEST_S` a test); computed from the test ids alone, so that the controller
    and every worker agree."""
    counts = Counter(file_of(nodeid) for nodeid in nodeids)
    weight = {name: measured().get(name, count * E2E_TEST_S)
              for name, count in counts.items() if name.startswith(E2E)}
    load = [0.0] * E2E_GROUPS
    unit = {name: name for name in counts}
    for name in sorted(weight, key=lambda n: (-weight[n], n)):
        group = load.index(min(load))
        load[group] += weight[name]
        unit[name] = f"{E2E} (group {group + 1})"
    return unit


def longest_first(items: list[pytest.Item]) -> None:
    """Sort ``items`` in place: whole units, the longest expected first, and within a
    unit whole files, the longest first (in the e2e group of the fleet test, whose servers
    are its own, the package's ``prefect server`` is started only after it); a file's
    tests keep their order, and equal weights keep the collection's order."""
    unit = units(item.nodeid for item in items)
    estimated: dict[str, float] = defaultdict(float)
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        name = file_of(item.nodeid)
        estimated[name] += estimate_s(item)
        first.setdefault(name, index)
        first.setdefault(unit[name], index)
    weight: dict[str, float] = defaultdict(float)
    for name, seconds in estimated.items():
        weight[name] = measured().get(name, seconds)
        weight[unit[name]] += weight[name] if unit[name] != name else 0.0

    def key(item: pytest.Item) -> tuple[float, int, float, int]:
        name = file_of(item.nodeid)
        return -weight[unit[name]], first[unit[name]], -weight[name], first[name]

    items.sort(key=key)


def make_scheduler(config: pytest.Config, log):
    """xdist's loadfile scheduler with :func:`units` as its units, in the workers' order."""
    from xdist.scheduler import LoadFileScheduling

    class LongestFirstScheduling(LoadFileScheduling):
        _units: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._units is None and self.collection is not None:
                self._units = units(self.collection)
            return (self._units or {}).get(file_of(nodeid), file_of(nodeid))

    config.option.loadscopereorder = False  # keep the workers' (longest-first) order
    return LongestFirstScheduling(config, log)


class DurationRecorder:
    """Adds up each test file's setup + call + teardown seconds of a run (in the xdist
    controller, from the workers' reports) and writes them as JSON at the end."""

    def __init__(self, path: Path):
        self.path = path
        self.seconds: dict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[file_of(report.nodeid)] += report.duration

    def pytest_sessionfinish(self) -> None:
        ranked = dict(sorted(((k, round(v, 1)) for k, v in self.seconds.items()),
                             key=lambda kv: -kv[1]))
        self.path.write_text(json.dumps(ranked, indent=1) + "\n", encoding="utf-8")
