"""Config section of learning: the outcome store, the strategy bandit, insights, the audit trail.

Part of the one validated config (``learning:`` in the YAML file); see the README's
"Learning from every attempt" section.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from mendflow.core.config_base import Section
from mendflow.core.config_fixers import ChainableFixerConfig
from mendflow.core.models import Category


class StrategyConfig(Section):
    """One way of fixing findings: a fixer and its variant (model, context size, repair loop).

    Example::

        - {name: sonnet-repair, fixer: {type: anthropic, model: claude-sonnet-4-6}}
        - {name: haiku-once, fixer: {type: anthropic, model: claude-haiku-4-5,
                                     context_chars: 8000, policy: {max_attempts: 1}}}
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=60,
                      description="the strategy's name in the outcome store and in `mendflow stats`")
    fixer: ChainableFixerConfig = Field(description="the fixer section this strategy runs")
    categories: list[Category] | None = Field(
        None, description="finding categories this strategy may be chosen for; None = all")


class LearningConfig(Section):
    """What mendflow records about every attempt, and how it uses that history."""

    enabled: bool = Field(True, description="record attempts in the outcome store and use them")
    database_url: str | None = Field(
        None, description="any SQLAlchemy URL (postgresql+psycopg://user@host/db ...); "
        "None = SQLite at <state dir>/mendflow.db in WAL mode")
    connect_timeout_s: float = Field(
        5.0, gt=0, description="seconds a store write may wait for the database (a lock, a "
        "connection) before it is given up and reported; a mission never waits longer")
    audit: bool = Field(True, description="append commits, approvals, merges, pushes, reverts "
                        "and config changes to <state dir>/audit.jsonl")
    strategies: list[StrategyConfig] = Field(
        default_factory=list, description="strategies the bandit chooses among per finding "
        "category; empty = always the `fixer` section (outcomes are still recorded)")
    exploration_floor: float = Field(
        0.1, ge=0, le=1, description="probability of trying a uniformly random eligible "
        "strategy instead of the Thompson-sampling choice")
    fix_value_usd: float = Field(
        1.0, gt=0, description="what an accepted fix is worth, USD: the bandit maximizes "
        "sampled P(accept) × fix_value_usd − expected cost per attempt")
    cost_floor_usd: float = Field(
        0.001, gt=0, description="the least expected cost per attempt, USD, in the queue's "
        "P(accept) × severity weight ÷ expected cost (an offline fixer costs 0)")
    prior_cost_usd: float = Field(
        0.05, ge=0, description="expected cost per attempt, USD, of a model strategy with no "
        "history yet")
    hopeless_after: int = Field(
        5, ge=1, description="a category that failed this many times in a repository and "
        "never succeeded there is skipped")
    hopeless_days: float = Field(7, gt=0, description="for this many days after its last failure")
    min_attempts_for_insight: int = Field(
        5, ge=1, description="attempts a strategy/category needs before an insight names it")
    low_accept_rate: float = Field(
        0.25, ge=0, le=1, description="an accept rate below this suggests excluding the category")
    high_cost_per_fix_usd: float = Field(
        0.5, ge=0, description="a cost per accepted fix above this suggests a cheaper strategy")
    analyze: bool = Field(True, description="add the self-analysis (radon: complexity, "
                          "maintainability, hotspots) to every mission report")

    @model_validator(mode="after")
    def _unique_names(self) -> LearningConfig:
        names = [s.name for s in self.strategies]
        if len(set(names)) != len(names):
            raise ValueError(f"strategy names must be unique: {names}")
        return self
