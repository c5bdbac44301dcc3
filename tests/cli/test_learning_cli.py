"""``mendflow stats``, ``mendflow audit`` and ``mendflow analyze`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mendflow.infra import audit
from mendflow.infra.outcomes import OutcomeStore
from tests.helpers.git import git
from tests.helpers.outcomes import attempt, mission


def mendflow(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MENDFLOW_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "mendflow.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_stats_json_contract(tmp_path, make_repo):
    repo = make_repo({"a.py": "x = 1\n"})
    home = tmp_path / "home"
    store = OutcomeStore.open(None, home)
    rows = [attempt(f"k{i}", repository=str(repo), strategy="anthropic:small", category="type",
                    result="accepted" if i < 1 else "rejected", cost=0.1) for i in range(8)]
    rows += [attempt(f"r{i}", repository=str(repo)) for i in range(5)]
    rows += [attempt("other", repository="/elsewhere")]
    rows += [attempt("old", repository="/elsewhere",
                     when=datetime.now(timezone.utc) - timedelta(days=30))]
    store.record_attempts(rows)
    store.record_mission(mission("m1", repository=str(repo)))

    out = mendflow("stats", "--repo", str(repo / "a.py"), "--json", home=home)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) == {"attempts", "strategies", "insights"} and report["attempts"] == 13
    assert {tuple(sorted(r)) for r in report["strategies"]} == {tuple(sorted(
        ["strategy", "category", "attempts", "accepted", "accept_rate", "tokens_in",
         "tokens_out", "cost_usd"]))}
    small = next(r for r in report["strategies"] if r["strategy"] == "anthropic:small")
    assert (small["attempts"], small["accepted"], small["accept_rate"]) == (8, 1, 0.125)
    assert round(small["cost_usd"], 6) == 0.8
    assert ("anthropic:small fixes of type findings: 12 % accepted at $0.80 each; "
            "consider excluding the category") in report["insights"]
    everything = json.loads(mendflow("stats", "--json", home=home).stdout)
    assert everything["attempts"] == 15
    recent = json.loads(mendflow("stats", "--json", "--since", "7", home=home).stdout)
    assert recent["attempts"] == 14  # the 30-day-old attempt is left out


def test_audit_verify_exit_codes_and_show(tmp_path):
    home = tmp_path / "home"
    for i in range(3):
        audit.append(home, who=audit.AUTOMATION, what="commit", mission="m-7",
                     details={"commit": str(i)})
    ok = mendflow("audit", "verify", home=home)
    assert ok.returncode == 0 and "3 entries" in ok.stdout
    shown = json.loads(mendflow("audit", "show", "--mission", "m-7", "--json", home=home).stdout)
    assert [e["details"]["commit"] for e in shown] == ["0", "1", "2"]
    path = audit.audit_path(home)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[1].replace('"1"', '"X"') + lines[2])
    broken = mendflow("audit", "verify", home=home)
    assert broken.returncode == 1 and "line 2" in broken.stderr


def test_analyze_json_contract(tmp_path, make_repo):
    repo = make_repo({"pkg/a.py": "class A:\n    def f(self, x):\n        if x:\n"
                      "            return 1\n        return 2\n", "pkg/b.py": "def g():\n    pass\n"})
    (repo / "pkg" / "a.py").write_text((repo / "pkg" / "a.py").read_text() + "\n# more\n")
    git(repo, "commit", "-qam", "again")
    out = mendflow("analyze", str(repo), "--json", home=tmp_path / "home")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    modules = {m["path"]: m for m in data["modules"]}
    assert set(modules["pkg/a.py"]) == {"path", "lines", "classes", "functions", "complexity",
                                         "maintainability"}
    assert (modules["pkg/a.py"]["classes"], modules["pkg/a.py"]["functions"]) == (1, 1)
    assert modules["pkg/a.py"]["complexity"] == 2
    assert 0 < modules["pkg/a.py"]["maintainability"] <= 100
    assert data["hotspots"][0] == {"path": "pkg/a.py", "complexity": 2, "churn": 2, "score": 4}
