"""Validate stage: the gates a candidate patch must pass to be accepted.

A patch is judged by comparing the measurement of the patched tree
(``after``) with the current baseline. The gates, in order:

1. ``syntax``: every changed Python file still parses.
2. ``tools-ran``: every tool that ran at baseline still runs (a crash is a failure).
3. ``no-test-regression``: no test that passed fails, errors or disappears.
4. ``tests-not-weakened``: as many tests collected; none newly skipped or xfailed.
5. ``coverage``: total line coverage drops by at most ``gates.coverage_tolerance`` points.
6. ``no-new-findings``: no (source, rule, path, symbol) gained a finding.
7. ``claimed-fixed``: every finding the patch claims to fix is gone.
8. ``test-files``: the patch touches no test file (unless allowed).
9. ``sandbox``: the patched code hit no limit of the isolation (network, read-only
   filesystem, hidden paths, processes, memory, file size, CPU time); see
   :mod:`mendflow.tasks.validate_sandbox`.

Every gate's ``detail`` names concrete things (the failing test and its
message, the new finding's location, coverage before and after), so that a
person or a model can act on it. When the syntax or test-files gate fails the
patched tree is not measured (the flow skips that test run): only ``syntax`` and
``test-files`` are judged.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from mendflow.core.config import GatesConfig
from mendflow.core.findings import base_id
from mendflow.core.models import (
    Finding,
    GateResult,
    Measurement,
    Patch,
    Sandbox,
    ValidationReport,
)
from mendflow.core.paths import matches_any
from mendflow.tasks.validate_runs import (  # noqa: F401  (re-exported: the gates of the stage)
    clip,
    gate_coverage,
    gate_no_test_regression,
    gate_tests_not_weakened,
    listing,
)
from mendflow.tasks.validate_sandbox import gate_sandbox
from mendflow.tasks.validate_tests import gate_test_files as test_files_gate

FEEDBACK_LIMIT = 4000
"""Characters of gate output handed to a fixer for its next attempt."""

_PYTHON_SUFFIXES = (".py", ".pyi")
_UNSCORED_RULES = frozenset({"slow-test"})  # timing noise: never a "new finding"


def check_syntax(root: Path, files: Sequence[str]) -> GateResult:
    """The ``syntax`` gate: parse every changed Python file that still exists.

    Args:
        root: the tree's root directory.
        files: changed paths, POSIX, relative to ``root`` (non-Python files are skipped).

    Returns:
        A passed gate, or a failed one whose detail lists ``path:line: message``
        per file that does not parse (Python's own ``SyntaxError``).
    """
    errors: list[str] = []
    checked = 0
    for rel in files:
        path = root / rel
        if not rel.endswith(_PYTHON_SUFFIXES) or not path.is_file():
            continue
        checked += 1
        try:
            ast.parse(path.read_bytes(), filename=rel)
        except SyntaxError as err:
            text = (err.text or "").strip()
            where = f"{rel}:{err.lineno}" if err.lineno else rel
            errors.append(f"{where}: {err.msg}" + (f"\n    {text}" if text else ""))
        except ValueError as err:  # source bytes that Python cannot read (NUL bytes ...)
            errors.append(f"{rel}: {err}")
    if errors:
        return GateResult(gate="syntax", passed=False, detail=listing(errors))
    return GateResult(gate="syntax", passed=True, detail=f"{checked} changed Python file(s) parse")


def evaluate_gates(baseline: Measurement, after: Measurement, patch: Patch, gates: GatesConfig,
                   syntax: GateResult, test_files: GateResult | None = None) -> ValidationReport:
    """Judge one patch: run every gate on the baseline and patched measurements.

    Args:
        baseline: the measurement of the tree the patch was applied to.
        after: the measurement of the patched tree (ignored when ``syntax`` failed).
        patch: the candidate.
        gates: the ``gates`` section of the config.
        syntax: the result of :func:`check_syntax` on the patched tree.
        test_files: the ``test-files`` gate from :func:`mendflow.tasks.validate_tests.check_test_files`
            (None: judged from the patch's paths alone).

    Returns:
        The :class:`ValidationReport`: accepted when every gate passed; ``reason``
        names the failed gates (``"no-test-regression, coverage"``).
    """
    test_files = test_files or gate_test_files(patch, gates)
    if not syntax.passed or not test_files.passed:  # refused without looking at the run
        return _report(patch, [syntax, test_files], baseline, None, ())
    new = new_findings(baseline.findings, after.findings)
    results = [
        syntax,
        gate_tools_ran(baseline, after),
        gate_no_test_regression(baseline.test_run, after.test_run),
        gate_tests_not_weakened(baseline.test_run, after.test_run),
        gate_coverage(baseline.test_run, after.test_run, gates.coverage_tolerance),
        _new_findings_gate(new),
        gate_claimed_fixed(patch, after, baseline),
        test_files,
        gate_sandbox(baseline, after),
    ]
    return _report(patch, results, baseline, after, new)


def _report(patch: Patch, results: list[GateResult], baseline: Measurement,
            after: Measurement | None, new: tuple[Finding, ...]) -> ValidationReport:
    # a sandbox limit hit goes first: it says the code tried something it must not
    failed = sorted((g.gate if g.gate != "sandbox" else f"sandbox ({g.detail.splitlines()[0]})"
                     for g in results if not g.passed), key=lambda name: name[:8] != "sandbox ")
    fixed: tuple[str, ...] = ()
    if after is not None:
        after_ids = {f.id for f in after.findings}
        fixed = tuple(f.id for f in baseline.findings if f.id not in after_ids)
    return ValidationReport(patch_id=patch.id, accepted=not failed, gates=tuple(results),
                            reason=", ".join(failed) or None, after=after,
                            fixed_finding_ids=fixed, new_findings=new)


def gate_tools_ran(baseline: Measurement, after: Measurement) -> GateResult:
    """``tools-ran``: every tool that ran fine at baseline ran fine on the patched tree."""
    problems = []
    for before in baseline.results:
        if not before.ok:
            continue
        now = after.result_of(before.tool)
        if now is None:
            problems.append(f"{before.tool} did not run on the patched tree")
        elif not now.ok:
            code = f" (exit status {now.exit_code})" if now.exit_code is not None else ""
            problems.append(f"{before.tool} failed on the patched tree{code}: "
                            f"{clip(now.error or 'no error message', 600)}")
    if problems:
        return GateResult(gate="tools-ran", passed=False, detail=listing(problems))
    ran = ", ".join(r.tool for r in baseline.results if r.ok) or "none"
    return GateResult(gate="tools-ran", passed=True, detail=f"still ran: {ran}")


def finding_key(finding: Finding) -> tuple[str, str, str, str]:
    """The identity used to count findings across a patch: (source, rule, path, symbol).

    Ids are not enough: a fix can change the text of a line and so the id of
    an unrelated finding on it; counting per (source, rule, path, symbol)
    only flags a place that really gained a finding.
    """
    return (finding.source, finding.rule, finding.path, finding.symbol or "")


def new_findings(before: Iterable[Finding], after: Iterable[Finding]) -> tuple[Finding, ...]:
    """Return the findings whose (source, rule, path, symbol) count grew.

    Args:
        before: the baseline findings.
        after: the findings of the patched tree.

    Returns:
        For each key that gained ``n`` findings, ``n`` of its findings after
        (those whose ids are new first). ``slow-test`` findings are ignored.
    """
    before = [f for f in before if f.rule not in _UNSCORED_RULES]
    after = [f for f in after if f.rule not in _UNSCORED_RULES]
    counts = Counter(finding_key(f) for f in before)
    old_ids = {f.id for f in before}
    by_key: dict[tuple[str, str, str, str], list[Finding]] = {}
    for finding in after:
        by_key.setdefault(finding_key(finding), []).append(finding)
    new: list[Finding] = []
    for key, found in by_key.items():
        grown = len(found) - counts[key]
        if grown > 0:
            new += sorted(found, key=lambda f: f.id in old_ids)[:grown]
    return tuple(new)


def _new_findings_gate(new: Sequence[Finding]) -> GateResult:
    if not new:
        return GateResult(gate="no-new-findings", passed=True, detail="no new findings")
    return GateResult(gate="no-new-findings", passed=False,
                      detail=listing([f"NEW {describe_finding(f)}" for f in new]))


def gate_claimed_fixed(patch: Patch, after: Measurement, baseline: Measurement) -> GateResult:
    """``claimed-fixed``: every finding the patch claims to fix is gone.

    Findings that share a fingerprint (two on one line, say) are told apart
    by their order (``<id>-2``, see :func:`mendflow.core.findings.disambiguate`),
    so when the first one goes, the one left takes its id. So the findings of
    each fingerprint are counted: a claim holds when at most ``baseline count
    - claimed count`` of them are left.

    Args:
        patch: the candidate and the finding ids it claims.
        after: the patched tree's measurement.
        baseline: the measurement the patch was made against.
    """
    before = Counter(base_id(f.id) for f in baseline.findings)
    left = Counter(base_id(f.id) for f in after.findings)
    claimed = Counter(base_id(i) for i in patch.finding_ids)
    remaining = {f.id: f for f in after.findings}
    still = [remaining[i] for i in patch.finding_ids
             if i in remaining and left[base_id(i)] > before[base_id(i)] - claimed[base_id(i)]]
    still += [f for f in _same_place_left(patch, after, baseline) if f not in still]
    if still:
        return GateResult(gate="claimed-fixed", passed=False,
                          detail=listing([f"STILL PRESENT {describe_finding(f)}" for f in still]))
    return GateResult(gate="claimed-fixed", passed=True,
                      detail=f"all {len(patch.finding_ids)} claimed finding(s) are gone")


def _same_place_left(patch: Patch, after: Measurement, baseline: Measurement) -> list[Finding]:
    """The findings left at a claimed finding's place (:func:`finding_key`) when that place
    has no fewer findings than before minus the claims on it.

    A finding's id hashes the text of its line, so an edit of the line alone (tabulate
    0.10.0: a model's fix of ``_padboth`` that claimed the UP031 on ``"{0:>%ds}" % width``
    and left it there, on an edited line) made the claimed id vanish and the claim pass.
    """
    by_id = {f.id: f for f in baseline.findings}
    claimed = Counter(finding_key(by_id[i]) for i in patch.finding_ids if i in by_id)
    if not claimed:
        return []
    before = Counter(finding_key(f) for f in baseline.findings)
    left = Counter(finding_key(f) for f in after.findings)
    return [f for f in after.findings if claimed[finding_key(f)]
            and left[finding_key(f)] > before[finding_key(f)] - claimed[finding_key(f)]]


def gate_test_files(patch: Patch, gates: GatesConfig) -> GateResult:
    """``test-files`` from the patch's paths alone (conftest, globs, test config names).

    The full gate, with the files pytest collected tests from and the AST
    comparison of allowed test changes, is :func:`mendflow.tasks.validate_tests.check_test_files`.
    """
    return test_files_gate(patch, gates)


def glob_match(path: str, pattern: str) -> bool:
    """Match a POSIX path against one gitignore-style pattern (:func:`mendflow.core.paths.matches_any`).

    ``**/test_*.py`` matches ``test_a.py`` and ``pkg/test_a.py`` but not
    ``pkg/test_utils/helpers.py``; ``tests/**`` matches everything under ``tests/``.
    """
    return matches_any(path, (pattern,))


def describe_finding(finding: Finding) -> str:
    """One line naming a finding: ``ruff F841 pkg/a.py:12 (in f): message``."""
    where = f"{finding.path}:{finding.line}" if finding.line else finding.path
    symbol = f" (in {finding.symbol})" if finding.symbol else ""
    return f"{finding.source} {finding.rule} {where}{symbol}: {clip(finding.message, 300)}"


def format_feedback(report: ValidationReport) -> str:
    """Render the failed gates of a report as plain text for a fixer's next attempt.

    Args:
        report: a rejected patch's validation report.

    Returns:
        One block per failed gate (its name, then its detail), at most
        ``FEEDBACK_LIMIT`` characters; empty when every gate passed.
    """
    blocks = [f"Gate '{g.gate}' failed:\n{g.detail}" for g in report.gates if not g.passed]
    return clip("\n\n".join(blocks), FEEDBACK_LIMIT)


@task(name="check-patch-syntax", cache_policy=NO_CACHE, timeout_seconds=300)
def check_patch_syntax(sandbox: Sandbox, patch: Patch) -> GateResult:
    """Run the ``syntax`` gate on the files a patch changed in the sandbox.

    Args:
        sandbox: the worktree with the patch applied.
        patch: the applied candidate.

    Returns:
        The ``syntax`` :class:`GateResult`.
    """
    return check_syntax(sandbox.path, patch.files)


@task(name="judge-patch", cache_policy=NO_CACHE, timeout_seconds=60)
def judge_patch(baseline: Measurement, after: Measurement, patch: Patch, gates: GatesConfig,
                syntax: GateResult, test_files: GateResult | None = None) -> ValidationReport:
    """Run every gate and return the verdict (see :func:`evaluate_gates`).

    Args:
        baseline: the measurement the patch was applied on.
        after: the measurement of the patched tree.
        patch: the candidate.
        gates: the ``gates`` section of the config.
        syntax: the ``syntax`` gate result from :func:`check_patch_syntax`.
        test_files: the ``test-files`` gate result from ``check_test_files``.

    Returns:
        The :class:`ValidationReport`.
    """
    return evaluate_gates(baseline, after, patch, gates, syntax, test_files)
