"""The strategy bandit, hopeless categories and the expected-value queue (pure functions)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from mendflow.core.findings import make_finding
from mendflow.core.learning import Prior, choose_strategy, hopeless, rank_by_value

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
# category -> strategy -> (true accept rate, cost per attempt in USD)
# (each strategy is good at one category: a dear model at failing tests, a cheap one at types)
WORLD = {"test-failure": {"big": (0.9, 0.09), "small": (0.1, 0.006)},
         "type": {"big": (0.2, 0.09), "small": (0.9, 0.006)}}


def simulate(seed: int, missions: int = 6, per_mission: int = 3):
    """Missions of ``per_mission`` findings per category; priors are updated after each."""
    world_rng, priors = random.Random(seed), {}
    log = []  # (mission, category, strategy, accepted, cost)
    for mission in range(missions):
        made = []
        for category, arms in WORLD.items():
            for n in range(per_mission):
                choice = choose_strategy(category, [(s, True) for s in arms], priors,
                                         random.Random(f"{seed}:{mission}:{category}:{n}"),
                                         exploration_floor=0.1, fix_value_usd=1.0,
                                         prior_cost_usd=0.05)
                rate, cost = arms[choice.strategy]
                made.append((mission, category, choice.strategy, world_rng.random() < rate, cost))
        for _, category, strategy, ok, cost in made:  # recorded at the end of the mission
            old = priors.get((strategy, category)) or Prior(strategy=strategy, category=category)
            priors[(strategy, category)] = old.model_copy(update={
                "accepted": old.accepted + ok, "failed": old.failed + (not ok),
                "cost_usd": old.cost_usd + cost})
        log += made
    return log


def share(log, category, strategy, missions):
    rows = [r for r in log if r[1] == category and r[0] in missions]
    return sum(r[2] == strategy for r in rows) / len(rows)


def spend_per_fix(log, missions):
    rows = [r for r in log if r[0] in missions]
    return sum(r[4] for r in rows) / max(1, sum(r[3] for r in rows))


def test_the_choice_shifts_to_the_better_strategy_per_category_over_many_seeds():
    runs = [simulate(seed) for seed in range(200)]
    early, late = {0}, {4, 5}
    assert sum(share(r, "test-failure", "big", late) for r in runs) / len(runs) > 0.8
    assert sum(share(r, "type", "small", late) for r in runs) / len(runs) > 0.8
    shifted = sum(share(r, "test-failure", "big", late) > share(r, "test-failure", "big", early)
                  or share(r, "test-failure", "big", early) == 1 for r in runs)
    assert shifted / len(runs) > 0.9
    cheaper = sum(spend_per_fix(r, late) < spend_per_fix(r, early) for r in runs)
    assert cheaper / len(runs) > 0.75


def test_the_exploration_floor_keeps_trying_a_bad_strategy():
    priors = {("good", "lint"): Prior(strategy="good", category="lint", accepted=50),
              ("bad", "lint"): Prior(strategy="bad", category="lint", failed=50)}
    picks = [choose_strategy("lint", [("good", False), ("bad", False)], priors,
                             random.Random(n), exploration_floor=0.2, fix_value_usd=1.0,
                             prior_cost_usd=0.05) for n in range(2000)]
    bad = [c for c in picks if c.strategy == "bad"]
    assert 0.06 < len(bad) / len(picks) < 0.14  # half of the 20 % explorations
    assert all(c.explored for c in bad)
    assert picks[0].describe().startswith("lint: ")


def test_a_category_that_never_succeeded_is_hopeless_for_m_days():
    failures = [Prior(strategy="a", category="type", failed=3, last_failure=NOW),
                Prior(strategy="b", category="type", failed=2, last_failure=NOW - timedelta(1))]
    why = hopeless("type", failures, NOW, after=5, days=7)
    assert why is not None and "5 failures" in why and "2026-12-08" in why
    assert hopeless("type", failures, NOW + timedelta(days=8), after=5, days=7) is None
    assert hopeless("type", failures, NOW, after=6, days=7) is None
    success = [*failures, Prior(strategy="c", category="type", accepted=1)]
    assert hopeless("type", success, NOW, after=5, days=7) is None
    assert hopeless("lint", failures, NOW, after=5, days=7) is None


def test_the_queue_is_ranked_by_expected_value():
    def finding(key, category, severity):
        return make_finding(None, source="mypy", rule=key, path="m.py", line=1, key=key,
                            severity=severity, category=category, message=key)

    high_type = finding("t", "type", "high")
    low_lint = finding("l", "lint", "low")
    medium_sec = finding("s", "security", "medium")
    priors = {("m", "type"): Prior(strategy="m", category="type", failed=9, cost_usd=4.5),
              ("m", "lint"): Prior(strategy="m", category="lint", accepted=9, cost_usd=0.09)}
    # type: P=0.09, weight 5, $0.5 -> 0.9; lint: P=0.91, weight 1, $0.01 -> 91;
    # security (no history): P=0.5, weight 2, $0.05 -> 20
    order = rank_by_value([high_type, low_lint, medium_sec], priors, cost_floor_usd=0.001,
                          prior_cost_usd=0.05)
    assert [f.id for f in order] == [low_lint.id, medium_sec.id, high_type.id]
    assert rank_by_value([high_type, low_lint], {}, cost_floor_usd=0.001,
                         prior_cost_usd=0.05) == [high_type, low_lint]
