"""`mendflow mission list`'s rows (mendflow.infra.flow_runs.listing) on a real Prefect API."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta

from mendflow.infra.flow_runs import listing
from mendflow.infra.layout import StateLayout
from mendflow.infra.missions import mark_interrupted, read_mission, start_mission


def test_a_mission_registered_while_listing_is_not_younger_than_zero(prefect_harness):
    """The CLI's ephemeral API takes seconds to start; a mission started meanwhile
    was listed with a negative age ('-15s')."""
    layout = StateLayout.resolve()
    start_mission("m-new", "/repo", {}, None, layout)
    started = datetime.fromisoformat(read_mission("m-new", layout).started_at)
    rows = listing(layout, now=started - timedelta(seconds=15))
    assert [(r.mission_id, r.age_s) for r in rows] == [("m-new", 0.0)]


def test_a_mission_stopped_by_ctrl_c_is_listed_crashed_and_interrupted(prefect_harness):
    """The documented states stay (crashed); the detail says it was a Ctrl-C, not a crash."""
    layout = StateLayout.resolve()
    start_mission("m-ctrl-c", "/repo", {}, None, layout)
    mark_interrupted("m-ctrl-c", "SIGINT", layout)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    record = read_mission("m-ctrl-c", layout)
    path = layout.mission("m-ctrl-c") / "mission.json"
    path.write_text(record.model_copy(update={"pid": int(gone)}).model_dump_json())
    row = next(r for r in listing(layout) if r.mission_id == "m-ctrl-c")
    assert (row.status, row.detail) == ("crashed", "interrupted (Ctrl-C)")
    start_mission("m-ctrl-c", "/repo", {}, None, layout)  # resumed: running again
    assert read_mission("m-ctrl-c", layout).interrupted is None
