"""The heal stage's Prefect tasks: load an error group, ask the model, run the
reproduction, record, notify and publish (composed by :mod:`mendflow.flows.heal`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mendflow.core.config import FixerConfig, GatesConfig, LLMPolicy, ToolsConfig
from mendflow.core.error_groups import ErrorGroup
from mendflow.core.errors import ConfigError, MendflowError
from mendflow.core.heal import HealRecord
from mendflow.core.models import Finding, Sandbox, TargetEnv, TestRun
from mendflow.infra.heal_records import write_record
from mendflow.infra.layout import StateLayout
from mendflow.infra.logfiles import expand_paths
from mendflow.infra.retry import transient_retries
from mendflow.tasks.detect.log_scan import scan_log_files
from mendflow.tasks.detect.pytest_run import measure_tests
from mendflow.tasks.heal.propose import HealProposal, propose_heal

__all__ = ["HealProposal", "ask_heal", "load_error_group", "model_fixer", "notify_heal",
           "publish_heal_artifact", "run_reproduction", "save_heal_record", "source_context"]


def model_fixer(config: FixerConfig):
    """The model fixer of a fixer config (a chain's model member), or None for an offline one."""
    from mendflow.tasks.fix import build_fixer
    from mendflow.tasks.fix.llm import LLMFixer

    for section in [config, *getattr(config, "fixers", [])]:
        if getattr(section, "type", None) in ("anthropic", "openai-compatible"):
            fixer = build_fixer(section)
            if isinstance(fixer, LLMFixer):
                return fixer
    return None


@task(name="load-error-group", cache_policy=NO_CACHE, timeout_seconds=600)
def load_error_group(log_files: Sequence[str], repo_root: Path,
                     fingerprint: str | None = None) -> ErrorGroup:
    """Parse the logs, group their tracebacks and pick one group.

    Args:
        log_files: log files or globs (relative to the current directory).
        repo_root: the repository (frames are located in it).
        fingerprint: the group to pick; None = the largest.

    Returns:
        The group.

    Raises:
        ConfigError: no log file, no traceback in them, or no group with that fingerprint.
    """
    paths = expand_paths(log_files) or [Path(p) for p in log_files]
    groups = scan_log_files(paths, repo_root)
    if not groups:
        raise ConfigError("no Python traceback in the log", subject=", ".join(log_files),
                          hint="pass the application's log (plain text or JSON lines)")
    if fingerprint is None:
        return groups[0]
    for group in groups:
        if group.fingerprint == fingerprint:
            return group
    raise ConfigError("no error group has this fingerprint in the log", subject=fingerprint,
                      hint="list the groups with `mendflow heal scan LOG`")


@task(name="ask-heal", cache_policy=NO_CACHE, timeout_seconds=7200, **transient_retries(3))
def ask_heal(fixer_config: FixerConfig, sandbox: Sandbox, finding: Finding, policy: LLMPolicy,
             gates: GatesConfig, feedback: str | None, attempt: int) -> HealProposal:
    """One model attempt (:func:`mendflow.tasks.heal.propose.propose_heal`), retried when transient.

    Raises:
        ConfigError: the config has no model fixer.
        LLMError: the call failed (permanent, or transient after the retries).
    """
    fixer = model_fixer(fixer_config)
    if fixer is None:
        raise ConfigError("healing needs a model fixer", subject="fixer.type",
                          hint="use --fixer anthropic or configure an openai-compatible fixer")
    return propose_heal(fixer, sandbox, finding, policy, gates, feedback=feedback,
                        attempt=attempt)


@task(name="run-reproduction", cache_policy=NO_CACHE, timeout_seconds=4 * 3600)
def run_reproduction(sandbox: Sandbox, env: TargetEnv, tools: ToolsConfig,
                     test_files: Sequence[str]) -> TestRun | None:
    """Run the reproduction test files alone, in the sandbox, with native tracebacks.

    The same path as every test run of a mission (:func:`measure_tests`: the
    target's interpreter, the sandbox's environment, process-group timeouts),
    with ``--tb=native`` and the test files as arguments, coverage off.

    Returns:
        The test run (None when pytest could not run).
    """
    pytest = tools.pytest.model_copy(update={"args": [*tools.pytest.args, "--tb=native",
                                                      *test_files]})
    only = tools.model_copy(update={"pytest": pytest,
                                    "coverage": tools.coverage.model_copy(update={"enabled": False})})
    return measure_tests(sandbox, env, only).test_run


@task(name="save-heal-record", cache_policy=NO_CACHE, **transient_retries(2, first_delay_s=1))
def save_heal_record(layout: StateLayout, record: HealRecord) -> str:
    """Write the group's JSON record; returns its path."""
    return str(write_record(layout, record))


@task(name="notify-heal", cache_policy=NO_CACHE, timeout_seconds=60, **transient_retries(2))
def notify_heal(block: str, subject: str, body: str) -> str | None:
    """Send one stage's message; a failure is returned (and logged), never raised.

    Returns:
        None when sent, else why it was not.
    """
    from mendflow.blocks.notify import notify

    try:
        notify(block, subject, body)
    except MendflowError as err:
        return str(err)
    return None


@task(name="publish-heal-artifact", cache_policy=NO_CACHE, **transient_retries(1))
def publish_heal_artifact(record: HealRecord) -> None:
    """The group's Markdown artifact (key ``mendflow-heal-<fingerprint>``)."""
    create_markdown_artifact(key=f"mendflow-heal-{record.fingerprint}",
                             markdown=heal_markdown(record),
                             description=f"heal {record.exception_type}: {record.status}")


def source_context(root: Path, path: str, line: int | None, around: int = 5) -> str:
    """The numbered source lines around a located frame (``  12 | text``), for the record.

    Args:
        root: the repository (or worktree) root.
        path: the repository-relative file.
        line: the frame's line (1-based); None = the first lines.
        around: lines before and after.

    Returns:
        The snippet, or '' when the file cannot be read.
    """
    try:
        lines = (root / path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    center = line or 1
    start, end = max(center - around, 1), min(center + around, len(lines))
    marked = [f"{'>' if n == line else ' '}{n:4d} | {lines[n - 1]}" for n in range(start, end + 1)]
    return f"{path}:\n" + "\n".join(marked)


def heal_markdown(record: HealRecord) -> str:
    """The record for people."""
    lines = [f"# Heal {record.exception_type} ({record.fingerprint})", "",
             f"- **status**: {record.status}" + (f": {record.reason}" if record.reason else ""),
             f"- **where**: `{record.path}:{record.line}` in `{record.function}`",
             f"- **message**: {record.message}",
             f"- **seen**: {record.count}x, {record.first_seen} .. {record.last_seen}",
             f"- **branch**: {record.branch or '-'}; **commit**: {record.commit or '-'}", "",
             "## Attempts", ""]
    for a in record.attempts:
        category = a.analysis.category if a.analysis else "-"
        verdict = "accepted" if a.accepted else f"refused: {a.reason}"
        lines.append(f"{a.attempt}. ({category}) {verdict}"
                     + (f" — test `{a.reproduction_test}`" if a.reproduction_test else ""))
    lines += ["", "## Traceback", "", "```", record.traceback[-6000:], "```"]
    if record.context:
        lines += ["", "## Context", "", "```", record.context, "```"]
    return "\n".join(lines)
