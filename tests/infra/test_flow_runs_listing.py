"""`mendflow mission list`'s rows (mendflow.infra.flow_runs.listing) on a real Prefect API."""

from __future__ import annotations

from datetime import datetime, timedelta

from mendflow.infra.flow_runs import listing
from mendflow.infra.layout import StateLayout
from mendflow.infra.missions import read_mission, start_mission


def test_a_mission_registered_while_listing_is_not_younger_than_zero(prefect_harness):
    """The CLI's ephemeral API takes seconds to start; a mission started meanwhile
    was listed with a negative age ('-15s')."""
    layout = StateLayout.resolve()
    start_mission("m-new", "/repo", {}, None, layout)
    started = datetime.fromisoformat(read_mission("m-new", layout).started_at)
    rows = listing(layout, now=started - timedelta(seconds=15))
    assert [(r.mission_id, r.age_s) for r in rows] == [("m-new", 0.0)]
