"""Document stage: the mission's reports, as files and as Prefect artifacts.

:func:`write_reports` writes, each file atomically (a temporary file in the
same directory, then ``os.replace``), into the report directory:

- ``final_maintenance_report.md``: for people (:func:`render_markdown`);
- ``session_data.json``: the :class:`MissionResult`, exactly ``model_dump(mode="json")``;
- ``validation_results.json``: one entry per validated candidate (gates,
  reason, fixed and new finding ids; the bulky ``after`` measurement is
  reduced to its tree, score, lines of code and finding count);
- ``backup_history.json``: one :class:`BackupEntry` per changed file;
- ``findings.sarif``: the findings as SARIF 2.1.0 (see :mod:`mendflow.core.sarif`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from mendflow.core.findings import rank_findings
from mendflow.core.models import (
    BackupEntry,
    Finding,
    MissionResult,
    PatchOutcome,
    ValidationReport,
)
from mendflow.core.sarif import BaselineState, sarif_log
from mendflow.core.score import ScoreBreakdown
from mendflow.core.summary import delivered_text, suite_text
from mendflow.infra.files import write_atomic
from mendflow.infra.retry import transient_retries

REPORT_FILES = ("final_maintenance_report.md", "session_data.json", "validation_results.json",
                "backup_history.json", "findings.sarif")
TOP_FINDINGS = 20
_SEVERITIES = ("critical", "high", "medium", "low", "info")


def write_reports(result: MissionResult, validations: Sequence[ValidationReport],
                  backups: Sequence[BackupEntry], report_dir: Path, *,
                  breakdowns: Mapping[str, ScoreBreakdown] | None = None) -> list[Path]:
    """Write the mission's five report files, each atomically, replacing older ones.

    Args:
        result: the mission's result.
        validations: every validation report of the mission, in order.
        backups: the backup history (one entry per changed file).
        report_dir: the directory to write into (created if missing).
        breakdowns: optional score breakdowns (``"before"``, ``"after"``) for the markdown.

    Returns:
        The written paths, in the order of ``REPORT_FILES``.

    Raises:
        OSError: the directory or a file cannot be written.
    """
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    contents = (
        render_markdown(result, validations, breakdowns=breakdowns),
        _json(result.model_dump(mode="json")),
        _json([validation_entry(v) for v in validations]),
        _json([b.model_dump(mode="json") for b in backups]),
        _json(sarif_log(_sarif_findings(result), repository=result.repository,
                        states=baseline_states(result))),
    )
    paths = []
    for name, text in zip(REPORT_FILES, contents, strict=True):
        paths.append(write_atomic(report_dir / name, text, fsync=True))
    return paths


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def validation_entry(report: ValidationReport) -> dict[str, Any]:
    """A validation report for ``validation_results.json``, without the bulky measurement.

    Returns:
        The report's fields except ``after`` and ``new_findings``, plus
        ``new_finding_ids`` and ``after`` reduced to tree, score, loc and finding count.
    """
    entry = report.model_dump(mode="json", exclude={"after", "new_findings"})
    entry["new_finding_ids"] = [f.id for f in report.new_findings]
    after = report.after
    entry["after"] = None if after is None else {
        "tree": after.tree, "score": after.score, "loc": after.loc,
        "findings": len(after.findings),
    }
    return entry


def baseline_states(result: MissionResult) -> dict[str, BaselineState] | None:
    """SARIF ``baselineState`` per finding id: the mission's start compared with its end.

    Returns:
        ``unchanged``, ``absent`` (fixed) or ``new`` per id; None when the end
        was not measured (a failed mission without final findings).
    """
    if not result.final_findings and result.status != "completed":
        return None
    final = {f.id for f in result.final_findings}
    start = {f.id for f in result.findings}
    states: dict[str, BaselineState] = {i: "unchanged" if i in final else "absent" for i in start}
    states.update({i: "new" for i in final - start})
    return states


def _sarif_findings(result: MissionResult) -> list[Finding]:
    seen = {f.id for f in result.findings}
    return [*result.findings, *(f for f in result.final_findings if f.id not in seen)]


# --- markdown ----------------------------------------------------------------------------


def render_markdown(result: MissionResult, validations: Sequence[ValidationReport], *,
                    breakdowns: Mapping[str, ScoreBreakdown] | None = None) -> str:
    """Render the human report: summary, score, findings, patches, remaining work, branch.

    Args:
        result: the mission's result.
        validations: the mission's validation reports (the last one per patch id is shown).
        breakdowns: optional score breakdowns keyed ``"before"`` / ``"after"``.

    Returns:
        GitHub-flavoured markdown (also published as the Prefect artifact).
    """
    by_patch = {v.patch_id: v for v in validations}
    sections = [
        _summary(result),
        _score_section(result, breakdowns or {}),
        _findings_section(result),
        _patches_section(result.patches, by_patch),
        _llm_section(result),
        _timings_section(result),
        _remaining_section(result),
        _branch_section(result),
    ]
    return "\n\n".join(s for s in sections if s).rstrip() + "\n"


def _llm_section(result: MissionResult) -> str:
    """Model usage (from the proposals' ``usage``), the budget, and failed calls."""
    usage = result.llm_usage
    if not (usage.calls or usage.failures or usage.budget_exhausted):
        return ""
    lines = ["## Language model usage", "",
             f"- Calls: {usage.calls}",
             f"- Input tokens: {usage.input_tokens} (cache writes "
             f"{usage.cache_creation_input_tokens}, cache reads {usage.cache_read_input_tokens})",
             f"- Output tokens: {usage.output_tokens}"]
    if usage.budget_exhausted:
        lines.append(f"- **Budget exhausted:** {usage.budget_exhausted}; the mission stopped "
                     "asking and validated what it had")
    lines += [f"- Failed call: {failure}" for failure in usage.failures]
    return "\n".join(lines)


def _timings_section(result: MissionResult) -> str:
    """Wall time of the environment, the baseline and each validation, with the tests each ran."""
    timings = result.timings
    if not (timings.baseline_s or timings.validations):
        return ""
    lines = ["## Timings", "", f"- Environment: {timings.environment_s:.1f} s",
             f"- Baseline measurement: {timings.baseline_s:.1f} s"]
    if timings.validations:
        spent = sum(v.duration_s for v in timings.validations)
        lines += [f"- Validations: {len(timings.validations)}, {spent:.1f} s in all", "",
                  "| Patch | Seconds | Tests run | Full run |", "|---|---|---|---|"]
        lines += [f"| `{_cell(v.patch_id)}` | {v.duration_s:.1f} | {v.tests_run} of "
                  f"{v.tests_total} | {'yes' if v.full_run else 'no'} |"
                  for v in timings.validations]
    return "\n".join(lines)


def _summary(result: MissionResult) -> str:
    counts = Counter(p.status for p in result.patches)
    mode = "dry run" if result.dry_run else "backup only" if result.backup_only else "fix"
    score = result.quality_score
    change = score.after - score.before
    rows = [
        ("Repository", f"`{result.repository}`"),
        ("Status", f"{result.status} (exit code {result.exit_code})"),
        ("Mode", mode),
        ("Base commit", f"`{result.base_commit[:12]}`"),
        ("Branch", f"`{result.branch}`"),
        ("Worktree", f"`{result.worktree}`" if result.worktree else "removed"),
        ("Iterations", f"{result.iterations} ({result.stop_reason or 'no stop reason'})"),
        ("Quality score", f"{score.before:.1f} → {score.after:.1f} ({change:+.1f})"),
        ("Tests", f"{suite_text(result.tests_before)} → {suite_text(result.tests_after)}"),
        ("Findings", f"{len(result.findings)} → {len(result.final_findings)}"),
        ("Patches", ", ".join(f"{counts[s]} {s}" for s in
                              ("accepted", "rejected", "pending_approval", "proposed",
                               "declined"))),
        ("Delivered", delivered_text(result)),
    ]
    body = "\n".join(f"| {k} | {_cell(v)} |" for k, v in rows)
    return (f"# mendflow maintenance report: {result.mission_id}\n\n"
            f"| | |\n|---|---|\n{body}")


def _score_section(result: MissionResult, breakdowns: Mapping[str, ScoreBreakdown]) -> str:
    score = result.quality_score
    headline = (f"**{score.before:.1f} → {score.after:.1f}** out of 100 "
                "(tests, coverage and finding density; see the README, 'Quality score').")
    lines = ["## Quality score", "", headline]
    if breakdowns:
        names = list(breakdowns)
        lines += ["", "| Part | " + " | ".join(names) + " |",
                  "|---|" + "---|" * len(names)]
        parts = (("Tests (points)", lambda b: f"{b.tests_points:.1f} "
                  f"({b.tests_ratio:.0%} of {b.tests_counted} passed)"),
                 ("Coverage (points)", lambda b: f"{b.coverage_points:.1f} ("
                  + (f"{b.coverage_percent:.1f}%" if b.coverage_percent is not None
                     else "not measured") + ")"),
                 ("Findings (points)", lambda b: f"{b.findings_points:.1f} "
                  f"({b.findings_density:.1f} weighted per 1000 lines)"),
                 ("Total", lambda b: f"{b.total:.1f}"))
        for label, show in parts:
            lines.append(f"| {label} | " + " | ".join(show(breakdowns[n]) for n in names) + " |")
    return "\n".join(lines)


def _findings_section(result: MissionResult) -> str:
    before, after = result.findings, result.final_findings
    lines = ["## Findings by source and severity", "",
             "| Source | Before | After |", "|---|---|---|"]
    sources = sorted({f.source for f in (*before, *after)})
    lines += [f"| {s} | {_count(before, source=s)} | {_count(after, source=s)} |" for s in sources]
    lines += ["", "| Severity | Before | After |", "|---|---|---|"]
    lines += [f"| {s} | {_count(before, severity=s)} | {_count(after, severity=s)} |"
              for s in _SEVERITIES]
    if result.tool_failures:  # a crashed tool is not a clean one
        lines += ["", "**Did not complete at baseline** (their findings are missing):", ""]
        lines += [f"- {f.tool}: {f.error.splitlines()[0] if f.error else 'failed'}"
                  for f in result.tool_failures]
    return "\n".join(lines)


def _count(findings: Sequence[Finding], **field: str) -> int:
    (name, value), = field.items()
    return sum(getattr(f, name) == value for f in findings)


def _patches_section(patches: Sequence[PatchOutcome],
                     by_patch: Mapping[str, ValidationReport]) -> str:
    if not patches:
        return "## Patches\n\nNo candidate patch was proposed."
    blocks = ["## Patches"]
    for outcome in patches:
        report = by_patch.get(outcome.id) or outcome.validation
        status = outcome.status + (f": {outcome.reason}" if outcome.reason else "")
        lines = [f"### `{outcome.id}` {outcome.title}".rstrip(), "",
                 f"- Status: **{status}**",
                 f"- Fixer: {outcome.fixer}, iteration {outcome.iteration}",
                 f"- Commit: `{outcome.commit}`" if outcome.commit else "- Commit: none",
                 f"- Findings claimed: {len(outcome.finding_ids)}",
                 f"- Files: {', '.join(f'`{p}`' for p in outcome.files) or 'none'}"]
        if report is not None:
            lines += ["", "| Gate | Result | Detail |", "|---|---|---|"]
            lines += [f"| {g.gate} | {'pass' if g.passed else '**FAIL**'} | {_cell(g.detail)} |"
                      for g in report.gates]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _remaining_section(result: MissionResult) -> str:
    remaining = rank_findings(result.final_findings)
    if not remaining:
        return "## Remaining findings\n\nNone."
    title = f"## Remaining findings (top {min(TOP_FINDINGS, len(remaining))} of {len(remaining)})"
    lines = [title, "",
             "| Severity | Source | Rule | Location | Message |", "|---|---|---|---|---|"]
    for f in remaining[:TOP_FINDINGS]:
        where = f"{f.path}:{f.line}" if f.line else f.path
        lines.append(f"| {f.severity} | {f.source} | {_cell(f.rule)} | `{_cell(where)}` | "
                     f"{_cell(f.message)} |")
    return "\n".join(lines)


def _branch_section(result: MissionResult) -> str:
    accepted = [p for p in result.patches if p.commit]
    if result.dry_run or result.backup_only or not accepted:
        why = ("this was a dry run" if result.dry_run else
               "this was a backup-only mission" if result.backup_only else
               "no patch was accepted")
        return (f"## Branch\n\nNothing was committed ({why}); your checkout was not changed.")
    base, branch = result.base_commit, result.branch
    commits = " ".join(p.commit or "" for p in reversed(accepted))
    lines = [
        "## Branch", "",
        f"{len(accepted)} commit(s) on `{branch}`; your checkout was not changed.", "",
        "Review:", "", "```sh", f"git log --oneline {base}..{branch}",
        f"git diff {base}...{branch}", "```", "",
        "Merge (from your branch):", "", "```sh",
        f"git merge --ff-only {branch}  # or: git merge {branch}", "```", "",
        "Roll back: before merging, delete the branch; after merging, revert the commits:", "",
        "```sh", f"git branch -D {branch}", f"git revert --no-edit {commits}", "```",
    ]
    if result.worktree:
        lines[-1:-1] = [f"git worktree remove {result.worktree}  # the sandbox, when done"]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Make text safe for one markdown table cell (one line, escaped pipes, bounded)."""
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= 300 else flat[:297] + "..."


# --- Prefect tasks -------------------------------------------------------------------------


def artifact_key(text: str) -> str:
    """Sanitize an artifact key: lowercase letters, digits and single dashes only."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def patch_table(result: MissionResult) -> list[dict[str, Any]]:
    """One row per patch: id, status, reason, commit and number of findings."""
    return [{"patch": p.id, "status": p.status, "reason": p.reason or "",
             "commit": p.commit or "", "findings": len(p.finding_ids)} for p in result.patches]


@task(name="write-mission-reports", cache_policy=NO_CACHE,
      timeout_seconds=120, **transient_retries(1))
def write_mission_reports(result: MissionResult, validations: Sequence[ValidationReport],
                          backups: Sequence[BackupEntry], report_dir: Path) -> str:
    """Write the report files (see :func:`write_reports`) and return the markdown report.

    Args:
        result: the mission's result.
        validations: every validation report of the mission.
        backups: the backup history.
        report_dir: where the files go.

    Returns:
        The markdown of ``final_maintenance_report.md`` (for :func:`publish_report`).

    Raises:
        OSError: a file cannot be written.
    """
    paths = write_reports(result, validations, backups, report_dir)
    return paths[0].read_text(encoding="utf-8")


@task(name="publish-report", cache_policy=NO_CACHE,
      timeout_seconds=60, **transient_retries(2))
def publish_report(result: MissionResult, markdown: str) -> None:
    """Publish the report as Prefect artifacts (markdown, and a table of patches).

    Args:
        result: the mission's result (its id names the artifacts).
        markdown: the markdown report from :func:`render_markdown`.

    Returns:
        None; creates ``mendflow-report-<mission-id>`` (markdown) and
        ``mendflow-patches-<mission-id>`` (table) through ``prefect.artifacts``.
    """
    mission = artifact_key(result.mission_id)
    create_markdown_artifact(key=artifact_key(f"mendflow-report-{mission}"), markdown=markdown,
                             description=f"mendflow maintenance report of {result.repository}")
    create_table_artifact(key=artifact_key(f"mendflow-patches-{mission}"),
                          table=patch_table(result),
                          description=f"candidate patches of mission {result.mission_id}")
