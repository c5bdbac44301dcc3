"""Budget: calls per sliding hour, token caps, cost cap; shared per mission."""

from __future__ import annotations

import threading

import pytest

from mendflow.core.config import LLMBudget, validate_config
from mendflow.core.errors import ConfigError
from mendflow.infra.budget import Budget, Usage, mission_budget, release_mission_budgets


class Clock:
    """A controllable monotonic clock (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_calls_per_hour_slide_with_time():
    clock = Clock()
    budget = Budget(LLMBudget(max_llm_calls_per_hour=2), clock=clock)
    assert budget.reserve() is None
    clock.now += 1800
    assert budget.reserve() is None
    reason = budget.reserve()
    assert reason is not None and reason.startswith("budget: ")
    assert "max_llm_calls_per_hour=2" in reason and "1800 s" in reason
    refusal = budget.check()
    assert refusal is not None and budget.reserve() == refusal  # a refusal is not counted
    clock.now += 1800  # the first call left the window
    assert budget.check() is None and budget.reserve() is None
    snap = budget.snapshot()
    assert (snap.calls, snap.calls_last_hour) == (3, 2)


def test_token_caps_stop_the_next_call_after_the_cap_is_reached():
    budget = Budget(LLMBudget(max_input_tokens=1000, max_output_tokens=None,
                              max_llm_calls_per_hour=None))
    calls = 0
    while budget.reserve() is None:
        calls += 1
        budget.record(Usage(input_tokens=300, cache_read_input_tokens=100, output_tokens=5))
    assert calls == 3  # 400, 800, 1200: exceeded by the last call only
    assert "max_input_tokens=1000" in (budget.check() or "")
    assert budget.snapshot().input_tokens == 1200

    out = Budget(LLMBudget(max_output_tokens=100, max_llm_calls_per_hour=None))
    out.record(Usage(output_tokens=100))
    assert "max_output_tokens=100" in (out.check() or "")


def test_cost_is_estimated_from_prices_including_cache_writes_and_reads():
    budget = Budget(LLMBudget(max_cost_usd=0.05, input_price_per_mtok=3.0,
                              output_price_per_mtok=15.0, max_llm_calls_per_hour=None))
    budget.record(Usage(input_tokens=1000, output_tokens=1000, cache_creation_input_tokens=1000,
                        cache_read_input_tokens=10000))
    # 1000*3 + 1000*3*1.25 + 10000*3*0.1 + 1000*15 = 24750 micro-USD
    assert budget.snapshot().cost_usd == pytest.approx(0.02475)
    assert budget.check() is None
    budget.record(Usage(output_tokens=2000))
    assert "max_cost_usd=0.05" in (budget.check() or "")


def test_a_cost_limit_needs_prices():
    with pytest.raises(ConfigError, match="max_cost_usd needs"):
        validate_config({"fixer": {"type": "anthropic",
                                   "budget": {"max_cost_usd": 1, "output_price_per_mtok": 0}}})


def test_concurrent_reservations_never_exceed_the_call_limit():
    budget = Budget(LLMBudget(max_llm_calls_per_hour=10))
    granted: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        ok = budget.reserve() is None
        with lock:
            granted.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted.count(True) == 10 and len(granted) == 40


def test_a_mission_has_one_budget_per_limits_until_released():
    limits = LLMBudget(max_llm_calls_per_hour=1)
    first = mission_budget("mission-a", limits)
    assert mission_budget("mission-a", LLMBudget(max_llm_calls_per_hour=1)) is first
    assert mission_budget("mission-b", limits) is not first
    first.reserve()
    snapshots = release_mission_budgets("mission-a")
    assert [s.calls for s in snapshots] == [1]
    assert mission_budget("mission-a", limits) is not first
    release_mission_budgets("mission-a")
    release_mission_budgets("mission-b")
