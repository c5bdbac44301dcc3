"""Choosing a strategy per group (the bandit of :mod:`mendflow.core.learning`) and the queue order.

A strategy is a fixer section and its variant (model, context size, repair-loop bound),
configured under ``learning.strategies``; without any, the ``fixer`` section is the one
strategy and only the outcomes are learned.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from mendflow.core.config import ChainFixerConfig, FixerConfig, MendflowConfig
from mendflow.core.config_learning import StrategyConfig
from mendflow.core.learning import Choice, Prior, StrategyInfo, choose_strategy, hopeless, rank_by_value
from mendflow.core.models import Finding
from mendflow.tasks.fix import build_fixer


def strategy_info(fixer: FixerConfig, name: str | None = None,
                  proposal_fixer: str | None = None) -> StrategyInfo:
    """Name, fixer type, model, variant and prices of a fixer section.

    Args:
        fixer: the fixer section (a chain is resolved to the member named ``proposal_fixer``).
        name: the strategy's configured name; None = derived (``ruff``, ``anthropic:<model>``).
        proposal_fixer: ``Proposal.fixer`` (which member of a chain answered).

    Returns:
        The strategy's description.
    """
    if isinstance(fixer, ChainFixerConfig):
        member = next((f for f in fixer.fixers if f.type == proposal_fixer), fixer.fixers[-1])
        return strategy_info(member, name)
    model = getattr(fixer, "model", None)
    policy = getattr(fixer, "policy", None)
    budget = getattr(fixer, "budget", None)
    variant = (f"context {fixer.context_chars} chars, {policy.max_attempts} attempts"
               if policy is not None and hasattr(fixer, "context_chars") else None)
    return StrategyInfo(
        name=name or (f"{fixer.type}:{model}" if model else fixer.type), fixer=fixer.type,
        model=model, variant=variant,
        input_price_per_mtok=budget.input_price_per_mtok if budget else 0.0,
        output_price_per_mtok=budget.output_price_per_mtok if budget else 0.0)


def planning_fixer(config: MendflowConfig) -> FixerConfig:
    """The fixer section that plans the groups: the strategies' fixers as a chain, else ``fixer``."""
    strategies = config.learning.strategies
    if not config.learning.enabled or not strategies:
        return config.fixer
    return ChainFixerConfig(fixers=[s.fixer for s in strategies])


def _with_state_dir(strategy: StrategyConfig, state_dir: Path | None):
    fixer = strategy.fixer
    if hasattr(fixer, "state_dir") and fixer.state_dir is None and state_dir is not None:
        fixer = fixer.model_copy(update={"state_dir": state_dir})
    return fixer


@task(name="choose-strategy", cache_policy=NO_CACHE, timeout_seconds=60)
def choose_strategy_for(config: MendflowConfig, group: Sequence[Finding],
                        priors: dict[tuple[str, str], Prior],
                        seed: str) -> tuple[Choice, FixerConfig | None, StrategyInfo | None]:
    """Choose how to fix one group: a strategy by cost-weighted Thompson sampling, or skip it.

    Args:
        config: the mission's config (``learning`` and ``fixer``).
        group: one planned group (its first finding's category decides).
        priors: the repository's priors (:func:`mendflow.tasks.learn.record.load_priors`).
        seed: the random seed (mission id, group, iteration): the same mission makes the
            same choices when it is resumed.

    Returns:
        ``(choice, fixer section, strategy)``; the section and the strategy are None when
        the category is skipped as hopeless.

    Raises:
        ConfigError: a strategy's fixer type is unknown.
    """
    learning = config.learning
    category = group[0].category
    if learning.enabled:
        why = hopeless(category, priors.values(), datetime.now(timezone.utc),
                       after=learning.hopeless_after, days=learning.hopeless_days)
        if why is not None:
            return Choice(category=category, strategy=None, reason=why), None, None
    strategies = [s for s in learning.strategies
                  if s.categories is None or category in s.categories] if learning.enabled else []
    ids = sorted(f.id for f in group)
    eligible = [s for s in strategies
                if any(sorted(f.id for f in g) == ids for g in build_fixer(s.fixer).plan(group))]
    if not eligible:
        info = strategy_info(config.fixer)
        prior = priors.get((info.name, category))
        return (Choice(category=category, strategy=info.name,
                       alpha=1 + (prior.accepted if prior else 0),
                       beta=1 + (prior.failed if prior else 0),
                       reason="the fixer section (no configured strategy fits)"),
                config.fixer, info)
    choice = choose_strategy(
        category, [(s.name, s.fixer.type != "ruff") for s in eligible], priors,
        random.Random(seed), exploration_floor=learning.exploration_floor,
        fix_value_usd=learning.fix_value_usd, prior_cost_usd=learning.prior_cost_usd)
    chosen = next(s for s in eligible if s.name == choice.strategy)
    return choice, _with_state_dir(chosen, config.mission.state_dir), \
        strategy_info(chosen.fixer, chosen.name)


@task(name="rank-by-value", cache_policy=NO_CACHE, timeout_seconds=60)
def rank_queue(config: MendflowConfig, findings: Sequence[Finding],
               priors: dict[tuple[str, str], Prior]) -> list[Finding]:
    """The queue ordered by P(accept) × severity weight ÷ expected cost (see
    :func:`mendflow.core.learning.rank_by_value`); unchanged when learning is off."""
    if not config.learning.enabled or not priors:
        return list(findings)
    return rank_by_value(findings, priors, cost_floor_usd=config.learning.cost_floor_usd,
                         prior_cost_usd=config.learning.prior_cost_usd)
