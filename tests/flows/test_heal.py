"""The heal flow end to end: a real repository, real pytest/ruff/bandit in the sandbox,
real Prefect (test harness), the real anthropic SDK against the fake Messages API."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock

from mendflow.flows.heal import heal
from mendflow.infra.heal_records import read_record
from mendflow.infra.layout import StateLayout
from tests.fakes.server import FakeServer, json_reply
from tests.helpers.git import git
from tests.helpers.heal import (
    FIX,
    GOOD_TEST,
    PASSING_TEST,
    SHOP_FILES,
    heal_config,
    heal_reply,
    production_log,
)
from tests.helpers.llm import user_text

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


@pytest.fixture
def api_key(monkeypatch) -> str:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-heal-Tq3Vb7Nm1Xc9")
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    return "sk-ant-heal-Tq3Vb7Nm1Xc9"


@pytest.fixture
def shop(make_repo) -> Path:
    return make_repo(SHOP_FILES, name="shop")


def test_a_good_reproduction_and_fix_becomes_a_validated_commit_with_its_test(
        shop, tmp_path, fake_anthropic, api_key):
    fake_anthropic.enqueue(heal_reply([GOOD_TEST, FIX]))
    log = production_log(tmp_path, repeats=3)
    with FakeServer("/hook") as hook:
        hook.respond_with(lambda request: json_reply({}))
        block = f"hook-{uuid.uuid4().hex[:8]}"
        CustomWebhookNotificationBlock(name="t", url=f"{hook.root_url}/hook",
                                       json_data={"text": "{{subject}}|{{body}}"}).save(block)
        config = heal_config(tmp_path, fake_anthropic, heal={"notify_block": block})
        result = heal(repo=str(shop), log_files=[str(log)], config_file=str(config))
        messages = [r.json["text"] for r in hook.requests]

    assert result.heal_status == "fixed", (result.reason, result.attempts)
    assert result.reproduction_test == "tests/test_heal_mean.py"
    assert result.branch == f"mendflow/heal-{result.fingerprint}"
    assert git(shop, "rev-parse", result.branch) == result.commit
    changed = git(shop, "show", "--name-only", "--format=", result.commit).split()
    assert sorted(changed) == ["shop/stats.py", "tests/test_heal_mean.py"]
    assert "return 0.0" in git(shop, "show", f"{result.branch}:shop/stats.py")
    assert result.patches[0].status == "accepted" and result.patches[0].commit == result.commit
    gates = {g.gate: g.passed for g in result.patches[0].validation.gates}
    assert all(gates.values()) and "no-test-regression" in gates
    assert git(shop, "status", "--porcelain") == ""  # the checkout is untouched
    # the model call and the suite are in the result, as a mission's (were 0 calls and null)
    assert result.llm_usage.calls == len(fake_anthropic.requests) == 1
    assert result.llm_usage.output_tokens > 0
    assert result.tests_before is not None and result.tests_after is not None
    assert result.tests_after.total == result.tests_before.total + 1  # the reproduction test
    timings = result.timings  # were all zeros
    assert timings.environment_s > 0 and timings.baseline_s > 0
    [validation] = timings.validations
    assert validation.full_run and validation.duration_s > 0
    assert validation.tests_run == validation.tests_total + 1 == result.tests_after.total

    # the model saw the production traceback and the located source, not the key
    sent = user_text(fake_anthropic.requests[0])
    assert "ZeroDivisionError" in sent and "shop/stats.py" in sent and api_key not in sent
    # one message per stage, each with the flow run's URL; the last one names the commit
    stages = [m.split("|", 1)[1].split("]")[0].lstrip("[") for m in messages]
    assert stages == ["detected", "analyzing", "fix ready", "delivered"]
    assert all(f"runs/flow-run/{result.flow_run_id}" in m for m in messages)
    assert result.commit in messages[-1]

    record = read_record(StateLayout.resolve(), result.fingerprint)
    assert record is not None and record.status == "fixed" and record.count == 3
    assert [a.accepted for a in record.attempts] == [True]
    assert "ZeroDivisionError: division by zero" in record.traceback


def test_a_reproduction_that_passes_before_the_fix_is_refused_and_the_reason_fed_back(
        shop, tmp_path, fake_anthropic, api_key):
    fake_anthropic.enqueue(heal_reply([PASSING_TEST, FIX]), heal_reply([GOOD_TEST, FIX]))
    config = heal_config(tmp_path, fake_anthropic)
    result = heal(repo=str(shop), log_files=[str(production_log(tmp_path))],
                  config_file=str(config))

    assert result.heal_status == "fixed", result.reason
    first, second = result.attempts
    assert not first.accepted and "passes on the unfixed code" in first.reason
    assert second.accepted
    retry = user_text(fake_anthropic.requests[1])
    assert "passes on the unfixed code" in retry and "attempt 2" in retry
    assert git(shop, "show", f"{result.branch}:tests/test_heal_mean.py").count("daily([])") == 1


def test_a_model_call_that_fails_for_good_keeps_the_attempts_made_before(
        shop, tmp_path, fake_anthropic, api_key):
    """The second call is answered 400 (no reply left): the first attempt and why it was
    refused stay in the result and the record (they were dropped: `attempts: []`)."""
    fake_anthropic.enqueue(heal_reply([FIX]))  # no reproduction test: refused at once
    config = heal_config(tmp_path, fake_anthropic)
    result = heal(repo=str(shop), log_files=[str(production_log(tmp_path))],
                  config_file=str(config))

    assert result.heal_status == "failed" and "the model call failed" in result.reason
    assert "attempt 1 was refused: no-reproduction" in result.reason
    [first] = result.attempts
    assert not first.accepted and first.reason.startswith("no-reproduction")
    record = read_record(StateLayout.resolve(), result.fingerprint)
    assert record is not None and [a.reason for a in record.attempts] == [first.reason]
    assert len(fake_anthropic.requests) == 2


def test_an_external_error_is_reported_never_fixed(shop, tmp_path, fake_anthropic, api_key):
    fake_anthropic.enqueue(heal_reply([], category="external", fixable=False,
                                      root_cause="the payments service was down"))
    config = heal_config(tmp_path, fake_anthropic)
    result = heal(repo=str(shop), log_files=[str(production_log(tmp_path))],
                  config_file=str(config))

    assert result.heal_status == "external" and "payments service" in result.reason
    assert result.commit is None and result.patches == ()
    assert git(shop, "rev-parse", result.branch) == git(shop, "rev-parse", "HEAD")
    assert len(fake_anthropic.requests) == 1


def test_refusals_no_reproduction_denylisted_file_a_breaking_fix_and_low_confidence(
        shop, tmp_path, fake_anthropic, api_key):
    secret = {"path": "secrets/keys.py", "search": "", "replace": "KEY = 1\n"}
    breaks = {"path": "shop/stats.py", "search": "    return max(values) - min(values)\n",
              "replace": "    return max(values)\n"}
    fake_anthropic.enqueue(heal_reply([FIX]), heal_reply([GOOD_TEST, FIX, secret]),
                           heal_reply([GOOD_TEST, FIX, breaks]),
                           heal_reply([GOOD_TEST, FIX], confidence="low"))
    config = heal_config(tmp_path, fake_anthropic, heal={"max_attempts": 4})
    result = heal(repo=str(shop), log_files=[str(production_log(tmp_path))],
                  config_file=str(config))

    reasons = [a.reason for a in result.attempts]
    assert result.heal_status == "refused" and result.commit is None
    assert reasons[0].startswith("no-reproduction")
    assert reasons[1].startswith("denylisted")
    assert reasons[2].startswith("gates: no-test-regression") and "test_spread" in reasons[2]
    assert "confidence low is below" in reasons[3]
    assert "test_spread" in user_text(fake_anthropic.requests[3])  # the gate output fed back
    assert git(shop, "rev-parse", result.branch) == git(shop, "rev-parse", "HEAD")


def test_without_a_model_fixer_the_group_is_recorded_and_nothing_guessed(
        shop, tmp_path, fake_anthropic):
    config = heal_config(tmp_path, fake_anthropic, fixer={"type": "ruff"})
    result = heal(repo=str(shop), log_files=[str(production_log(tmp_path, 5))],
                  config_file=str(config))
    assert result.heal_status == "needs_model_fixer" and "needs a model fixer" in result.reason
    assert fake_anthropic.requests == []
    record = json.loads((StateLayout.resolve().root / "heal" /
                         f"{result.fingerprint}.json").read_text())
    assert record["count"] == 5 and record["status"] == "needs_model_fixer"
    assert record["path"] == "shop/stats.py" and record["function"] == "mean"
    assert ">   6 |     return sum(values) / len(values)" in record["context"]


def test_event_started_runs_only_count_repeats_and_are_capped(shop, tmp_path, fake_anthropic):
    from mendflow.infra.heal_records import group_lock, reserve_slot

    payload = {"type": "ZeroDivisionError", "message": "division by zero", "repeats": 4,
               "timestamp": "2024-06-01T09:00:00+00:00",
               "frames": [{"file": "/srv/shop-release-9/shop/report.py", "line": 8,
                           "function": "daily", "source": None},
                          {"file": "/srv/shop-release-9/shop/stats.py", "line": 6,
                           "function": "mean", "source": "return sum(values) / len(values)"}]}
    config = heal_config(tmp_path, fake_anthropic, fixer={"type": "ruff"},
                         heal={"max_runs_per_hour": 2})
    first = heal(repo=str(shop), event=payload, config_file=str(config))
    assert first.heal_status == "needs_model_fixer" and first.commit is None
    layout = StateLayout.resolve()
    assert read_record(layout, first.fingerprint).count == 5  # the event and its 4 repeats

    again = heal(repo=str(shop), event=payload, config_file=str(config))  # within the window
    assert "repeat within heal.repeat_window_s" in again.reason
    assert read_record(layout, first.fingerprint).count == 10

    lock = group_lock(layout, first.fingerprint)
    lock.acquire()
    try:  # another run holds the group: this one only counts
        log = heal(repo=str(shop), log_files=[str(production_log(tmp_path, 2))],
                   config_file=str(config))
    finally:
        lock.release()
    # a logged error and a raised one of the same group share the fingerprint
    assert log.fingerprint == first.fingerprint and "already open" in log.reason
    assert read_record(layout, first.fingerprint).count == 12

    # the hourly cap of runs (the first run took one slot)
    assert reserve_slot(layout, "runs", 2) is None
    assert "limit of 2 heal runs per hour" in reserve_slot(layout, "runs", 2)
