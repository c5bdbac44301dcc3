"""The evolution loop's own steps: the loop's repository, the watch, metrics, artifacts, events.

Prefect tasks composed by :mod:`mendflow.flows.evolution`; the bisect itself is
in :mod:`mendflow.tasks.evolve.watch`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from mendflow.core.config import EvolutionConfig
from mendflow.core.errors import RepositoryError
from mendflow.core.evolution import CycleRecord, Regression
from mendflow.core.models import MissionResult, TargetEnv
from mendflow.infra.evolution_store import is_git_url
from mendflow.infra.gitops import run_git
from mendflow.infra.retry import transient_retries
from mendflow.tasks.approve.build import git_outcome
from mendflow.tasks.evolve.watch import delivered_by_mendflow, first_bad_commit

__all__ = ["cycle_metrics", "emit_cycle_events", "find_regressions", "prepare_loop_repository",
           "fix_categories", "publish_cycle", "thresholds_missed", "trend_chart"]

@task(name="prepare-loop-repository",
      timeout_seconds=1800, cache_policy=NO_CACHE, **transient_retries(2))
def prepare_loop_repository(target: str, folder: Path, branch: str | None) -> Path:
    """The repository the loop works in: ``target`` itself, or its clone for a git URL.

    Args:
        target: a path inside a repository, or a git URL (cloned once into
            ``folder/repo`` with ``origin`` = the URL).
        folder: the loop's state directory.
        branch: the branch to check out in a new clone (None = the remote's default).

    Returns:
        The repository root.

    Raises:
        RepositoryError: the path is not in a git repository, or the clone failed.
    """
    if is_git_url(target):
        clone = folder / "repo"
        if not (clone / ".git").exists():
            args = ["clone", "-q", *(["--branch", branch] if branch else []), target, str(clone)]
            status, _, err = git_outcome(folder, *args)
            if status != 0:
                raise RepositoryError(f"`git clone` failed: {err.strip()[-300:]}",
                                      subject=target, hint="check the URL and your access")
        return clone
    path = Path(target).expanduser().resolve()
    status, out, _ = git_outcome(path if path.is_dir() else path.parent, "rev-parse",
                                 "--show-toplevel")
    if status != 0:
        raise RepositoryError("not inside a git repository", subject=str(path),
                              hint="point `mendflow evolve` at a repository or a git URL")
    return Path(out.strip())


@task(name="find-regressions", retries=0, timeout_seconds=3600, cache_policy=NO_CACHE)
def find_regressions(root: Path, previous_tip: str, tip: str, tests: Sequence[str],
                     target_env: TargetEnv, timeout_s: float, work_parent: Path
                     ) -> list[Regression]:
    """Bisect each newly failing test over ``previous_tip..tip``; say whose the culprit is.

    Args:
        root: the repository.
        previous_tip: the tip the previous cycle measured (the tests passed there).
        tip: the new tip (they fail).
        tests: the pytest node ids that began to fail.
        target_env: the interpreter and isolation each bisect step's tests run under
            (bubblewrap, like every other run of the repository's code).
        timeout_s: seconds for one ``git bisect run``.
        work_parent: where the temporary worktrees go (under the state dir).

    Returns:
        One :class:`Regression` per test, action ``reported`` (the flow decides
        on a revert for mendflow's own commits).
    """
    found: list[Regression] = []
    culprits: dict[str, str | None] = {}
    for test in tests:
        key = test.split("::", 1)[0]
        if key not in culprits:  # one bisect per test file is enough in practice
            culprits[key] = first_bad_commit(root, previous_tip, tip, [test], target_env,
                                             timeout_s, work_parent)
        commit = culprits[key]
        mine, author = delivered_by_mendflow(root, commit) if commit else (False, "")
        found.append(Regression(test=test, commit=commit, action="reported",
                                delivered_by_mendflow=mine, author=author))
    return found


def cycle_metrics(result: MissionResult) -> dict:
    """Counts of a cycle's mission: findings by source, accepted patches by category, tests."""
    categories = {f.id: f.category for f in result.findings}
    accepted = [p for p in result.patches if p.status == "accepted"]
    tests = result.baseline_tests
    return {
        "findings": len(result.findings),
        "findings_by_source": dict(Counter(f.source for f in result.findings)),
        "patches_accepted": len(accepted),
        "patches_by_category": dict(Counter(
            categories.get(p.finding_ids[0], "other") if p.finding_ids else "other"
            for p in accepted)),
        "tests_passed": tests.passed if tests else None,
        "tests_total": tests.total if tests else None,
        "coverage": tests.coverage_percent if tests else None,
        "quality_score": result.quality_score.before,
        "cost": {"llm_calls": result.llm_usage.calls,
                 "input_tokens": result.llm_usage.input_tokens,
                 "output_tokens": result.llm_usage.output_tokens},
    }


GENERATE_CATEGORIES = {
    "bug_fixes": ("test-failure", "lint", "style", "type", "security", "syntax", "runtime"),
    "features_from_todos": ("todo",),
    "performance": ("performance",),
    "tests": ("coverage",),
}
"""The finding categories each ``evolution.generate`` switch lets the fixer work on."""


def fix_categories(config: EvolutionConfig) -> list[str]:
    """The finding categories a cycle's mission gives its fixer (``mission.fix_categories``).

    Only the switched-on kinds of ``evolution.generate`` are attempted: a disabled
    kind is still measured (and counted), but costs no fixer call and no validation.
    """
    switches = config.generate.model_dump()
    return sorted({c for name, categories in GENERATE_CATEGORIES.items() if switches[name]
                   for c in categories})


def generated(config: EvolutionConfig, category: str) -> bool:
    """May the loop deliver a patch of this finding category (``evolution.generate``)?
    A category no switch names counts as a bug fix."""
    known = {c for categories in GENERATE_CATEGORIES.values() for c in categories}
    return category in fix_categories(config) if category in known else \
        config.generate.bug_fixes


def detected(config: EvolutionConfig, source: str, category: str) -> bool:
    """Does the loop count a finding of this source/category (``evolution.detect``)?"""
    switches = config.detect
    return {"log": switches.logs, "runtime": switches.logs, "todo": switches.todos,
            "performance": switches.performance, "coverage": switches.coverage_gaps
            }.get(category if category in ("performance", "coverage", "todo") else source, True)


def thresholds_missed(config: EvolutionConfig, coverage: float | None, findings: int
                      ) -> tuple[str, ...]:
    """The thresholds (``min_test_coverage``, ``max_quality_issues``) the tip misses."""
    missed = []
    if config.min_test_coverage is not None and coverage is not None \
            and coverage < config.min_test_coverage:
        missed.append(f"coverage {coverage:.1f}% < min_test_coverage "
                      f"{config.min_test_coverage:g}%")
    if config.max_quality_issues is not None and findings > config.max_quality_issues:
        missed.append(f"{findings} findings > max_quality_issues {config.max_quality_issues}")
    return tuple(missed)


def trend_chart(records: Sequence[CycleRecord], width: int = 40) -> str:
    """The quality score per cycle as a text bar chart (renders in any markdown viewer)."""
    lines = []
    for r in records[-30:]:
        if r.quality_score is None:
            lines.append(f"cycle {r.cycle:>4} | {'':<{width}} {r.status}")
            continue
        bar = "█" * round(r.quality_score / 100 * width)
        lines.append(f"cycle {r.cycle:>4} | {bar:<{width}} {r.quality_score:5.1f} {r.status}")
    return "```text\n" + "\n".join(lines) + "\n```"


@task(name="publish-cycle", timeout_seconds=120,
      cache_policy=NO_CACHE, **transient_retries(1))
def publish_cycle(key: str, records: Sequence[CycleRecord], dashboard: str) -> None:
    """The history as a Prefect table artifact, and a markdown artifact with the trend chart.

    Args:
        key: the artifact key (``evolution-<repo key>``, filename-safe, lower case).
        records: the whole history, oldest first.
        dashboard: the dashboard markdown (open PRs, approvals, regressions, limits).
    """
    columns = ("cycle", "started_at", "status", "head_after", "findings", "patches_accepted",
               "prs_opened", "prs_closed", "prs_merged", "reverts", "quality_score", "coverage",
               "duration_s", "restarted")
    rows = [{c: getattr(r, c) for c in columns} | {"regressions": len(r.regressions)}
            for r in records[-200:]]
    create_table_artifact(key=f"{key}-history", table=rows,
                          description="mendflow evolution: one row per cycle")
    create_markdown_artifact(key=f"{key}-trend", markdown=(
        "## Quality score by cycle\n\n" + trend_chart(records) + "\n\n" + dashboard),
        description="mendflow evolution: score trend and dashboard")


@task(name="emit-cycle-events", retries=0, timeout_seconds=60, cache_policy=NO_CACHE)
def emit_cycle_events(repository: str, record: CycleRecord) -> int:
    """Emit the cycle's Prefect events (resource = the repository); return how many.

    ``mendflow.evolution.cycle.completed`` once; ``mendflow.patch.delivered`` per PR
    opened; ``mendflow.regression.detected`` per regression and
    ``mendflow.regression.reverted`` per revert.
    """
    resource = {"prefect.resource.id": f"mendflow.repository.{repository}",
                "prefect.resource.name": repository}
    emit_event(event="mendflow.evolution.cycle.completed", resource=resource,
               payload=record.model_dump(mode="json", exclude={"regressions"}))
    count = 1
    for url in record.pull_requests:
        emit_event(event="mendflow.patch.delivered", resource=resource, payload={"url": url})
        count += 1
    for regression in record.regressions:
        emit_event(event="mendflow.regression.detected", resource=resource,
                   payload=regression.model_dump(mode="json"))
        count += 1
        if regression.action in ("reverted", "revert-proposed"):
            emit_event(event="mendflow.regression.reverted", resource=resource,
                       payload=regression.model_dump(mode="json"))
            count += 1
    return count


def head_branch(root: Path) -> str | None:
    """The branch HEAD points at in ``root`` (None when detached)."""
    name = run_git(root, "symbolic-ref", "-q", "--short", "HEAD", check=False).strip()
    return name or None
