"""Missions that learn: a series through the fake Messages API, where the accept rate
differs by finding category and by strategy.

Two strategies (``learning.strategies``): ``big`` (model claude-big, $15/$75 per million
tokens) fixes failing tests but declines type errors; ``small`` (claude-small, $1/$5)
fixes type errors but proposes wrong fixes for failing tests, which the gates refuse.
Every mission runs on the same repository (three failing tests, two mypy errors; a mission
commits only on its own branch, so each one finds the same bugs), with real pytest, ruff
and mypy, real Prefect and the real anthropic SDK. Every attempt lands in the outcome
store, and the next mission's bandit starts from that history.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mendflow.core.config_learning import LearningConfig
from mendflow.core.insights import stats_report
from mendflow.flows.mission import maintenance_mission
from mendflow.infra import audit
from mendflow.infra.outcomes import OutcomeStore
from tests.fakes import fake_messages_api as api
from tests.fixtures.bugs import load_bug, project_files
from tests.helpers.llm import user_text
from tests.helpers.target import target_python

pytestmark = pytest.mark.usefixtures("prefect_harness")

TEST_BUGS = ("wrong_operator", "off_by_one", "none_dereference")
PRICES = {"big": (15.0, 75.0), "small": (1.0, 5.0)}
USAGE = {"input_tokens": 4000, "output_tokens": 400}  # $0.09 a call on big, $0.006 on small
MISSIONS = int(__import__("os").environ.get("LEARN_MISSIONS", "5"))


def responder(request) -> Any:
    """claude-big: the right fix of a failing test, declines a type error; claude-small: the
    wrong fix of a failing test, the right fix of a type error (the return-value error of
    type_error, and the union-attr error mypy reports for none_dereference)."""
    text, model = user_text(request), request.json["model"]
    for name in TEST_BUGS:
        bug = load_bug(name)
        if bug.finding["test_id"] in text:
            return api.tool_input_reply(bug.fix if model == "claude-big" else bug.wrong_fix,
                                        **USAGE)
    if model == "claude-small":  # mypy: return-value in wordstats.py, union-attr in labels.py
        name = "type_error" if "wordstats.py" in text else "none_dereference"
        return api.tool_input_reply(load_bug(name).fix, **USAGE)
    return api.tool_reply(api.analysis(fixable=False, category="type",
                                       root_cause="not sure what the caller expects"), [],
                          **USAGE)


def strategy(name: str, fake: api.FakeMessagesAPI) -> dict[str, Any]:
    inp, out = PRICES[name]
    return {"name": name, "fixer": {
        "type": "anthropic", "base_url": fake.root_url, "model": f"claude-{name}",
        "policy": {"max_attempts": 1},
        "budget": {"input_price_per_mtok": inp, "output_price_per_mtok": out}}}


def write_config(tmp_path: Path, fake: api.FakeMessagesAPI) -> Path:
    data = {"environment": {"type": "interpreter", "python": target_python()},
            "tools": {"bandit": {"enabled": False}},
            "fixer": {"type": "anthropic", "base_url": fake.root_url, "model": "claude-big"},
            "mission": {"max_iterations": 1},
            "learning": {"strategies": [strategy("big", fake), strategy("small", fake)],
                         "analyze": False}}
    path = tmp_path / "mendflow.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def best_share(rows) -> float:
    """The share of attempts that used the better strategy of their category."""
    best = {"test-failure": "big", "type": "small"}
    return sum(r.strategy == best[r.category] for r in rows) / len(rows)


def p_best(attempts, mission_id: str, repository: str, draws: int = 4000) -> dict[str, float]:
    """The bandit's probability of choosing the better strategy per category, from the
    attempts recorded before ``mission_id`` (Monte Carlo over its own random draws)."""
    import random

    from mendflow.core.learning import Prior, choose_strategy

    earlier = [a for a in attempts if a.mission_id < mission_id]
    priors: dict[tuple[str, str], Prior] = {}
    for a in earlier:
        old = priors.get((a.strategy, a.category)) or Prior(strategy=a.strategy,
                                                             category=a.category)
        ok = a.result == "accepted"
        priors[(a.strategy, a.category)] = old.model_copy(update={
            "accepted": old.accepted + ok, "failed": old.failed + (not ok),
            "cost_usd": old.cost_usd + a.cost_usd})
    learning, best = LearningConfig(), {"test-failure": "big", "type": "small"}
    out = {}
    for category, strategy in best.items():
        wins = sum(choose_strategy(category, [("big", True), ("small", True)], priors,
                                   random.Random(n), exploration_floor=learning.exploration_floor,
                                   fix_value_usd=learning.fix_value_usd,
                                   prior_cost_usd=learning.prior_cost_usd).strategy == strategy
                   for n in range(draws))
        out[category] = round(wins / draws, 1)
    return out


def spend_per_fix(rows) -> float:
    return sum(r.cost_usd for r in rows) / max(1, sum(r.result == "accepted" for r in rows))


@pytest.mark.slow  # five missions with four or five candidates each: 4-10 min on 2 busy cores
@pytest.mark.timeout(1800)
def test_the_choice_shifts_to_the_better_strategy_and_spend_per_fix_falls(
        make_repo, tmp_path, fake_anthropic, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-learning")
    fake_anthropic.respond_with(responder)
    config = write_config(tmp_path, fake_anthropic)
    repo = make_repo(project_files(*TEST_BUGS, "type_error"))
    results = [maintenance_mission(path=str(repo), config_file=str(config),
                                   mission_id=f"adapt-{n}") for n in range(1, MISSIONS + 1)]

    import os

    home = Path(os.environ["MENDFLOW_HOME"])
    store = OutcomeStore.open(None, home)
    by_mission = {r.mission_id: store.attempts(mission_id=r.mission_id) for r in results}
    trace = {m: [(r.category, r.rule, r.strategy, r.result) for r in rows]
             for m, rows in by_mission.items()}
    # three failing tests and two mypy errors; fixing none_dereference fixes both of its own
    assert all(4 <= len(rows) <= 5 for rows in by_mission.values()), trace
    first = by_mission["adapt-1"]
    last = [r for n in (MISSIONS - 1, MISSIONS) for r in by_mission[f"adapt-{n}"]]
    # the policy's own probability of choosing the better strategy, before each mission
    chance = [p_best(store.attempts(), f"adapt-{n}", str(repo)) for n in range(1, MISSIONS + 1)]
    assert chance[0] == {"test-failure": 0.5, "type": 0.5}, chance  # no history: a coin
    assert min(chance[-1].values()) >= 0.8, chance
    # what the missions did: mostly the better strategy at the end, and cheaper fixes
    assert best_share(last) >= 0.75 and best_share(last) > best_share(first), trace
    assert spend_per_fix(last) < spend_per_fix(first), trace
    # every record is what the fake API and the gates said
    for row in (r for rows in by_mission.values() for r in rows):
        good = (row.strategy, row.category) in {("big", "test-failure"), ("small", "type")}
        assert row.result == ("accepted" if good else
                              "declined" if row.strategy == "big" else "rejected"), row
        assert row.cost_usd == pytest.approx(0.09 if row.strategy == "big" else 0.006)
        assert (row.tokens_in, row.tokens_out) == (4000, 400) and row.wall_s > 0
    attempts = sum(len(rows) for rows in by_mission.values())
    assert len(fake_anthropic.requests) == attempts
    # the missions' rows and insights
    missions = store.missions()
    assert [m.mission_id for m in missions] == [f"adapt-{n}" for n in range(1, MISSIONS + 1)]
    report = stats_report(store.strategy_stats(), missions, store.outcome_counts(),
                          LearningConfig())
    rates = {(s["strategy"], s["category"]): s["accept_rate"] for s in report["strategies"]}
    assert rates.get(("big", "test-failure")) == 1.0 and rates.get(("small", "type"), 1.0) == 1.0
    last_report = Path(results[-1].report_dir) / "final_maintenance_report.md"
    text = last_report.read_text(encoding="utf-8")
    assert "## Insights" in text and "(progress.png)" in text
    assert (Path(results[-1].report_dir) / "progress.png").read_bytes()[:4] == b"\x89PNG"
    # the audit trail holds a commit per accepted fix and the first config change
    entries = audit.read(home)
    commits = [e for e in entries if e["what"] == "commit"]
    assert len(commits) == sum(r.result == "accepted" for rows in by_mission.values()
                               for r in rows)
    assert [e["what"] for e in entries].count("config-change") == 1  # the first mission's
    assert audit.verify(home).ok
    assert json.loads(json.dumps(report))["attempts"] == attempts
