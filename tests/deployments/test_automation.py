"""The crash automations `mendflow serve` installs, saved on a real Prefect API.

That they really fire on a killed served run is tests/e2e/test_crash_automation.py.
"""

from __future__ import annotations

import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import Posture

from mendflow.core.config_ops import DeploymentConfig
from mendflow.deployments.automation import (
    LEGACY_NAME,
    crash_automation,
    crash_message,
    crash_name,
    install_crash_automations,
    resume_name,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _saved(name: str):
    with get_client(sync_client=True) as client:
        return client.read_automations_by_name(name)


def test_the_automation_marks_silent_runs_of_its_deployment_crashed():
    deployment = uuid.uuid4()
    install_crash_automations(deployment, "unit-a", heartbeat_s=30, auto_resume=False)

    (automation,) = _saved(crash_name("unit-a"))
    trigger = automation.trigger
    assert trigger.posture == Posture.Proactive
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed",
            "prefect.flow-run.Suspended", "prefect.flow-run.TimedOut"} <= trigger.expect
    assert trigger.within.total_seconds() == 90
    assert trigger.for_each == {"prefect.resource.id"}
    # the flow engine's heartbeat names the deployment only by id (role "deployment")
    assert trigger.match_related.model_dump() == {"prefect.resource.role": "deployment",
                                           "prefect.resource.id": f"prefect.deployment.{deployment}"}
    assert [(a.type, a.state.value, a.message) for a in automation.actions] == \
        [("change-flow-run-state", "CRASHED", crash_message(30))]
    assert _saved(resume_name("unit-a")) == []


def test_auto_resume_is_a_reactive_automation_on_its_own_crash_message():
    deployment = uuid.uuid4()
    install_crash_automations(deployment, "unit-b", heartbeat_s=40, auto_resume=True)

    (crash,) = _saved(crash_name("unit-b"))
    (resume,) = _saved(resume_name("unit-b"))
    assert [a.state.value for a in crash.actions] == ["CRASHED"]
    assert crash.trigger.within.total_seconds() == 120
    assert resume.trigger.posture == Posture.Reactive
    assert resume.trigger.expect == {"prefect.flow-run.Crashed"}
    assert resume.trigger.match["prefect.state-message"] == [crash_message(40)]
    assert resume.trigger.match_related == crash.trigger.match_related
    assert [a.state.value for a in resume.actions] == ["SCHEDULED"]


def test_reinstalling_keeps_an_unchanged_automation_and_replaces_a_changed_one():
    deployment = uuid.uuid4()
    first = install_crash_automations(deployment, "unit-c", heartbeat_s=30, auto_resume=True)
    again = install_crash_automations(deployment, "unit-c", heartbeat_s=30, auto_resume=True)
    assert [a.id for a in again] == [a.id for a in first]  # pending silence windows survive

    changed = install_crash_automations(deployment, "unit-c", heartbeat_s=60, auto_resume=False)
    (crash,) = _saved(crash_name("unit-c"))
    assert crash.id == changed[0].id != first[0].id
    assert crash.trigger.within.total_seconds() == 180
    assert _saved(resume_name("unit-c")) == []


def test_deployments_keep_their_own_automations_and_the_legacy_one_goes():
    legacy = crash_automation(uuid.uuid4(), "old", 30).model_copy(update={"name": LEGACY_NAME})
    legacy.create()
    install_crash_automations(uuid.uuid4(), "unit-d", heartbeat_s=30)
    install_crash_automations(uuid.uuid4(), "unit-e", heartbeat_s=60)

    assert len(_saved(crash_name("unit-d"))) == len(_saved(crash_name("unit-e"))) == 1
    assert _saved(LEGACY_NAME) == []


def test_heartbeat_below_prefects_minimum_is_refused():
    with pytest.raises(ValueError, match="smallest heartbeat period is 30 s"):
        install_crash_automations(uuid.uuid4(), "unit-f", heartbeat_s=10)
    with pytest.raises(ValueError, match="greater than or equal to 30"):
        DeploymentConfig(heartbeat_s=10)
