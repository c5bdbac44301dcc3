"""The automation that tells the truth about dead flow runs (and may resume them).

A flow run whose process is SIGKILLed stays RUNNING forever in open-source
Prefect (REFERENCE.md). Served flow runs send a heartbeat event
(``prefect.flow-run.heartbeat``) every ``deployment.heartbeat_s`` seconds;
this proactive automation fires when a running mission's heartbeats stop for
three periods, and marks that flow run Crashed. With
``deployment.auto_resume_crashed`` it then sets the run back to Scheduled: the
served deployment runs the *same* flow run again, whose mission id is cached
per flow run, so the mission replays its completed steps from the cache and
continues (as ``mendflow mission resume`` does by hand).
"""

from __future__ import annotations

from datetime import timedelta

from prefect.automations import Automation, ChangeFlowRunState, EventTrigger, Posture
from prefect.client.schemas.objects import StateType

NAME = "mendflow-crashed-missions"
FLOW_NAME = "maintenance-mission"
_ENDS = {f"prefect.flow-run.{state}" for state in
         ("Completed", "Failed", "Cancelled", "Crashed", "Paused", "Suspended")}


def crash_automation(heartbeat_s: float, auto_resume: bool) -> Automation:
    """Build (without saving) the automation for missions whose heartbeats stop.

    Args:
        heartbeat_s: the served runs' heartbeat period, seconds; silence for
            three periods means the process is gone.
        auto_resume: also reschedule the crashed run.

    Returns:
        The :class:`prefect.automations.Automation`.
    """
    trigger = EventTrigger(
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": FLOW_NAME},
        after={"prefect.flow-run.heartbeat"},
        expect={"prefect.flow-run.heartbeat", *_ENDS},
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive, threshold=1, within=timedelta(seconds=3 * heartbeat_s),
    )
    actions = [ChangeFlowRunState(state=StateType.CRASHED,
                                  message=f"no heartbeat for {3 * heartbeat_s:g} s: "
                                          "the mission's process is gone")]
    if auto_resume:
        actions.append(ChangeFlowRunState(state=StateType.SCHEDULED,
                                          message="rescheduled by mendflow: the mission "
                                                  "resumes from its cached steps"))
    return Automation(name=NAME, description="mendflow: mark missions whose heartbeats stop "
                      "as Crashed" + (" and resume them" if auto_resume else ""),
                      trigger=trigger, actions=actions)


def install_crash_automation(heartbeat_s: float = 30, auto_resume: bool = False) -> Automation:
    """Create or replace the automation on the Prefect API (idempotent: one per API).

    Args:
        heartbeat_s: the served runs' heartbeat period, seconds.
        auto_resume: also reschedule crashed runs.

    Returns:
        The saved automation (with its id).
    """
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for existing in client.read_automations_by_name(NAME):
            client.delete_automation(existing.id)
    return crash_automation(heartbeat_s, auto_resume).create()
