"""The crash automation `mendflow serve` installs, saved on a real Prefect API."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client

from deployments.automation import NAME, install_crash_automation

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _saved():
    with get_client(sync_client=True) as client:
        return client.read_automations_by_name(NAME)


def test_the_automation_marks_silent_missions_crashed():
    install_crash_automation(heartbeat_s=30, auto_resume=False)
    (automation,) = _saved()
    trigger = automation.trigger
    assert trigger.posture == "Proactive"
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert "prefect.flow-run.heartbeat" in trigger.expect
    assert trigger.within.total_seconds() == 90
    assert trigger.for_each == {"prefect.resource.id"}
    assert [(a.type, a.state.value) for a in automation.actions] == \
        [("change-flow-run-state", "CRASHED")]


def test_auto_resume_reschedules_and_installing_twice_keeps_one():
    install_crash_automation(heartbeat_s=10, auto_resume=False)
    install_crash_automation(heartbeat_s=10, auto_resume=True)
    (automation,) = _saved()
    assert [a.state.value for a in automation.actions] == ["CRASHED", "SCHEDULED"]
    assert automation.trigger.within.total_seconds() == 30
