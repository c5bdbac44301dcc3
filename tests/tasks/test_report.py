"""Document stage: report files (markdown, JSON, SARIF) and Prefect artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mendflow.core.config import ScoreConfig
from mendflow.core.models import (
    BackupEntry,
    Finding,
    GateResult,
    Measurement,
    MissionResult,
    PatchOutcome,
    QualityScore,
    TestCase,
    TestRun,
    ValidationReport,
)
from mendflow.core.sarif import FINGERPRINT_KEY, SARIF_VERSION
from mendflow.core.score import score_breakdown
from mendflow.tasks.report import (
    REPORT_FILES,
    artifact_key,
    patch_table,
    publish_report,
    render_markdown,
    write_mission_reports,
    write_reports,
)
from tests.helpers.prefect import read_artifact


def finding(fid: str, source: str, rule: str, severity: str, path: str, line: int | None,
            message: str, **extra) -> Finding:
    category = {"ruff": "lint", "mypy": "type", "bandit": "security", "pytest": "test-failure"}
    return Finding(id=fid, source=source, rule=rule, severity=severity,
                   category=category[source], path=path, line=line, message=message, **extra)


UNUSED = finding("aaaa000000000001", "ruff", "F401", "low", "pkg/a.py", 1,
                 "`os` imported but unused", fixable=True,
                 url="https://docs.astral.sh/ruff/rules/unused-import", column=8)
TYPE_ERR = finding("bbbb000000000002", "mypy", "arg-type", "medium", "pkg/b.py", 12,
                   'Argument 1 to "g" has incompatible type "str"; expected "int"', symbol="g")
SHELL = finding("cccc000000000003", "bandit", "B602", "high", "pkg/run.py", 4,
                "subprocess call with shell=True | risky", url="https://bandit.readthedocs.io/B602")
FAILING = finding("dddd000000000004", "pytest", "test-failure", "critical", "tests/test_a.py",
                  None, "AssertionError: assert 1 == 2", test_id="tests/test_a.py::test_x")
NEW = finding("eeee000000000005", "ruff", "F841", "low", "pkg/c.py", 3, "unused variable")

GATES_OK = tuple(GateResult(gate=g, passed=True, detail=f"{g} ok")
                 for g in ("syntax", "tools-ran", "no-test-regression"))
AFTER = Measurement(tree="t2", results=(), findings=(TYPE_ERR, SHELL, FAILING, NEW), score=80.5,
                    loc=1200)
ACCEPTED = ValidationReport(patch_id="p0accepted01", accepted=True, gates=GATES_OK, after=AFTER,
                            fixed_finding_ids=(UNUSED.id,))
REJECTED = ValidationReport(
    patch_id="p1rejected02", accepted=False, reason="no-new-findings",
    gates=(*GATES_OK, GateResult(gate="no-new-findings", passed=False,
                                 detail="NEW ruff F841 pkg/c.py:3: unused variable")),
    after=AFTER, new_findings=(NEW,))


def mission(**changes) -> MissionResult:
    accepted = PatchOutcome(
        id="p0accepted01", finding_ids=(UNUSED.id,), fixer="ruff", status="accepted",
        commit="feedface" * 5, title="ruff: fix F401 (unused-import) in 1 file", iteration=1,
        files=("pkg/a.py",), validation=ACCEPTED.model_copy(update={"after": None}))
    rejected = PatchOutcome(
        id="p1rejected02", finding_ids=(TYPE_ERR.id,), fixer="anthropic", status="rejected",
        reason="no-new-findings", title="fix arg type", iteration=1, files=("pkg/b.py",))
    fields = {
        "mission_id": "m-20260101-1200-abcd1234", "flow_run_id": "1f2e", "status": "completed",
        "repository": "/home/u/proj", "base_commit": "0123456789abcdef0123456789abcdef01234567",
        "branch": "mendflow/m-20260101-1200-abcd1234",
        "findings": (UNUSED, TYPE_ERR, SHELL, FAILING),
        "final_findings": (TYPE_ERR, SHELL, FAILING, NEW),
        "patches": (accepted, rejected),
        "quality_score": QualityScore(before=62.0, after=80.5), "report_dir": "/tmp/r",
        "iterations": 1, "stop_reason": "no fixable findings left", "exit_code": 2,
        "worktree": "/home/u/.mendflow/wt/m",
    }
    fields.update(changes)
    return MissionResult(**fields)


BACKUPS = (BackupEntry(path="pkg/a.py", sha256_before="1" * 64, sha256_after="2" * 64,
                       commit="feedface" * 5, patch_id="p0accepted01",
                       backup_path="/home/u/.mendflow/missions/m/backups/pkg/a.py"),)


def test_write_reports_writes_five_parseable_files(tmp_path: Path):
    result = mission()
    report_dir = tmp_path / "report"

    paths = write_reports(result, [ACCEPTED, REJECTED], BACKUPS, report_dir)

    assert [p.name for p in paths] == list(REPORT_FILES)
    assert sorted(p.name for p in report_dir.iterdir()) == sorted(REPORT_FILES)  # no temp files
    session = json.loads((report_dir / "session_data.json").read_text())
    assert session == result.model_dump(mode="json")
    assert MissionResult.model_validate(session) == result

    validations = json.loads((report_dir / "validation_results.json").read_text())
    assert [v["patch_id"] for v in validations] == ["p0accepted01", "p1rejected02"]
    assert validations[0]["after"] == {"tree": "t2", "score": 80.5, "loc": 1200, "findings": 4}
    assert validations[0]["fixed_finding_ids"] == [UNUSED.id]
    assert validations[1]["reason"] == "no-new-findings"
    assert validations[1]["new_finding_ids"] == [NEW.id] and "new_findings" not in validations[1]
    assert validations[1]["gates"][-1] == {"gate": "no-new-findings", "passed": False,
                                           "detail": "NEW ruff F841 pkg/c.py:3: unused variable"}

    backups = json.loads((report_dir / "backup_history.json").read_text())
    assert [BackupEntry.model_validate(b) for b in backups] == list(BACKUPS)


def test_sarif_has_one_run_per_tool_with_required_fields(tmp_path: Path):
    write_reports(mission(), [ACCEPTED], BACKUPS, tmp_path)
    sarif = json.loads((tmp_path / "findings.sarif").read_text())

    assert sarif["version"] == SARIF_VERSION == "2.1.0"
    assert sarif["$schema"].endswith("sarif-schema-2.1.0.json")
    runs = {run["tool"]["driver"]["name"]: run for run in sarif["runs"]}
    assert sorted(runs) == ["bandit", "mypy", "pytest", "ruff"]
    for run in sarif["runs"]:
        rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
        assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == "file:///home/u/proj/"
        for result in run["results"]:
            assert result["message"]["text"]
            assert result["ruleId"] == rule_ids[result["ruleIndex"]]
            assert result["level"] in ("error", "warning", "note")
            assert set(result["partialFingerprints"]) == {FINGERPRINT_KEY}

    ruff_results = {r["partialFingerprints"][FINGERPRINT_KEY]: r for r in runs["ruff"]["results"]}
    unused = ruff_results[UNUSED.id]
    assert unused["ruleId"] == "F401" and unused["level"] == "note"
    assert unused["message"]["text"] == "`os` imported but unused"
    assert unused["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "pkg/a.py", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 1, "startColumn": 8}}
    assert unused["baselineState"] == "absent"  # fixed during the mission
    assert ruff_results[NEW.id]["baselineState"] == "new"
    assert runs["ruff"]["tool"]["driver"]["rules"][0] == {
        "id": "F401", "helpUri": "https://docs.astral.sh/ruff/rules/unused-import"}
    (shell,) = runs["bandit"]["results"]
    assert shell["level"] == "error" and shell["baselineState"] == "unchanged"
    (failing,) = runs["pytest"]["results"]
    assert failing["level"] == "error" and "region" not in failing["locations"][0][
        "physicalLocation"]
    assert failing["properties"]["testId"] == "tests/test_a.py::test_x"


def test_markdown_shows_scores_patches_gates_and_how_to_merge():
    text = render_markdown(mission(), [ACCEPTED, REJECTED])

    assert text.startswith("# mendflow maintenance report: m-20260101-1200-abcd1234\n")
    assert "| Quality score | 62.0 → 80.5 (+18.5) |" in text
    assert "| Patches | 1 accepted, 1 rejected, 0 pending_approval, 0 proposed, 0 declined |" in text
    assert "### `p0accepted01` ruff: fix F401 (unused-import) in 1 file" in text
    assert "### `p1rejected02` fix arg type" in text
    assert "- Status: **rejected: no-new-findings**" in text
    assert f"- Commit: `{'feedface' * 5}`" in text
    assert "| no-new-findings | **FAIL** | NEW ruff F841 pkg/c.py:3: unused variable |" in text
    assert "| ruff | 1 | 1 |" in text and "| critical | 1 | 1 |" in text
    assert "## Remaining findings (top 4 of 4)" in text
    assert "subprocess call with shell=True \\| risky" in text  # pipes escaped in a table cell
    assert "git merge --ff-only mendflow/m-20260101-1200-abcd1234" in text
    assert f"git revert --no-edit {'feedface' * 5}" in text
    assert "git worktree remove /home/u/.mendflow/wt/m" in text


def test_markdown_of_a_dry_run_commits_nothing_and_can_show_a_breakdown():
    config = ScoreConfig()
    run = TestRun(collected=1, cases=(TestCase(nodeid="t::a", outcome="passed"),),
                  coverage_percent=75.0)
    breakdowns = {"before": score_breakdown([UNUSED], run, 1000, config),
                  "after": score_breakdown([], run, 1000, config)}
    result = mission(dry_run=True, patches=(), final_findings=())

    text = render_markdown(result, [], breakdowns=breakdowns)

    assert "Nothing was committed (this was a dry run)" in text
    assert "No candidate patch was proposed." in text
    assert "## Remaining findings\n\nNone." in text
    assert "| Part | before | after |" in text
    assert "| Coverage (points) | 15.0 (75.0%) | 15.0 (75.0%) |" in text
    assert "| Total | 91.4 | 95.0 |" in text


def test_reports_are_rewritten_whole(tmp_path: Path):
    write_reports(mission(), [ACCEPTED, REJECTED], BACKUPS, tmp_path)
    smaller = mission(patches=(), findings=(), final_findings=())
    write_mission_reports.fn(smaller, [], [], tmp_path)
    assert json.loads((tmp_path / "validation_results.json").read_text()) == []
    assert json.loads((tmp_path / "backup_history.json").read_text()) == []
    assert json.loads((tmp_path / "findings.sarif").read_text())["runs"] == []
    assert json.loads((tmp_path / "session_data.json").read_text())["patches"] == []
    assert "p0accepted01" not in (tmp_path / "final_maintenance_report.md").read_text()


def test_failed_mission_without_final_findings_has_no_baseline_state(tmp_path: Path):
    write_reports(mission(status="failed", final_findings=()), [], [], tmp_path)
    sarif = json.loads((tmp_path / "findings.sarif").read_text())
    results = [r for run in sarif["runs"] for r in run["results"]]
    assert len(results) == 4 and not any("baselineState" in r for r in results)


def test_artifact_keys_and_patch_table():
    assert artifact_key("mendflow-report-M_2026/01 x") == "mendflow-report-m-2026-01-x"
    assert artifact_key("--a__b--") == "a-b"
    assert patch_table(mission()) == [
        {"patch": "p0accepted01", "status": "accepted", "reason": "", "commit": "feedface" * 5,
         "findings": 1},
        {"patch": "p1rejected02", "status": "rejected", "reason": "no-new-findings",
         "commit": "", "findings": 1},
    ]


@pytest.mark.slow
def test_publish_report_creates_prefect_artifacts(prefect_harness):
    from prefect import flow

    result = mission(mission_id="M-Test_42")
    markdown = render_markdown(result, [ACCEPTED, REJECTED])

    @flow
    def tiny() -> None:
        publish_report(result, markdown)

    tiny()

    report = read_artifact("mendflow-report-m-test-42")
    table = read_artifact("mendflow-patches-m-test-42")
    assert report is not None and report.type == "markdown" and report.data == markdown
    assert table is not None and table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [row["patch"] for row in rows] == ["p0accepted01", "p1rejected02"]
    assert rows[1]["reason"] == "no-new-findings"


def test_backup_only_summary_points_at_the_backup_index():
    """The backups are copied beside the report, not into it: name the file that lists them."""
    from mendflow.core.summary import delivered_text

    text = delivered_text(mission(backup_only=True, patches=()))
    assert text == "nothing (backup only); backups listed in /tmp/r/backup_history.json"


def test_a_tool_that_crashed_at_baseline_is_named_in_the_result_and_the_report():
    """humanize 4.17.0: mypy crashed at baseline and the report showed 'bandit 2' only, as if
    mypy had found nothing."""
    from mendflow.core.models import ToolFailure, ToolResult

    failures = ToolFailure.of((ToolResult(tool="ruff", ok=True),
                               ToolResult(tool="mypy", ok=False,
                                          error="mypy crashed or failed (exit 2)\nTraceback")))
    assert failures == (ToolFailure(tool="mypy", error="mypy crashed or failed (exit 2)\n"
                                                       "Traceback"),)
    text = render_markdown(mission(tool_failures=failures), [])
    assert "**Did not complete at baseline** (their findings are missing):\n\n" \
           "- mypy: mypy crashed or failed (exit 2)" in text
    assert "Did not complete" not in render_markdown(mission(), [])


def test_test_modules_that_could_not_be_collected_are_named_beside_the_passed_count():
    """jmespath 1.1.0's sdist lacks tests/__init__.py: 5 of its 6 test modules cannot be
    collected, and the report's summary said "1/1 passed" as if the suite were healthy."""
    from mendflow.core.outcomes import suite_summary

    run = TestRun(collected=1, cases=(TestCase(nodeid="tests/test_c.py::test_a",
                                               outcome="passed"),),
                  coverage_percent=31.34, collection_errors=("tests/test_lexer.py",
                                                             "tests/test_parser.py"))
    from mendflow.core.models import ToolResult

    before = suite_summary(Measurement(tree="t1", results=(ToolResult(tool="pytest", test_run=run),),
                                       findings=(), score=50.0, loc=10))
    assert before is not None and (before.passed, before.total, before.uncollected) == (1, 1, 2)
    one = before.model_copy(update={"uncollected": 1})

    text = render_markdown(mission(tests_before=before, tests_after=one), [])
    assert "| Tests | 1/1 passed, 2 test modules not collected, coverage 31.3% → " \
           "1/1 passed, 1 test module not collected, coverage 31.3% |" in text
    healthy = before.model_copy(update={"uncollected": 0})
    assert "| Tests | 1/1 passed, coverage 31.3% → " in render_markdown(
        mission(tests_before=healthy, tests_after=healthy), [])
