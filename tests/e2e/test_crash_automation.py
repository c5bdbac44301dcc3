"""The crash automations of ``mendflow serve`` fire on a real server when a served run is killed.

Two ``mendflow serve`` processes of their own (deployments distinct from the
session's ``served`` one) run one mission each against the session's
``prefect server start``, at the same time, since the wait is Prefect's:
heartbeats every 30 s (Prefect's minimum) and a run silent for three periods
is marked Crashed. The target repository's test suite blocks on a hold file,
so that each mission is inside its pytest step when its whole serve process
group (the flow run process included) is SIGKILLed:

* ``auto_resume_crashed: false``: the automation marks the run Crashed, and
  nothing reschedules it;
* ``auto_resume_crashed: true``: the run goes Crashed, then Scheduled, and a
  restarted ``mendflow serve`` (started right after the kill, as a supervisor
  would; it reinstalls the automations without losing the pending silence
  window) runs the *same* flow run again: the mission resumes from its cached
  steps and completes.

The scenarios run in a background thread (tests/helpers/crash.py), started by the
module that runs before this one on the same server, so that their ~2 minutes of
waiting pass beside its missions.
"""

from __future__ import annotations

import pytest

from mendflow.deployments.automation import SILENT_PERIODS, crash_message
from tests.helpers.crash import HEARTBEAT_S, CrashScenarios, heartbeats
from tests.helpers.e2e import Server, session_of

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def killed(crash_scenarios: CrashScenarios):
    """Both scenarios, run side by side, up to their outcome (tests/helpers/crash.py: started
    by the approvals module when it runs first on this server, else now)."""
    try:
        yield crash_scenarios.outcome()
    finally:
        crash_scenarios.close()


def _history(server: Server, run_id: str) -> list[dict]:
    states = server.api("GET", f"/flow_run_states/?flow_run_id={run_id}")
    return sorted(states, key=lambda s: s["timestamp"])


def test_real_heartbeats_carry_the_labels_the_automation_matches(killed):
    for scenario in (killed["crash"], killed["resume"]):
        heartbeat = scenario.heartbeat
        assert heartbeat["resource"]["prefect.resource.id"] == f"prefect.flow-run.{scenario.run_id}"
        related = [{k: v for k, v in r.items() if k in ("prefect.resource.id",
                                                       "prefect.resource.role")}
                   for r in heartbeat["related"]]
        assert {"prefect.resource.id": f"prefect.deployment.{scenario.deployment_id}",
                "prefect.resource.role": "deployment"} in related


def test_a_killed_run_is_marked_crashed_after_three_silent_heartbeats(killed):
    server, scenario = killed["server"], killed["crash"]
    history = _history(server, scenario.run_id)
    crashed = history[-1]

    assert crashed["type"] == "CRASHED"
    assert crashed["message"] == crash_message(HEARTBEAT_S)
    assert [s["type"] for s in history].count("CRASHED") == 1  # and nothing rescheduled it
    last_beat = max(e["occurred"] for e in heartbeats(server, scenario.run_id))
    silent_s = (_parse(crashed["timestamp"]) - _parse(last_beat))
    assert SILENT_PERIODS * HEARTBEAT_S <= silent_s < SILENT_PERIODS * HEARTBEAT_S + 30


def test_auto_resume_reruns_the_same_flow_run_from_its_cache(killed):
    server, scenario = killed["server"], killed["resume"]
    history = [(s["type"], s["message"]) for s in _history(server, scenario.run_id)]
    types = [t for t, _ in history]

    crashed = types.index("CRASHED")
    assert history[crashed][1] == crash_message(HEARTBEAT_S)
    assert types[crashed + 1] == "SCHEDULED" and "rescheduled by mendflow" in history[crashed + 1][1]
    again = types[crashed + 1:]
    assert again[-1] == "COMPLETED" and again.count("RUNNING") == 1, history
    assert "CRASHED" not in again and types[:crashed].count("RUNNING") == 1, history

    session = session_of(server, scenario.run_id)
    assert session["status"] == "completed" and session["flow_run_id"] == scenario.run_id
    assert session["mission_id"].endswith(scenario.run_id.replace("-", "")[:8])
    assert any(p["status"] == "accepted" for p in session["patches"])
    cached = {t["name"].rsplit("-", 1)[0] for t in server.task_runs(scenario.run_id)
              if t["state_name"] == "Cached"}
    assert "new-mission-id" in cached  # the steps done before the kill came from the cache


def _parse(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
