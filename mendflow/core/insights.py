"""Insights: lines a person can act on, from the outcome store's aggregates.

:func:`stats_report` builds the object ``mendflow stats --json`` prints (the contract:
``attempts``, ``strategies`` and ``insights``) and the mission's insights artifact.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from mendflow.core.config_learning import LearningConfig
from mendflow.core.learning import MissionRecord, StrategyStats


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "n/a"


def _money(value: float) -> str:
    return f"${value:.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def strategy_lines(stats: Sequence[StrategyStats], learning: LearningConfig) -> list[str]:
    """Success rate and cost per accepted fix of each strategy on each category.

    A row with fewer than ``min_attempts_for_insight`` attempts is left out. A rate
    below ``low_accept_rate`` suggests excluding the category; a cost per accepted fix
    above ``high_cost_per_fix_usd`` suggests a cheaper strategy.
    """
    lines = []
    for row in stats:
        if row.attempts < learning.min_attempts_for_insight:
            continue
        head = f"{row.strategy} fixes of {row.category} findings"
        if row.accepted == 0:
            lines.append(f"{head}: none of {row.attempts} accepted, {_money(row.cost_usd)} "
                         "spent; consider excluding the category")
            continue
        per_fix = row.cost_usd / row.accepted
        line = f"{head}: {_pct(row.accepted, row.attempts)} accepted at {_money(per_fix)} each"
        if row.accept_rate < learning.low_accept_rate:
            line += "; consider excluding the category"
        elif per_fix > learning.high_cost_per_fix_usd:
            line += "; consider a cheaper strategy"
        lines.append(line)
    by_category: dict[str, list[StrategyStats]] = defaultdict(list)
    for row in stats:
        if row.attempts >= learning.min_attempts_for_insight:
            by_category[row.category].append(row)
    for category, rows in sorted(by_category.items()):
        if len(rows) > 1:
            best = max(rows, key=lambda r: r.accept_rate)
            worst = min(rows, key=lambda r: r.accept_rate)
            if best.accept_rate > worst.accept_rate:
                lines.append(f"for {category} findings {best.strategy} beats {worst.strategy}: "
                             f"{_pct(best.accepted, best.attempts)} against "
                             f"{_pct(worst.accepted, worst.attempts)} accepted")
    return lines


def approval_lines(missions: Sequence[MissionRecord]) -> list[str]:
    """Approval rate and median time to approval per autonomy level."""
    by_level: dict[str, list[MissionRecord]] = defaultdict(list)
    for mission in missions:
        if mission.autonomy and mission.approval_decision not in (None, "none"):
            by_level[mission.autonomy].append(mission)
    lines = []
    for level, rows in sorted(by_level.items()):
        approved = sum(m.approval_decision in ("approved", "partial", "auto") for m in rows)
        waits = [(m.decided_at - m.requested_at).total_seconds() for m in rows
                 if m.decided_at and m.requested_at]
        line = f"{level}: {_pct(approved, len(rows))} of {len(rows)} missions approved"
        if waits:
            line += f", median time to approval {_duration(statistics.median(waits))}"
        lines.append(line)
    return lines


def stats_report(stats: Sequence[StrategyStats], missions: Sequence[MissionRecord],
                 counts: dict[str, int], learning: LearningConfig) -> dict[str, Any]:
    """The ``mendflow stats --json`` object.

    Args:
        stats: per (strategy, category) aggregates (``OutcomeStore.strategy_stats``).
        missions: the missions in the same window (``OutcomeStore.missions``).
        counts: approval and post-merge outcome counts (``OutcomeStore.outcome_counts``).
        learning: the thresholds.

    Returns:
        ``{"attempts": int, "strategies": [{strategy, category, attempts, accepted,
        accept_rate, tokens_in, tokens_out, cost_usd}], "insights": [str]}``.
    """
    attempts = sum(r.attempts for r in stats)
    accepted = sum(r.accepted for r in stats)
    cost = sum(r.cost_usd for r in stats)
    insights: list[str] = []
    if attempts:
        line = (f"{attempts} attempts, {accepted} accepted ({_pct(accepted, attempts)}), "
                f"{_money(cost)} spent")
        if accepted:
            line += f": {_money(cost / accepted)} per accepted fix"
        insights.append(line)
    insights.extend(strategy_lines(stats, learning))
    insights.extend(approval_lines(missions))
    insights.extend(revert_lines(counts, accepted))
    if not insights:
        insights.append("no attempts recorded yet: run a mission")
    return {"attempts": attempts,
            "strategies": [r.model_dump() for r in stats],
            "insights": insights}


def revert_lines(counts: dict[str, int], accepted: int) -> list[str]:
    """The revert rate over the fixes whose post-merge outcome is known (kept or reverted).

    Args:
        counts: :meth:`mendflow.infra.outcomes.OutcomeStore.outcome_counts`
            (``merge:kept``, ``merge:reverted``, ``merge:None``).
        accepted: accepted attempts in the period.

    Returns:
        One line, or none when nothing was accepted.
    """
    if not accepted:
        return []
    kept, reverted = counts.get("merge:kept", 0), counts.get("merge:reverted", 0)
    merged = kept + reverted
    if not merged:
        return [f"revert rate: no post-merge outcome yet for the {accepted} accepted fixes "
                "(the evolution loop's watch records kept and reverted)"]
    return [f"revert rate: {reverted} of {merged} merged fixes reverted ({_pct(reverted, merged)}), "
            f"{kept} kept; {accepted - merged} accepted fixes not seen merged yet"]


def insights_markdown(report: dict[str, Any]) -> str:
    """The stats object as Markdown: the insights, then a table of strategies."""
    lines = ["## Insights", ""]
    lines += [f"- {line}" for line in report["insights"]]
    if report["strategies"]:
        lines += ["", "| strategy | category | attempts | accepted | accept rate | tokens in "
                  "| tokens out | cost $ |", "|---|---|---|---|---|---|---|---|"]
        for row in report["strategies"]:
            lines.append(f"| {row['strategy']} | {row['category']} | {row['attempts']} | "
                         f"{row['accepted']} | {row['accept_rate']:.2f} | {row['tokens_in']} | "
                         f"{row['tokens_out']} | {row['cost_usd']:.4f} |")
    return "\n".join(lines) + "\n"
