"""End-of-mission learning output: insights (Prefect markdown + table artifacts), the PNG
chart of score and accepted fixes over missions, and the self-analysis report section.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from mendflow.core.config_learning import LearningConfig
from mendflow.core.insights import insights_markdown, stats_report
from mendflow.core.models import MissionResult, Sandbox
from mendflow.infra.analysis import analysis_markdown, analyze_path
from mendflow.infra.caching import MISSION_STEP
from mendflow.infra.charts import write_progress_chart
from mendflow.infra.outcomes import STORE_ERRORS, OutcomeStore
from mendflow.infra.progress import report_progress
from mendflow.tasks.learn.record import _unavailable
from mendflow.tasks.report import artifact_key

CHART_FILE = "progress.png"


@task(name="publish-insights", cache_policy=NO_CACHE, timeout_seconds=300)
def publish_insights(learning: LearningConfig, state_root: Path, result: MissionResult) -> str:
    """Insights of the mission's repository, as artifacts and a report section, and its chart.

    Creates ``mendflow-insights-<mission-id>`` (markdown) and
    ``mendflow-strategies-<mission-id>`` (table) and writes ``progress.png`` (score and
    accepted fixes per mission, matplotlib) into the report folder.

    Args:
        learning: the ``learning`` section (thresholds, the store).
        state_root: the state directory.
        result: the mission's result (its repository and report folder).

    Returns:
        The Markdown section for the report ("" when learning is off or the store is down).
    """
    if not learning.enabled:
        return ""
    try:
        store = OutcomeStore.open(learning.database_url, state_root, learning.connect_timeout_s)
        report = stats_report(store.strategy_stats(result.repository),
                              store.missions(result.repository),
                              store.outcome_counts(result.repository), learning)
        missions = store.missions(result.repository)
    except STORE_ERRORS as error:
        _unavailable(learning, state_root, error)
        return ""
    markdown = insights_markdown(report)
    try:
        chart = write_progress_chart(missions, Path(result.report_dir) / CHART_FILE,
                                     f"{Path(result.repository).name}: {len(missions)} missions")
        markdown += f"\n![score and accepted fixes over missions]({chart.name})\n"
    except (OSError, ValueError) as error:
        report_progress("learn", f"chart not written: {error}")
    key = artifact_key(result.mission_id)
    create_markdown_artifact(key=artifact_key(f"mendflow-insights-{key}"), markdown=markdown,
                             description=f"what mendflow learned on {result.repository}")
    create_table_artifact(key=artifact_key(f"mendflow-strategies-{key}"),
                          table=report["strategies"] or [{"strategy": "", "category": "",
                                                          "attempts": 0}],
                          description="attempts, accept rate and cost per strategy and category")
    return markdown


@task(name="analyze-codebase", timeout_seconds=600, cache_policy=MISSION_STEP,
      persist_result=True)
def analyze_codebase(sandbox: Sandbox, tree: str) -> str:
    """The self-analysis section of the report (radon metrics and git-churn hotspots).

    Cached by the sandbox (its mission and base commit) and the tree: a resumed
    mission that ends on the same tree does not analyze it again.

    Args:
        sandbox: the mission's sandbox; its worktree is analyzed.
        tree: the content hash of that worktree's tree (``git write-tree``): the cache key.

    Returns:
        Markdown.
    """
    return analysis_markdown(analyze_path(sandbox.path))


@task(name="append-report-sections", cache_policy=NO_CACHE, timeout_seconds=60)
def append_report_sections(report_dir: Path, markdown: str, sections: list[str]) -> str:
    """Append sections to ``final_maintenance_report.md``; returns the whole new report.

    Raises:
        OSError: the report cannot be written.
    """
    extra = "\n".join(s.rstrip() + "\n" for s in sections if s)
    if not extra:
        return markdown
    text = markdown.rstrip("\n") + "\n\n" + extra
    (Path(report_dir) / "final_maintenance_report.md").write_text(text, encoding="utf-8")
    return text
