"""The mission ledger's choice of the findings a fixer may work on (pure, no Prefect)."""

from __future__ import annotations

from pathlib import Path

from mendflow.core.config import MendflowConfig
from mendflow.core.models import (
    Finding,
    Measurement,
    RepoTarget,
    Sandbox,
    TestCase,
    TestRun,
    ToolResult,
)
from mendflow.flows.ledger import MissionLedger
from tests.helpers.detect import TARGET_ENV


def finding(path: str, category: str = "lint") -> Finding:
    return Finding(id=f"ruff:{path}", source="ruff", rule="F401", severity="low",
                   category=category, path=path, line=1, message="unused import")


def ledger_over(paths: list[str], config: MendflowConfig, tmp_path: Path) -> MissionLedger:
    run = TestRun(collected=1, cases=(TestCase(nodeid="pkg/checks.py::test_x", outcome="passed",
                                               path="pkg/checks.py"),))
    baseline = Measurement(tree="t", score=50.0, findings=tuple(finding(p) for p in paths),
                           results=(ToolResult(tool="pytest", ok=True, test_run=run),))
    target = RepoTarget(root=tmp_path, head_commit="0" * 40, head_branch="main",
                        scope="project", scope_path=".")
    return MissionLedger(mission_id="m1", target=target, sandbox=Sandbox(
        mission_id="m1", path=tmp_path, repo_root=tmp_path, branch="mendflow/m1",
        base_commit="0" * 40),
                         env=TARGET_ENV, config=config, baseline=baseline, current=baseline,
                         backups_dir=tmp_path / "backups")


def test_findings_in_files_the_test_files_gate_guards_are_not_given_to_the_fixer(tmp_path):
    paths = ["pkg/core.py", "pkg/checks.py", "tests/conftest.py", "conftest.py",
             "tests/test_a.py", "noxfile.py", ".github/workflows/ci.py", "docs/conf.py"]
    ledger = ledger_over(paths, MendflowConfig(), tmp_path)
    fixable = {f.path for f in ledger.fixable(ledger.baseline.findings)}
    # collected at baseline, a conftest.py anywhere, tests/**, test config, a CI file
    assert fixable == {"pkg/core.py", "docs/conf.py"}

    allowed = MendflowConfig.model_validate({"gates": {"allow_test_changes": True}})
    ledger = ledger_over(paths, allowed, tmp_path)
    assert {f.path for f in ledger.fixable(ledger.baseline.findings)} == set(paths)
