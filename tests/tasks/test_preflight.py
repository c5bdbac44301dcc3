"""Adaptive model-call timeouts: plan_fixer_timeouts, and the real SDK cut at the learned timeout.

The history is written with the real :func:`mendflow.infra.timeouts.record_duration`;
the end-to-end check drives the real ``anthropic`` SDK over loopback HTTP to
the fake Messages API, through the mission's own ``propose_patch`` task body.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anthropic  # noqa: F401  (the SDK is imported here, not inside the timed call)
import pytest
from prefect import flow

import mendflow.tasks.fix.claude  # noqa: F401
from mendflow.core.config import AnthropicFixerConfig, FixerConfig, MendflowConfig, validate_config
from mendflow.core.errors import LLMError
from mendflow.core.models import Finding, Sandbox, TestCase, TestRun, ToolResult
from mendflow.core.spread import SuiteCost, cost_from_history
from mendflow.infra.budget import release_mission_budgets
from mendflow.infra.layout import StateLayout
from mendflow.infra.timeouts import LLM_STEP, load_history, percentile, record_duration
from mendflow.tasks.fix import propose_patch
from mendflow.tasks.preflight import (
    adapt_fixer_timeouts,
    plan_fixer_timeouts,
    record_tool_durations,
)
from tests.fakes import fake_messages_api as api
from tests.helpers.llm import CALC_FILES, FAKE_KEY, GOOD_EDIT, git_worktree_sandbox, lint_finding

FAST_CALLS = (4.0, 5.0, 6.0)
OPENAI = {"type": "openai-compatible", "base_url": "http://127.0.0.1:9/v1", "model": "local",
          "timeout_s": 300}

home = StateLayout.resolve  # the $MENDFLOW_HOME layout (isolated per test by conftest)


def mission_config(fixer: dict, state: StateLayout, **timeouts) -> MendflowConfig:
    return validate_config({"fixer": fixer, "timeouts": timeouts,
                            "mission": {"state_dir": str(state.root)}})


@pytest.fixture
def repo(make_repo) -> Path:
    return make_repo({"pkg/a.py": "x = 1\n"})


@pytest.fixture
def state(tmp_path) -> StateLayout:
    """A configured mission.state_dir (not $MENDFLOW_HOME): the history must be read there."""
    return StateLayout.resolve(tmp_path / "state")


def learn(repo: Path, state: StateLayout, durations=FAST_CALLS) -> None:
    for seconds in durations:
        record_duration(repo, LLM_STEP, seconds, layout=state)


def test_the_model_call_timeout_is_learned_from_fast_calls(repo, state):
    learn(repo, state)
    expected = percentile(FAST_CALLS, 95) * 3.0  # 17.7 s
    config = mission_config({"type": "anthropic", "timeout_s": 300}, state,
                            floor_s=1, llm_floor_s=2)
    planned = plan_fixer_timeouts.fn("m1", repo, config, state)
    assert isinstance(planned, AnthropicFixerConfig)
    assert planned.timeout_s == pytest.approx(expected)
    assert planned.state_dir == state.root  # where its calls record their own durations
    assert planned.model_copy(update={"timeout_s": 300, "state_dir": None}) == config.fixer


def test_a_learned_model_timeout_is_never_below_the_llm_floor(repo, state):
    learn(repo, state)
    config = mission_config({"type": "anthropic", "timeout_s": 300}, state)
    assert config.timeouts.llm_floor_s == 60 and config.timeouts.floor_s == 30
    assert plan_fixer_timeouts.fn("m1", repo, config, state).timeout_s == 60
    learn(repo, state, [5000.0] * 50)  # slower than the ceiling
    assert plan_fixer_timeouts.fn("m1", repo, config, state).timeout_s == config.timeouts.ceiling_s


def test_without_enough_history_the_configured_timeout_is_kept_within_bounds(repo, state):
    learn(repo, state, FAST_CALLS[:2])  # below min_samples
    for configured, planned in ((300, 300), (10, 60), (100_000, 7200)):
        config = mission_config({"type": "anthropic", "timeout_s": configured}, state)
        assert plan_fixer_timeouts.fn("m1", repo, config, state).timeout_s == planned


def test_with_adaptive_off_the_configured_timeout_is_kept(repo, state):
    learn(repo, state)
    for configured in (300, 10):
        config = mission_config({"type": "anthropic", "timeout_s": configured}, state,
                                adaptive=False)
        assert plan_fixer_timeouts.fn("m1", repo, config, state).timeout_s == configured


def test_each_model_fixer_of_a_chain_is_adapted_and_offline_fixers_are_kept(repo, state):
    learn(repo, state, [40.0] * 5)
    chain = {"type": "chain", "fixers": [{"type": "ruff"}, {"type": "anthropic", "timeout_s": 10},
                                         OPENAI]}
    config = mission_config(chain, state)
    planned = plan_fixer_timeouts.fn("m1", repo, config, state)
    ruff, claude, local = planned.fixers
    assert ruff == config.fixer.fixers[0]
    assert claude.timeout_s == local.timeout_s == pytest.approx(120.0)  # 40 s x 3
    assert claude.state_dir == local.state_dir == state.root
    offline = mission_config({"type": "ruff"}, state)
    assert plan_fixer_timeouts.fn("m1", repo, offline, state) == offline.fixer


@flow(name="plan-fixer-timeouts-test")
def planning_flow(mission_id: str, repo: Path, config: MendflowConfig) -> FixerConfig:
    return plan_fixer_timeouts(mission_id, repo, config, StateLayout.of(config.mission.state_dir))


def test_a_resumed_mission_keeps_the_timeouts_it_started_with(prefect_harness, repo, state):
    learn(repo, state, [40.0] * 5)
    config = mission_config({"type": "anthropic", "timeout_s": 300}, state)
    first = planning_flow("resume-timeouts", repo, config)
    assert first.timeout_s == pytest.approx(120.0)
    learn(repo, state, [100.0] * 50)  # the history moves on ...
    assert planning_flow("resume-timeouts", repo, config) == first  # ... the mission does not
    assert planning_flow("another-mission", repo, config).timeout_s == pytest.approx(300.0)


@pytest.fixture
def calc(make_repo) -> Iterator[tuple[Sandbox, Finding]]:
    sandbox = git_worktree_sandbox(make_repo(CALC_FILES), mission_id="adaptive-llm-timeout")
    yield sandbox, lint_finding(sandbox.path, "calc.py", 2, rule="logic",
                                message="add() returns a - b")
    release_mission_budgets(sandbox.mission_id)  # propose_patch charges the mission's budget


def test_a_call_slower_than_the_learned_timeout_is_cut_as_a_transient_error(
        fake_anthropic, calc, state, monkeypatch):
    sandbox, finding = calc
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    learn(sandbox.repo_root, state, [0.05] * 3)
    config = mission_config({"type": "anthropic", "model": "claude-test",
                             "base_url": fake_anthropic.root_url, "timeout_s": 120}, state,
                            floor_s=0.1, llm_floor_s=0.5)
    planned = adapt_fixer_timeouts(config.fixer, sandbox.repo_root, config.timeouts, state)
    assert planned.timeout_s == 0.5  # 0.05 s x 3, raised to llm_floor_s

    reply = api.tool_reply(api.analysis(), [GOOD_EDIT])
    fake_anthropic.enqueue(api.slow(reply, 10.0))
    started = time.monotonic()
    with pytest.raises(LLMError) as info:
        propose_patch.fn(planned, sandbox, (finding,))
    assert time.monotonic() - started < 5  # cut at the learned 0.5 s, not the configured 120 s
    assert info.value.retryable is True and "timed out" in info.value.message
    assert load_history(sandbox.repo_root, state)[LLM_STEP] == [0.05] * 3  # not poisoned

    fake_anthropic.enqueue(reply)
    assert propose_patch.fn(planned, sandbox, (finding,)).patch is not None
    recorded = load_history(sandbox.repo_root, state)[LLM_STEP]
    assert len(recorded) == 4 and 0 < recorded[-1] < 0.5  # in the mission's state dir
    assert LLM_STEP not in load_history(sandbox.repo_root, home())  # not in $MENDFLOW_HOME


@flow(name="crash-loop-probe")
def _probe_flow() -> None:
    """Only a flow to create flow runs of (it is never run)."""


def test_check_crash_loop_counts_automation_crashes_in_the_run_history(prefect_harness) -> None:
    """Each Crashed state the crash automation set counts; other crashes don't; past the cap: CrashLoop."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed, Running, Scheduled

    from mendflow.core.errors import CrashLoop
    from mendflow.deployments.automation import crash_message
    from mendflow.tasks.preflight import check_crash_loop

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(_probe_flow)
        run_id = str(run.id)

        def add(state) -> None:
            client.set_flow_run_state(run.id, state, force=True)

        assert check_crash_loop.fn(run_id, 1) == 0
        add(Running())
        add(Crashed(message="the runner saw the process exit with -9"))  # not the automation's
        add(Scheduled())
        add(Running())
        add(Crashed(message=crash_message(30)))
        add(Scheduled())
        assert check_crash_loop.fn(run_id, 1) == 1  # one automatic resume: at the cap, allowed
        add(Running())
        add(Crashed(message=crash_message(60)))
        add(Scheduled())
        assert check_crash_loop.fn(run_id, 2) == 2
        with pytest.raises(CrashLoop) as caught:
            check_crash_loop.fn(run_id, 1)
    assert caught.value.subject == run_id
    assert "2 times" in str(caught.value) and "mendflow mission resume" in str(caught.value)


def test_a_test_run_leaves_the_split_the_next_baseline_decides_spreading_from(repo, state):
    cases = (TestCase(nodeid="tests/t.py::a", outcome="passed", duration_s=3.0),
             TestCase(nodeid="tests/t.py::b", outcome="failed", duration_s=1.0))
    run = TestRun(collected=2, cases=cases, duration_s=6.0)
    record_tool_durations.fn(repo, [ToolResult(tool="pytest", test_run=run, duration_s=6.0),
                                    ToolResult(tool="mypy", duration_s=2.5)], state)
    history = load_history(repo, state)
    assert history["pytest"] == [6.0]
    assert cost_from_history(history) == SuiteCost(fixed_s=2.0, tests_s=4.0, others_s=2.5)
