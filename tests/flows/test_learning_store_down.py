"""A mission whose outcome store is down: reported, and the mission goes on."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import yaml

from mendflow.flows.mission import maintenance_mission
from mendflow.infra import audit
from mendflow.infra.progress import PROGRESS_LOGGER
from tests.helpers.e2e import free_port
from tests.helpers.target import target_python

pytestmark = pytest.mark.usefixtures("prefect_harness")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_mission_goes_on_when_the_outcome_store_is_down(make_repo, tmp_path, monkeypatch):
    repo = make_repo({"pkg/__init__.py": "", "pkg/lib.py": "import os\nimport sys\n\n\n"
                      "def add(a, b):\n    return a + b\n",
                      "tests/test_lib.py": "from pkg.lib import add\n\n\ndef test_add():\n"
                      "    assert add(2, 3) == 5\n"})
    port = free_port()  # nothing listens there
    config = tmp_path / "mendflow.yaml"
    config.write_text(yaml.safe_dump({
        "environment": {"type": "interpreter", "python": target_python()},
        "tools": {"mypy": {"enabled": False}}, "mission": {"max_iterations": 1},
        "learning": {"database_url": f"postgresql+psycopg://u:s3cret@127.0.0.1:{port}/x",
                     "connect_timeout_s": 1}}), encoding="utf-8")
    handler = Lines()
    logging.getLogger(PROGRESS_LOGGER).addHandler(handler)
    try:
        started = time.monotonic()
        result = maintenance_mission(path=str(repo), config_file=str(config),
                                     mission_id="store-down")
        elapsed = time.monotonic() - started
    finally:
        logging.getLogger(PROGRESS_LOGGER).removeHandler(handler)

    assert result.status == "completed"
    assert [p for p in result.patches if p.status == "accepted" and p.commit]
    down = [line for line in handler.lines if "outcome store unavailable" in line]
    assert down and all("the mission goes on" in line for line in down)
    assert not any("s3cret" in line for line in handler.lines)  # the password is masked
    assert elapsed < 600
    # the audit trail is a file: it still records the commits
    home = Path(__import__("os").environ["MENDFLOW_HOME"])
    assert "commit" in [e["what"] for e in audit.read(home, mission="store-down")]
    report = (Path(result.report_dir) / "final_maintenance_report.md").read_text()
    assert "## Self-analysis" in report and "## Insights" not in report
    assert "## Strategy choices" in report and "Beta(1, 1)" in report  # no history: uniform
