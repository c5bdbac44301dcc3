"""Spending limits of a mission's language-model calls.

One :class:`Budget` is shared by every model call of a mission (and by the
fixers of a chain when they are given the same object). Before each call a
fixer asks :meth:`Budget.reserve`: it answers a reason to decline when a
limit is reached, or counts the call. After the call, :meth:`Budget.record`
adds the tokens the API reported. Because a call's tokens are only known
after it returns, a limit on tokens or cost can be passed by the last call
made before the limit was reached, never by more than that one call (when
calls are made one after another, as the mission does). The calls-per-hour
limit is never passed: the call is counted before it is made.

Cost is an estimate from configured prices (USD per million tokens):
prompt-cache writes cost 1.25 x the input price and cache reads 0.1 x, as on
Anthropic's price list.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from mendflow.core.config import LLMBudget

_HOUR_S = 3600.0
CACHE_WRITE_FACTOR = 1.25
CACHE_READ_FACTOR = 0.1


@dataclass(frozen=True)
class Usage:
    """Tokens one model call used, as the API reported them.

    Attributes:
        input_tokens: uncached input tokens.
        output_tokens: generated tokens.
        cache_creation_input_tokens: input tokens written to the prompt cache.
        cache_read_input_tokens: input tokens read from the prompt cache.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @property
    def total_input_tokens(self) -> int:
        """All input tokens, cached or not."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


@dataclass(frozen=True)
class BudgetSnapshot:
    """What a budget has counted so far (for reports).

    Attributes:
        calls: calls made in the whole mission.
        calls_last_hour: calls made in the last 3600 seconds.
        input_tokens: all input tokens (cache writes and reads included).
        output_tokens: output tokens.
        cost_usd: estimated cost in USD.
    """

    calls: int
    calls_last_hour: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


class Budget:
    """Counts calls, tokens and estimated cost against an :class:`LLMBudget`.

    Thread-safe: concurrent fixers may share one budget.

    Args:
        limits: the configured limits.
        clock: seconds from a monotonic clock (default :func:`time.monotonic`).
    """

    def __init__(self, limits: LLMBudget | None = None, *,
                 clock: Callable[[], float] = time.monotonic):
        self.limits = limits or LLMBudget()
        self._clock = clock
        self._lock = threading.Lock()
        self._call_times: deque[float] = deque()
        self._calls = 0
        self._input_tokens = 0
        self._output_tokens = 0
        self._cost_usd = 0.0

    def check(self) -> str | None:
        """Say why no further call may be made, without counting one.

        Returns:
            A reason naming the exhausted limit, or None when a call may be made.
        """
        with self._lock:
            return self._exhausted(self._clock())

    def reserve(self) -> str | None:
        """Count one call about to be made, unless a limit is reached.

        Returns:
            None when the call was counted and may be made; else the reason
            (starting with ``"budget: "``) to decline instead of calling.
        """
        with self._lock:
            now = self._clock()
            reason = self._exhausted(now)
            if reason is None:
                self._call_times.append(now)
                self._calls += 1
            return reason

    def record(self, usage: Usage) -> None:
        """Add the tokens and estimated cost of one finished call.

        Args:
            usage: the token counts the API reported for the call.
        """
        limits = self.limits
        cost = (
            (usage.input_tokens + CACHE_WRITE_FACTOR * usage.cache_creation_input_tokens
             + CACHE_READ_FACTOR * usage.cache_read_input_tokens) * limits.input_price_per_mtok
            + usage.output_tokens * limits.output_price_per_mtok
        ) / 1_000_000
        with self._lock:
            self._input_tokens += usage.total_input_tokens
            self._output_tokens += usage.output_tokens
            self._cost_usd += cost

    def charge(self, calls: int, usage: Usage) -> None:
        """Count ``calls`` calls made elsewhere (now) and their ``usage`` (a resumed mission).

        Args:
            calls: calls to count, >= 0.
            usage: their tokens, all together.
        """
        with self._lock:
            now = self._clock()
            self._call_times.extend([now] * max(0, calls))
            self._calls += max(0, calls)
        self.record(usage)

    def snapshot(self) -> BudgetSnapshot:
        """Return what was counted so far."""
        with self._lock:
            self._forget_old(self._clock())
            return BudgetSnapshot(self._calls, len(self._call_times), self._input_tokens,
                                  self._output_tokens, round(self._cost_usd, 6))

    def _forget_old(self, now: float) -> None:
        while self._call_times and now - self._call_times[0] >= _HOUR_S:
            self._call_times.popleft()

    def _exhausted(self, now: float) -> str | None:
        limits = self.limits
        self._forget_old(now)
        if (limits.max_llm_calls_per_hour is not None
                and len(self._call_times) >= limits.max_llm_calls_per_hour):
            wait = _HOUR_S - (now - self._call_times[0])
            return (f"budget: {len(self._call_times)} model calls in the last hour reached "
                    f"max_llm_calls_per_hour={limits.max_llm_calls_per_hour} "
                    f"(next call possible in {wait:.0f} s)")
        if limits.max_input_tokens is not None and self._input_tokens >= limits.max_input_tokens:
            return (f"budget: {self._input_tokens} input tokens used reached "
                    f"max_input_tokens={limits.max_input_tokens}")
        if limits.max_output_tokens is not None and self._output_tokens >= limits.max_output_tokens:
            return (f"budget: {self._output_tokens} output tokens used reached "
                    f"max_output_tokens={limits.max_output_tokens}")
        if limits.max_cost_usd is not None and self._cost_usd >= limits.max_cost_usd:
            return (f"budget: estimated cost ${self._cost_usd:.4f} reached "
                    f"max_cost_usd={limits.max_cost_usd}")
        return None


_registry_lock = threading.Lock()
_MISSION_BUDGETS: dict[tuple[str, LLMBudget], Budget] = {}


def mission_budget(mission_id: str, limits: LLMBudget) -> Budget:
    """The one budget of a mission in this process (made on first use).

    Fixers may be rebuilt for every proposal (``build_fixer`` per task run);
    keying the budget by mission id keeps counting across them.

    Args:
        mission_id: the mission (``Sandbox.mission_id``).
        limits: the configured limits; fixers with equal limits share one budget.

    Returns:
        The shared :class:`Budget`.
    """
    with _registry_lock:
        key = (mission_id, limits)
        if key not in _MISSION_BUDGETS:
            _MISSION_BUDGETS[key] = Budget(limits)
        return _MISSION_BUDGETS[key]


def charge_mission_budget(mission_id: str, limits: LLMBudget, *, calls: int,
                          input_tokens: int = 0, output_tokens: int = 0,
                          cache_creation_input_tokens: int = 0,
                          cache_read_input_tokens: int = 0) -> Budget:
    """Count what a mission already spent before this process (a resumed mission).

    A resumed mission restored from its checkpoint makes none of its earlier calls
    again, so its budget starts from what they spent: ``calls`` calls (counted as
    made now, so the per-hour window may count them a little longer than they
    were) and their tokens and estimated cost.

    Args:
        mission_id: the mission.
        limits: the budget's limits (the key of :func:`mission_budget`).
        calls: model calls already made.
        input_tokens: uncached input tokens already used.
        output_tokens: output tokens already used.
        cache_creation_input_tokens: prompt-cache writes already made, tokens.
        cache_read_input_tokens: prompt-cache reads already made, tokens.

    Returns:
        The mission's :class:`Budget`, charged.
    """
    budget = mission_budget(mission_id, limits)
    budget.charge(calls, Usage(input_tokens, output_tokens, cache_creation_input_tokens,
                               cache_read_input_tokens))
    return budget


def release_mission_budgets(mission_id: str) -> list[BudgetSnapshot]:
    """Forget a finished mission's budgets and return what they counted.

    Args:
        mission_id: the mission.

    Returns:
        One snapshot per budget the mission used (empty if none).
    """
    with _registry_lock:
        keys = [key for key in _MISSION_BUDGETS if key[0] == mission_id]
        budgets = [_MISSION_BUDGETS.pop(key) for key in keys]
    return [budget.snapshot() for budget in budgets]
