"""Learning from every attempt: the records, the strategy bandit, expected value, insights.

Pure domain code (no database, no Prefect): the outcome store
(:mod:`mendflow.infra.outcomes`) keeps :class:`AttemptRecord` and :class:`MissionRecord`
rows, and hands back :class:`Prior` aggregates from which :func:`choose_strategy`
picks a strategy per finding category.

The bandit policy (documented in the README, "Learning from every attempt"):

1. Each eligible strategy ``s`` for a category ``c`` has a Beta posterior on its
   accept rate: ``Beta(1 + accepted, 1 + not accepted)`` over the repository's
   recorded attempts of ``s`` on ``c`` (a uniform prior when there are none).
2. Thompson sampling weighted by cost: draw ``θ_s`` from each posterior and score the
   expected net value of an attempt, ``value_s = θ_s × fix_value_usd − expected cost_s``
   (the recorded mean cost per attempt, or ``prior_cost_usd`` for a model strategy without
   history, 0 for an offline fixer); the largest wins. (A ratio ``θ / cost`` would prefer
   a cheap strategy that never works to a dear one that does.)
3. Exploration floor: with probability ``exploration_floor`` a uniformly random
   eligible strategy is chosen instead, so that no strategy starves.
4. Hopeless: a category with ``hopeless_after`` failures and no success in the
   repository, the last failure less than ``hopeless_days`` ago, is skipped.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from mendflow.core.models import Contract, Finding

AttemptResult = Literal["accepted", "rejected", "declined", "over_budget", "failed"]
ApprovalOutcome = Literal["approved", "rejected", "timed_out"]
PostMergeOutcome = Literal["kept", "reverted"]

SEVERITY_WEIGHT: dict[str, float] = {"critical": 10.0, "high": 5.0, "medium": 2.0, "low": 1.0,
                                     "info": 0.25}
"""Weights of the expected-value queue, by finding severity (those of the quality score,
with info above 0 so that TODOs still get an order)."""


class AttemptRecord(Contract):
    """One attempt at one finding: what was tried, what it cost and what became of it.

    ``key`` is unique per (mission, group, attempt, finding): a replayed (resumed)
    mission records the same keys again, and the store keeps the first.
    """

    key: str = Field(max_length=240)
    mission_id: str
    repository: str
    finding_id: str
    source: str
    rule: str
    category: str
    severity: str
    path: str
    strategy: str = Field(description="the strategy's name (learning.strategies) or the fixer's")
    fixer: str = Field(description="fixer type: ruff | anthropic | openai-compatible")
    model: str | None = None
    variant: str | None = Field(None, description="context size and repair-loop bound")
    result: AttemptResult
    gate: str | None = Field(None, description="the first gate (or guard) that refused it")
    reason: str | None = None
    patch_id: str | None = None
    commit: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    wall_s: float = Field(0.0, description="seconds from the proposal to the verdict")
    created_at: datetime


class LandedCommit(Contract):
    """A commit that reached the target branch, as the evolution loop's post-merge watch saw it."""

    commit: str = Field(description="its sha on the target branch")
    patch_id: str | None = Field(None, description="its Mendflow-Patch trailer (mendflow's patch)")
    mission_id: str | None = Field(None, description="its Mendflow-Mission trailer")
    reverts: str | None = Field(None, description="the commit it reverts (a revert commit), "
                                                  "as its message names it (git's full sha)")


class PostMergeOutcomes(Contract):
    """What the post-merge watch learned in one cycle: mendflow's commits kept and reverted."""

    kept: tuple[LandedCommit, ...] = ()
    reverted: tuple[LandedCommit, ...] = ()


def post_merge_outcomes(landed: Sequence[LandedCommit], culprits: Iterable[str],
                        reverted_now: Iterable[str], tests_ran: bool) -> PostMergeOutcomes:
    """Sort the commits that landed since the previous cycle into kept and reverted.

    A mendflow commit (one with a patch id) is ``kept`` when it landed, no later commit of
    the range reverts it, the regression watch did not name it as the first bad commit of a
    newly failing test, and the tests ran at the new tip (``tests_ran``). It is
    ``reverted`` when a commit of the range reverts it, or the watch reverted it just now.
    A revert that lands later overrides an earlier ``kept`` (the store does that).

    Args:
        landed: :func:`mendflow.tasks.evolve.watch.landed_commits` of ``previous..tip``.
        culprits: first bad commits the regression watch found in this range.
        reverted_now: culprits the watch reverted on the target branch in this cycle.
        tests_ran: the mission measured the tests at the new tip.

    Returns:
        The outcomes; revert commits found for shas outside the range are reported as
        ``reverted`` items with only ``commit`` set (the store matches them by sha).
    """
    culprits, reverted_now = set(culprits), set(reverted_now)
    targets = {c.reverts for c in landed if c.reverts} | reverted_now
    mine = [c for c in landed if c.patch_id]
    reverted = [c for c in mine if c.commit in targets]
    reverted += [LandedCommit(commit=sha) for sha in sorted(targets - {c.commit for c in mine})]
    kept = [c for c in mine if tests_ran and c.commit not in culprits | targets]
    return PostMergeOutcomes(kept=tuple(kept), reverted=tuple(reverted))


class MissionRecord(Contract):
    """One mission, for charts (score over missions) and approval insights."""

    mission_id: str
    repository: str
    started_at: datetime
    finished_at: datetime
    score_before: float
    score_after: float
    accepted: int = 0
    attempts: int = 0
    cost_usd: float = 0.0
    autonomy: str | None = None
    approval_decision: str | None = None
    requested_at: datetime | None = None
    decided_at: datetime | None = None


class Prior(Contract):
    """What the store knows about one strategy on one category in one repository."""

    strategy: str
    category: str
    accepted: int = 0
    failed: int = Field(0, description="attempts that were not accepted")
    cost_usd: float = Field(0.0, description="total cost of these attempts, USD")
    last_failure: datetime | None = None

    @property
    def attempts(self) -> int:
        return self.accepted + self.failed


class StrategyStats(Contract):
    """One row of ``mendflow stats --json`` ``strategies``."""

    strategy: str
    category: str
    attempts: int
    accepted: int
    accept_rate: float
    tokens_in: int
    tokens_out: int
    cost_usd: float


class Choice(Contract):
    """The bandit's choice for one group, with the prior behind it (shown in the plan)."""

    category: str
    strategy: str | None = Field(description="None = skipped as hopeless")
    alpha: float = 1.0
    beta: float = 1.0
    expected_cost_usd: float = 0.0
    sample: float = 0.0
    explored: bool = False
    reason: str = ""

    def describe(self) -> str:
        """One line for the mission's plan."""
        if self.strategy is None:
            return f"{self.category}: skipped ({self.reason})"
        how = "explored" if self.explored else "Thompson"
        return (f"{self.category}: {self.strategy} ({how}; prior Beta({self.alpha:g}, "
                f"{self.beta:g}), mean {self.alpha / (self.alpha + self.beta):.2f}, sampled "
                f"{self.sample:.2f}, expected ${self.expected_cost_usd:.4f}/attempt)")


def expected_cost(prior: Prior | None, *, model: bool, prior_cost_usd: float) -> float:
    """Mean cost per attempt, USD: the recorded mean, else ``prior_cost_usd`` (0 offline)."""
    if prior is not None and prior.attempts:
        return prior.cost_usd / prior.attempts
    return prior_cost_usd if model else 0.0


def choose_strategy(category: str, candidates: Sequence[tuple[str, bool]],
                    priors: dict[tuple[str, str], Prior], rng: random.Random, *,
                    exploration_floor: float, fix_value_usd: float,
                    prior_cost_usd: float) -> Choice:
    """Pick a strategy for one category by cost-weighted Thompson sampling (module docstring).

    Args:
        category: the finding category (``Finding.category``).
        candidates: ``(strategy name, is a model strategy)`` of the eligible strategies.
        priors: ``{(strategy, category): Prior}`` of this repository.
        rng: the random source (seeded by the mission and the group: a resumed
            mission makes the same choices).
        exploration_floor: probability of a uniform random choice.
        fix_value_usd: what an accepted fix is worth, USD (θ is scaled by it).
        prior_cost_usd: expected cost per attempt of a model strategy without history.

    Returns:
        The choice and its prior.

    Raises:
        ValueError: no candidates.
    """
    if not candidates:
        raise ValueError("choose_strategy needs at least one candidate")
    draws = []
    for name, is_model in candidates:
        prior = priors.get((name, category))
        alpha = 1.0 + (prior.accepted if prior else 0)
        beta = 1.0 + (prior.failed if prior else 0)
        cost = expected_cost(prior, model=is_model, prior_cost_usd=prior_cost_usd)
        sample = rng.betavariate(alpha, beta)
        draws.append((sample * fix_value_usd - cost, name, alpha, beta, cost, sample))
    explored = rng.random() < exploration_floor and len(draws) > 1
    best = rng.choice(draws) if explored else max(draws, key=lambda d: d[0])
    _, name, alpha, beta, cost, sample = best
    return Choice(category=category, strategy=name, alpha=alpha, beta=beta,
                  expected_cost_usd=round(cost, 6), sample=round(sample, 4), explored=explored)


def hopeless(category: str, priors: Iterable[Prior], now: datetime, *, after: int,
             days: float) -> str | None:
    """Why a category is skipped in a repository, or None.

    Args:
        category: the finding category.
        priors: every prior of the repository (all strategies).
        now: the current time (aware).
        after: failures needed without any success.
        days: how long after the last failure the category stays skipped.

    Returns:
        A reason such as ``"6 failures, never accepted, last 2026-12-01"``, or None.
    """
    mine = [p for p in priors if p.category == category]
    failed = sum(p.failed for p in mine)
    if failed < after or any(p.accepted for p in mine):
        return None
    last = max((p.last_failure for p in mine if p.last_failure), default=None)
    if last is None or now - last > timedelta(days=days):
        return None
    return (f"hopeless: {failed} failures in this repository, never accepted; retried after "
            f"{(last + timedelta(days=days)).date().isoformat()}")


def accept_probability(finding: Finding, priors: dict[tuple[str, str], Prior]) -> float:
    """Posterior mean accept rate of the finding's category over all strategies (Beta(1, 1) prior)."""
    mine = [p for (_, category), p in priors.items() if category == finding.category]
    accepted = sum(p.accepted for p in mine)
    return (1 + accepted) / (2 + accepted + sum(p.failed for p in mine))


def rank_by_value(findings: Sequence[Finding], priors: dict[tuple[str, str], Prior], *,
                  cost_floor_usd: float, prior_cost_usd: float) -> list[Finding]:
    """Order a queue by expected value: P(accept) × severity weight ÷ expected cost.

    Ties keep the queue's order (the severity/source ranking of
    :func:`mendflow.core.findings.rank_findings`), so that without history the
    order is the usual one.

    Args:
        findings: the ranked queue.
        priors: this repository's priors.
        cost_floor_usd: the least cost per attempt, USD.
        prior_cost_usd: expected cost of a category without history, USD.

    Returns:
        The findings, highest expected value first.
    """
    def cost(finding: Finding) -> float:
        mine = [p for (_, c), p in priors.items() if c == finding.category and p.attempts]
        if not mine:
            return max(prior_cost_usd, cost_floor_usd)
        return max(sum(p.cost_usd for p in mine) / sum(p.attempts for p in mine), cost_floor_usd)

    def value(finding: Finding) -> float:
        return (accept_probability(finding, priors) * SEVERITY_WEIGHT.get(finding.severity, 1.0)
                / cost(finding))

    order = {f.id: n for n, f in enumerate(findings)}
    return sorted(findings, key=lambda f: (-round(value(f), 9), order[f.id]))


class StrategyInfo(Contract):
    """How a strategy is recorded: its name, fixer type, model, variant and prices."""

    name: str
    fixer: str
    model: str | None = None
    variant: str | None = None
    input_price_per_mtok: float = 0.0
    output_price_per_mtok: float = 0.0

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        """USD of these tokens at this strategy's prices."""
        return (tokens_in * self.input_price_per_mtok
                + tokens_out * self.output_price_per_mtok) / 1_000_000


def attempt_records(group: Sequence[Finding], *, mission_id: str, repository: str,
                    strategy: StrategyInfo, attempt: int, iteration: int,
                    result: AttemptResult, gate: str | None = None, reason: str | None = None,
                    patch_id: str | None = None, commit: str | None = None,
                    tokens_in: int = 0, tokens_out: int = 0, wall_s: float = 0.0,
                    now: datetime) -> list[AttemptRecord]:
    """One record per finding of a group's attempt; tokens and cost are split evenly.

    The key is ``<mission>:<iteration>:<attempt>:<strategy>:<finding id>``: a resumed mission that
    replays the same attempt writes the same key, and the store keeps the first.
    """
    share = max(len(group), 1)
    cost = strategy.cost(tokens_in, tokens_out)
    return [AttemptRecord(
        key=f"{mission_id}:{iteration}:{attempt}:{strategy.name}:{f.id}"[:240], mission_id=mission_id,
        repository=repository, finding_id=f.id, source=f.source, rule=f.rule,
        category=f.category, severity=f.severity, path=f.path, strategy=strategy.name,
        fixer=strategy.fixer, model=strategy.model, variant=strategy.variant, result=result,
        gate=gate, reason=(reason or "")[:2000] or None, patch_id=patch_id, commit=commit,
        tokens_in=tokens_in // share, tokens_out=tokens_out // share,
        cost_usd=round(cost / share, 8), wall_s=round(wall_s / share, 3), created_at=now)
        for f in group]


def choices_markdown(choices: Sequence[Choice]) -> str:
    """The report section listing each group's strategy choice and the prior behind it."""
    if not choices:
        return ""
    return "\n".join(["## Strategy choices", "",
                      *(f"- {choice.describe()}" for choice in choices)]) + "\n"
