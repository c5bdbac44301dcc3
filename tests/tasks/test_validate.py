"""The validation gates: pure checks on hand-built measurements, plus real files for syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

from mendflow.core.config import GatesConfig
from mendflow.core.models import (
    FileCoverage,
    Finding,
    GateResult,
    Measurement,
    Patch,
    TestCase,
    TestRun,
    ToolResult,
)
from mendflow.tasks.validate import (
    FEEDBACK_LIMIT,
    check_patch_syntax,
    check_syntax,
    evaluate_gates,
    format_feedback,
    glob_match,
    judge_patch,
    new_findings,
)

OK_SYNTAX = GateResult(gate="syntax", passed=True, detail="1 changed Python file(s) parse")
GATE_ORDER = ["syntax", "tools-ran", "no-test-regression", "tests-not-weakened", "coverage",
              "no-new-findings", "claimed-fixed", "test-files", "sandbox"]


def finding(fid: str, *, rule: str = "F401", path: str = "pkg/a.py", line: int = 1,
            source: str = "ruff", symbol: str | None = None, message: str = "unused import",
            category: str = "lint") -> Finding:
    return Finding(id=fid, source=source, rule=rule, severity="low", category=category,
                   path=path, line=line, symbol=symbol, message=message)


def run(*cases: tuple[str, str], coverage: float | None = 80.0, collected: int | None = None,
        message: str | None = None, files: tuple[FileCoverage, ...] = ()) -> TestRun:
    return TestRun(collected=len(cases) if collected is None else collected,
                   cases=tuple(TestCase(nodeid=n, outcome=o, message=message if o != "passed"
                                        else None) for n, o in cases),
                   coverage_percent=coverage, files=files)


def measure(findings=(), test_run: TestRun | None = None, *, failed_tools=(),
            tools=("pytest", "ruff", "mypy")) -> Measurement:
    results = []
    for tool in tools:
        ok = tool not in failed_tools
        results.append(ToolResult(tool=tool, findings=(), ok=ok,
                                  test_run=test_run if tool == "pytest" else None,
                                  exit_code=None if ok else 2,
                                  error=None if ok else f"{tool} crashed: INTERNAL ERROR"))
    return Measurement(tree="t", results=tuple(results), findings=tuple(findings), score=50.0)


def patch(*, finding_ids=("a1",), files=("pkg/a.py",)) -> Patch:
    return Patch(id="p1", fixer="ruff", finding_ids=finding_ids, diff="", files=files,
                 title="ruff: fix F401")


TESTS = (("tests/test_a.py::test_one", "passed"), ("tests/test_a.py::test_two", "passed"),
         ("tests/test_a.py::test_three", "failed"))
BASE = measure([finding("a1"), finding("b1", rule="F841", line=7, symbol="f")], run(*TESTS))


def gate(report, name: str) -> GateResult:
    return next(g for g in report.gates if g.gate == name)


def test_a_clean_fix_passes_every_gate_in_order():
    after = measure([finding("b1", rule="F841", line=6, symbol="f")], run(*TESTS))

    report = evaluate_gates(BASE, after, patch(), GatesConfig(), OK_SYNTAX)

    assert report.accepted and report.reason is None
    assert [g.gate for g in report.gates] == GATE_ORDER
    assert all(g.passed and g.detail for g in report.gates)
    assert report.fixed_finding_ids == ("a1",)
    assert report.new_findings == () and report.after == after
    assert report.patch_id == "p1"
    assert format_feedback(report) == ""


def test_tools_ran_fails_when_a_tool_crashes_after():
    after = measure([finding("b1", rule="F841", symbol="f")], run(*TESTS), failed_tools=("mypy",))
    report = evaluate_gates(BASE, after, patch(), GatesConfig(), OK_SYNTAX)
    assert not report.accepted and report.reason == "tools-ran"
    assert "mypy failed on the patched tree (exit status 2): mypy crashed" in gate(
        report, "tools-ran").detail


def test_tools_ran_ignores_a_tool_that_already_failed_at_baseline():
    base = measure(BASE.findings, run(*TESTS), failed_tools=("mypy",))
    after = measure([finding("b1", rule="F841", symbol="f")], run(*TESTS), failed_tools=("mypy",))
    assert gate(evaluate_gates(base, after, patch(), GatesConfig(), OK_SYNTAX), "tools-ran").passed


def test_no_test_regression_names_the_failing_test_and_its_message():
    after_run = run(("tests/test_a.py::test_one", "failed"),
                    ("tests/test_a.py::test_three", "failed"),
                    message="AssertionError: assert 1 == 2", collected=3)
    after = measure([finding("b1", rule="F841", symbol="f")], after_run)

    report = evaluate_gates(BASE, after, patch(), GatesConfig(), OK_SYNTAX)

    detail = gate(report, "no-test-regression").detail
    assert "FAILED tests/test_a.py::test_one: AssertionError: assert 1 == 2" in detail
    assert "MISSING tests/test_a.py::test_two" in detail
    assert "test_three" not in detail  # it failed before too
    assert report.reason == "no-test-regression"
    feedback = format_feedback(report)
    assert feedback.startswith(
        "Gate 'no-test-regression' failed:\nFAILED tests/test_a.py::test_one")


def test_no_test_regression_without_baseline_tests_passes():
    base = measure(BASE.findings, None, tools=("ruff",))
    after = measure([], None, tools=("ruff",))
    report = evaluate_gates(base, after, patch(), GatesConfig(), OK_SYNTAX)
    assert report.accepted
    assert "no baseline test run" in gate(report, "no-test-regression").detail


def test_tests_not_weakened_catches_newly_skipped_and_fewer_collected():
    skipped = run(("tests/test_a.py::test_one", "passed"), ("tests/test_a.py::test_two", "skipped"),
                  ("tests/test_a.py::test_three", "xfailed"), message="reason: flaky")
    after = measure([finding("b1", rule="F841", symbol="f")], skipped)
    report = evaluate_gates(BASE, after, patch(), GatesConfig(), OK_SYNTAX)
    detail = gate(report, "tests-not-weakened").detail
    assert "SKIPPED tests/test_a.py::test_two (was passed): reason: flaky" in detail
    assert "XFAILED tests/test_a.py::test_three (was failed)" in detail
    assert gate(report, "no-test-regression").passed  # skipped is not a failure

    fewer = run(*TESTS, collected=2)
    report = evaluate_gates(BASE, measure([], fewer), patch(), GatesConfig(), OK_SYNTAX)
    assert "collected tests dropped from 3 to 2" in gate(report, "tests-not-weakened").detail
    assert report.reason == "tests-not-weakened"


def test_coverage_gate_tolerance_and_file_detail():
    files_before = (FileCoverage(path="pkg/a.py", num_statements=10, covered_lines=9,
                                 percent=90.0),)
    files_after = (FileCoverage(path="pkg/a.py", num_statements=10, covered_lines=7,
                                percent=70.0),)
    base = measure(BASE.findings, run(*TESTS, coverage=80.0, files=files_before))
    within = measure([], run(*TESTS, coverage=79.95))
    dropped = measure([], run(*TESTS, coverage=77.5, files=files_after))

    assert gate(evaluate_gates(base, within, patch(), GatesConfig(), OK_SYNTAX), "coverage").passed
    report = evaluate_gates(base, dropped, patch(), GatesConfig(), OK_SYNTAX)
    detail = gate(report, "coverage").detail
    assert report.reason == "coverage"
    assert "coverage 80.00% → 77.50% (tolerance 0.1 points): dropped 2.50 points" in detail
    assert "pkg/a.py: 90.0% → 70.0%" in detail
    loose = GatesConfig(coverage_tolerance=5)
    assert evaluate_gates(base, dropped, patch(), loose, OK_SYNTAX).accepted


def test_coverage_not_measured_at_baseline_is_skipped_but_lost_after_fails():
    no_cov = measure(BASE.findings, run(*TESTS, coverage=None))
    report = evaluate_gates(no_cov, measure([], run(*TESTS, coverage=None)), patch(),
                            GatesConfig(), OK_SYNTAX)
    assert report.accepted and "not measured at baseline: skipped" in gate(report,
                                                                          "coverage").detail
    lost = evaluate_gates(BASE, measure([], run(*TESTS, coverage=None)), patch(), GatesConfig(),
                          OK_SYNTAX)
    assert lost.reason == "coverage"


def test_no_new_findings_counts_per_key_not_per_id():
    # the F841 finding's id changed (its line text changed) but its key count did not
    moved = finding("b1-changed", rule="F841", line=6, symbol="f")
    new = finding("n1", source="mypy", rule="arg-type", path="pkg/b.py", line=12, symbol="g",
                  message='Argument 1 to "g" has incompatible type "str"', category="type")
    slow = finding("s1", source="pytest", rule="slow-test", path="tests/test_a.py",
                   category="performance", message="took 9 s")
    after = measure([moved, new, slow], run(*TESTS))

    report = evaluate_gates(BASE, after, patch(), GatesConfig(), OK_SYNTAX)

    assert report.reason == "no-new-findings"
    assert report.new_findings == (new,)
    assert gate(report, "no-new-findings").detail == (
        'NEW mypy arg-type pkg/b.py:12 (in g): Argument 1 to "g" has incompatible type "str"')


def test_new_findings_reports_the_new_id_when_a_key_grows():
    before = [finding("x1", rule="E711", symbol="h", line=3)]
    after = [finding("x1", rule="E711", symbol="h", line=3),
             finding("x2", rule="E711", symbol="h", line=9)]
    assert [f.id for f in new_findings(before, after)] == ["x2"]
    assert new_findings(after, before) == ()


def test_claimed_fixed_fails_when_the_finding_is_still_there():
    after = measure([finding("a1", line=2), finding("b1", rule="F841", symbol="f")], run(*TESTS))
    report = evaluate_gates(BASE, after, patch(), GatesConfig(), OK_SYNTAX)
    assert report.reason == "claimed-fixed"
    assert gate(report, "claimed-fixed").detail == (
        "STILL PRESENT ruff F401 pkg/a.py:2: unused import")
    assert report.fixed_finding_ids == ()


def test_claimed_fixed_counts_findings_that_share_a_fingerprint():
    """Three UP035 on one `from typing import (` line: a1, a1-2, a1-3 by order. The fix
    removes the first two; the one left is now the first, and takes the id a1."""
    up035 = [finding(i, rule="UP035", line=5, message=m) for i, m in
             (("a1", "`typing.Callable` is deprecated"), ("a1-2", "`typing.Type` is deprecated"),
              ("a1-3", "`typing.ContextManager` is deprecated"))]
    base = measure(up035, run(*TESTS))
    left = finding("a1", rule="UP035", line=5, message="`typing.ContextManager` is deprecated")
    after = measure([left], run(*TESTS))

    report = evaluate_gates(base, after, patch(finding_ids=("a1", "a1-2")), GatesConfig(),
                            OK_SYNTAX)
    assert report.accepted, report.reason
    claims_all = evaluate_gates(base, after, patch(finding_ids=("a1", "a1-2", "a1-3")),
                                GatesConfig(), OK_SYNTAX)
    assert claims_all.reason == "claimed-fixed"  # one of the three is still there


def test_test_files_gate_and_allow_test_changes():
    after = measure([finding("b1", rule="F841", symbol="f")], run(*TESTS))
    touching = patch(files=("pkg/a.py", "tests/test_a.py", "conftest.py"))
    report = evaluate_gates(BASE, after, touching, GatesConfig(), OK_SYNTAX)
    assert report.reason == "test-files"
    detail = gate(report, "test-files").detail
    assert ("touches test file tests/test_a.py (matches tests/**)\n"
            "touches test file conftest.py (a conftest.py)") in detail
    assert "gates.allow_test_changes" in detail
    allowed = evaluate_gates(BASE, after, touching, GatesConfig(allow_test_changes=True), OK_SYNTAX)
    assert allowed.accepted


@pytest.mark.parametrize(("path", "pattern", "expected"), [
    ("tests/test_a.py", "tests/**", True),
    ("tests/unit/deep/x.py", "tests/**", True),
    ("test_a.py", "**/test_*.py", True),
    ("src/pkg/test_a.py", "**/test_*.py", True),
    ("src/pkg/test_utils/helpers.py", "**/test_*.py", False),
    ("conftest.py", "**/conftest.py", True),
    ("pkg/tests_helper.py", "tests/**", False),
    ("pkg/a_test.py", "**/*_test.py", True),
    ("pkg/a.py", "**/*_test.py", False),
])
def test_glob_match(path, pattern, expected):
    assert glob_match(path, pattern) is expected


def test_a_failed_syntax_gate_skips_the_measurement_gates():
    bad = GateResult(gate="syntax", passed=False, detail="pkg/a.py:3: invalid syntax")
    report = evaluate_gates(BASE, BASE, patch(), GatesConfig(), bad)
    assert [g.gate for g in report.gates] == ["syntax", "test-files"]
    assert report.reason == "syntax" and report.after is None
    assert format_feedback(report) == "Gate 'syntax' failed:\npkg/a.py:3: invalid syntax"


def test_feedback_is_bounded():
    many = [finding(f"n{i}", rule=f"E{i}", path=f"m{i}.py", message="x" * 280) for i in range(40)]
    tests = [(f"t::test_{i}", "passed") for i in range(40)]
    base = measure([], run(*tests))
    after = measure(many, run(*[(n, "failed") for n, _ in tests], message="E" * 390))
    report = evaluate_gates(base, after, patch(finding_ids=()), GatesConfig(), OK_SYNTAX)
    text = format_feedback(report)
    assert len(text) <= FEEDBACK_LIMIT
    assert "... and 25 more" in gate(report, "no-new-findings").detail
    assert text.startswith("Gate 'no-test-regression' failed:\nFAILED t::test_0: EEE")


def test_check_syntax_on_real_files(tmp_path: Path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/good.py").write_text("def f():\n    return 1\n")
    (tmp_path / "pkg/bad.py").write_text("def f():\n    return 1\n\ndef g(:\n    pass\n")
    (tmp_path / "README.md").write_text("def (:")

    result = check_syntax(tmp_path, ["pkg/good.py", "pkg/bad.py", "README.md", "pkg/deleted.py"])

    assert result.gate == "syntax" and not result.passed
    assert result.detail.startswith("pkg/bad.py:4: ")
    assert "def g(:" in result.detail and "good.py" not in result.detail
    assert check_syntax(tmp_path, ["pkg/good.py", "README.md"]).passed


def test_task_functions(tmp_path: Path):
    from mendflow.core.models import Sandbox

    (tmp_path / "ok.py").write_text("X = 1\n")
    sandbox = Sandbox(mission_id="m", path=tmp_path, branch="b", base_commit="c",
                      repo_root=tmp_path)
    syntax = check_patch_syntax.fn(sandbox, patch(files=("ok.py",)))
    assert syntax.passed and syntax.detail == "1 changed Python file(s) parse"
    after = measure([finding("b1", rule="F841", symbol="f")], run(*TESTS))
    assert judge_patch.fn(BASE, after, patch(), GatesConfig(), syntax).accepted


def test_coverage_gate_allows_removing_covered_code_only():
    # 10 statements, 8 covered (80 %); removing 2 covered import lines gives 6/8 (75 %):
    # the percentage drops, but no statement became uncovered, so the gate passes.
    before = (FileCoverage(path="pkg/a.py", num_statements=10, covered_lines=8, percent=80.0),)
    removed = (FileCoverage(path="pkg/a.py", num_statements=8, covered_lines=6, percent=75.0),)
    lost = (FileCoverage(path="pkg/a.py", num_statements=10, covered_lines=6, percent=60.0),)
    base = measure(BASE.findings, run(*TESTS, coverage=80.0, files=before))

    ok = gate(evaluate_gates(base, measure([], run(*TESTS, coverage=75.0, files=removed)),
                             patch(), GatesConfig(), OK_SYNTAX), "coverage")
    assert ok.passed and "uncovered statements 2 → 2" in ok.detail
    bad = gate(evaluate_gates(base, measure([], run(*TESTS, coverage=60.0, files=lost)),
                              patch(), GatesConfig(), OK_SYNTAX), "coverage")
    assert not bad.passed


def test_the_sandbox_gate_names_the_limit_the_patched_code_hit():
    from mendflow.core.models import TestCase, TestRun, ToolResult

    failing = TestCase(nodeid="tests/test_a.py::test_x", outcome="failed",
                       message="BlockingIOError: [Errno 11] Resource temporarily unavailable")
    after = measure([], TestRun(collected=1, cases=(failing,)))
    report = evaluate_gates(BASE, after, patch(), GatesConfig(), OK_SYNTAX)
    sandbox = gate(report, "sandbox")
    assert not sandbox.passed
    assert sandbox.detail.startswith("hit: process limit [sandbox.limits.max_processes]")
    assert "tests/test_a.py::test_x: BlockingIOError" in sandbox.detail
    assert (report.reason or "").startswith("sandbox (hit: process limit")
    cpu = Measurement(tree="t", score=0, findings=(), results=(ToolResult(
        tool="pytest", ok=False, exit_code=152, error="pytest failed to run (exit 152)"),))
    assert "CPU-time limit" in gate(evaluate_gates(BASE, cpu, patch(), GatesConfig(), OK_SYNTAX),
                                    "sandbox").detail
    assert gate(evaluate_gates(BASE, BASE, patch(), GatesConfig(), OK_SYNTAX), "sandbox").passed


def test_claimed_fixed_fails_when_an_edited_line_keeps_the_claimed_finding():
    """tabulate 0.10.0: a fix claiming the UP031 on `fmt = "{0:>%ds}" % width` edited that
    line (new id) and left the UP031 there; the claim passed on the vanished id."""
    base = measure([finding("u1", rule="UP031", line=9, symbol="_padboth")], run(*TESTS))
    after = measure([finding("u2", rule="UP031", line=9, symbol="_padboth")], run(*TESTS))
    report = evaluate_gates(base, after, patch(finding_ids=("u1",)), GatesConfig(), OK_SYNTAX)
    assert report.reason == "claimed-fixed"
    assert gate(report, "claimed-fixed").detail == (
        "STILL PRESENT ruff UP031 pkg/a.py:9 (in _padboth): unused import")
    gone = measure([], run(*TESTS))
    assert evaluate_gates(base, gone, patch(finding_ids=("u1",)), GatesConfig(),
                          OK_SYNTAX).accepted
