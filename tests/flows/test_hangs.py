"""A mission on a suite with a test that loops forever and an honest slow test.

Real Prefect (test harness), real pytest-timeout, small timeouts: the loop is
a ``hang`` finding at baseline, the honest test passes on its second chance,
and a one-file patch is accepted although the loop hangs in its validation
too (a known hang is no regression).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mendflow.flows.mission import maintenance_mission
from tests.helpers.target import target_python

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

FILES = {
    "pkg/__init__.py": "",
    "pkg/lib.py": "import os\n\n\ndef add(a, b):\n    return a + b\n\n\n"
                  "def spin():\n    n = 0\n    while n >= 0:\n        n += 1\n",
    "tests/test_lib.py": "import time\n\nfrom pkg.lib import add, spin\n\n\n"
                         "def test_add():\n    assert add(2, 3) == 5\n\n\n"
                         "def test_spins():\n    spin()\n\n\n"
                         "def test_waits_honestly():\n    time.sleep(2.5)\n",
}


def test_a_hang_is_a_finding_and_never_a_regression_of_a_patch(make_repo, tmp_path: Path):
    repo = make_repo(FILES)
    config = tmp_path / "mendflow.yaml"
    config.write_text(yaml.safe_dump({
        "environment": {"type": "interpreter", "python": target_python()},
        "tools": {"mypy": {"enabled": False}, "bandit": {"enabled": False},
                  "pytest": {"first_timeout_s": 1, "per_test_timeout_s": 6,
                             "hang_timeout_s": 0.5}},
        "mission": {"max_iterations": 1, "target_score": 100}}))

    result = maintenance_mission(path=str(repo), config_file=str(config), mission_id="hangs")

    hangs = [f for f in result.findings if f.rule == "hang"]
    assert [(f.source, f.test_id) for f in hangs] == [("pytest", "tests/test_lib.py::test_spins")]
    assert "no result within 6 s" in hangs[0].message
    honest = {f.rule for f in result.findings
              if f.test_id == "tests/test_lib.py::test_waits_honestly"}
    assert not honest & {"hang", "test-failure"}  # it passed on its second chance
    (patch,) = result.patches
    assert patch.status == "accepted", patch.reason  # the loop hung in its validation too
    gates = {g.gate: g for g in patch.validation.gates}
    assert gates["no-test-regression"].passed and gates["no-new-findings"].passed
    assert any(f.rule == "hang" for f in result.final_findings)
