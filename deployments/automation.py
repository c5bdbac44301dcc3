"""The automations that tell the truth about dead flow runs (and may resume them).

A flow run whose process is SIGKILLed stays RUNNING forever in open-source
Prefect (nothing on the server notices the dead process). Served flow runs send a heartbeat event
(``prefect.flow-run.heartbeat``, emitted by Prefect's flow engine with the run
as resource and its flow and deployment as related resources) every
``deployment.heartbeat_s`` seconds. For each served deployment, ``mendflow
serve`` installs:

* a *proactive* automation that fires when a run of that deployment, after a
  heartbeat, sends neither another heartbeat nor a final/paused state event for
  three periods, and marks that flow run Crashed (with :func:`crash_message`);
* with ``deployment.auto_resume_crashed``, a *reactive* automation on the
  ``prefect.flow-run.Crashed`` event carrying that very message, which sets
  the run Scheduled: the served deployment runs the *same* flow run again,
  whose mission id is cached per flow run, so the mission replays its completed
  steps from the cache and continues (as ``mendflow mission resume`` does by
  hand), up to ``deployment.max_auto_resumes`` times: the flow counts these
  Crashed states in its own history and fails for good past the cap
  (:func:`mendflow.tasks.preflight.check_crash_loop`). It is a second automation, not a
  second action of the first, because Prefect runs an automation's actions
  concurrently: "Scheduled" could land before "Crashed" and be overwritten by it.

Both are scoped to one deployment (its id), so several ``mendflow serve``
processes with their own heartbeat periods share a Prefect API without
marking each other's runs. Installing is idempotent and leaves an unchanged
automation alone: a restarted ``mendflow serve`` keeps the pending silence
windows of the runs its predecessor left behind.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect.automations import Automation, ChangeFlowRunState, EventTrigger, Posture
from prefect.client.schemas.objects import StateType

from mendflow.infra.flow_runs import CRASH_MARK

LEGACY_NAME = "mendflow-crashed-missions"
"""The single, API-wide automation of earlier versions: removed on install."""
SILENT_PERIODS = 3
"""Heartbeat periods without a heartbeat after which a run counts as dead."""
MIN_HEARTBEAT_S = 30
"""Prefect's smallest heartbeat period, seconds (``mendflow.flows.heartbeat_frequency`` is
``ge=30`` and ``prefect.flow_engine.MINIMUM_HEARTBEAT_INTERVAL`` is 30)."""
HEARTBEAT = "prefect.flow-run.heartbeat"
_ENDS = frozenset(f"prefect.flow-run.{state}" for state in (
    "Completed", "Failed", "TimedOut", "Cancelled", "Crashed", "Paused", "Suspended"))
"""State events after which a run legitimately stops its heartbeats (the event
name carries the state *name*: a timed-out flow is Failed named TimedOut, a
suspended one Paused named Suspended)."""


def crash_name(deployment_name: str) -> str:
    """The name of the crash automation of ``maintenance-mission/<deployment_name>``."""
    return f"{LEGACY_NAME}/{deployment_name}"


def resume_name(deployment_name: str) -> str:
    """The name of the auto-resume automation of ``maintenance-mission/<deployment_name>``."""
    return f"mendflow-resume-crashed/{deployment_name}"


def crash_message(heartbeat_s: int) -> str:
    """The message of the Crashed state the crash automation sets (and the resume one matches)."""
    return (f"no heartbeat for {SILENT_PERIODS * heartbeat_s} s: the mission's process is gone "
            + CRASH_MARK)


def _runs_of(deployment_id: UUID) -> dict[str, Any]:
    """Trigger filters selecting the flow-run events of one deployment."""
    return {"match": {"prefect.resource.id": "prefect.flow-run.*"},
            "match_related": {"prefect.resource.role": "deployment",
                              "prefect.resource.id": f"prefect.deployment.{deployment_id}"}}


def crash_automation(deployment_id: UUID, deployment_name: str, heartbeat_s: int) -> Automation:
    """Build (without saving) the automation for a deployment's runs whose heartbeats stop.

    Args:
        deployment_id: the served deployment's id (Prefect API).
        deployment_name: its name (``maintenance-mission/<name>``), for the automation name.
        heartbeat_s: the served runs' heartbeat period, seconds; silence for
            :data:`SILENT_PERIODS` periods means the process is gone.

    Returns:
        A proactive :class:`prefect.automations.Automation` that sets the run Crashed.
    """
    trigger = EventTrigger(
        **_runs_of(deployment_id), after={HEARTBEAT}, expect={HEARTBEAT, *_ENDS},
        for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
        within=timedelta(seconds=SILENT_PERIODS * heartbeat_s))
    return Automation(
        name=crash_name(deployment_name),
        description=f"mendflow: mark runs of maintenance-mission/{deployment_name} Crashed "
                    f"when their heartbeats ({heartbeat_s} s) stop for {SILENT_PERIODS} periods",
        trigger=trigger,
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=crash_message(heartbeat_s))])


def resume_automation(deployment_id: UUID, deployment_name: str, heartbeat_s: int) -> Automation:
    """Build (without saving) the automation that reschedules runs the crash automation marked.

    Args:
        deployment_id: the served deployment's id (Prefect API).
        deployment_name: its name, for the automation name.
        heartbeat_s: the heartbeat period the crash automation was built with, seconds.

    Returns:
        A reactive :class:`prefect.automations.Automation` on ``prefect.flow-run.Crashed``
        events whose state message is :func:`crash_message`, setting the run Scheduled.
        Runs that crashed otherwise (the runner saw the process die) are left alone.
    """
    runs = _runs_of(deployment_id)
    runs["match"] = {**runs["match"], "prefect.state-message": crash_message(heartbeat_s)}
    trigger = EventTrigger(**runs, expect={"prefect.flow-run.Crashed"},
                           for_each={"prefect.resource.id"}, posture=Posture.Reactive,
                           threshold=1, within=timedelta(0))
    return Automation(
        name=resume_name(deployment_name),
        description=f"mendflow: reschedule runs of maintenance-mission/{deployment_name} "
                    "marked Crashed for missing heartbeats; the mission resumes from its cache",
        trigger=trigger,
        actions=[ChangeFlowRunState(state=StateType.SCHEDULED,
                                    message="rescheduled by mendflow: the mission resumes "
                                            "from its cached steps")])


def _essence(automation: Automation) -> dict[str, Any]:
    """What an automation does, without its ids (to compare a saved one with a wanted one)."""
    essence = automation.model_dump(
        mode="json", include={"name", "description", "enabled", "trigger", "actions",
                              "actions_on_trigger", "actions_on_resolve"},
        exclude={"trigger": {"id"}})
    for key in ("after", "expect", "for_each"):  # sets, dumped in hash order
        essence["trigger"][key] = sorted(essence["trigger"].get(key) or ())
    return essence


def install_crash_automations(deployment_id: UUID, deployment_name: str, heartbeat_s: int = 30,
                              auto_resume: bool = False) -> list[Automation]:
    """Create, replace or keep the deployment's crash (and resume) automations on the Prefect API.

    An automation already saved exactly as wanted is kept (with its pending
    silence windows); one that differs is replaced; the resume automation is
    deleted when ``auto_resume`` is off, and the API-wide automation of earlier
    versions (:data:`LEGACY_NAME`) is deleted.

    Args:
        deployment_id: the served deployment's id.
        deployment_name: its name (``maintenance-mission/<deployment_name>``).
        heartbeat_s: the served runs' heartbeat period, seconds (at least
            :data:`MIN_HEARTBEAT_S`).
        auto_resume: also reschedule runs marked Crashed for missing heartbeats.

    Returns:
        The automations now saved for the deployment (crash first), with their ids.

    Raises:
        ValueError: ``heartbeat_s`` is below Prefect's minimum.
    """
    from prefect.client.orchestration import get_client

    if heartbeat_s < MIN_HEARTBEAT_S:
        raise ValueError(f"heartbeat_s={heartbeat_s}: Prefect's smallest heartbeat period is "
                         f"{MIN_HEARTBEAT_S} s")
    wanted = [crash_automation(deployment_id, deployment_name, heartbeat_s)]
    if auto_resume:
        wanted.append(resume_automation(deployment_id, deployment_name, heartbeat_s))
    names = {automation.name for automation in wanted}
    saved: list[Automation] = []
    with get_client(sync_client=True) as client:
        for stale in (LEGACY_NAME, resume_name(deployment_name)):
            if stale not in names:
                for existing in client.read_automations_by_name(stale):
                    client.delete_automation(existing.id)
        for automation in wanted:
            existing = client.read_automations_by_name(automation.name)
            keep = [e for e in existing if _essence(e) == _essence(automation)][:1]
            for other in existing:
                if other not in keep:
                    client.delete_automation(other.id)
            saved.append(keep[0] if keep else automation.create())
    return saved
