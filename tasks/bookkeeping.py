"""Mission set-up and bookkeeping tasks: config, mission id, scoring, baseline backups."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

import git
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client

from mendflow.core.config import MendflowConfig, ScoreConfig, validate_config
from mendflow.core.config_sources import DEFAULTS, effective_config, merge_mappings
from mendflow.core.errors import ConfigError
from mendflow.core.findings import path_in_scope
from mendflow.core.models import (
    BackupEntry,
    Finding,
    Measurement,
    MissionResult,
    RepoTarget,
    Sandbox,
    ToolResult,
)
from mendflow.core.score import quality_score
from mendflow.infra.caching import MISSION_STEP
from mendflow.infra.gitops import find_repository_root
from mendflow.infra.layout import StateLayout
from mendflow.infra.missions import MissionRecord, finish_mission, start_mission
from mendflow.infra.retry import transient_retries
from mendflow.tasks.detect import count_python_loc


@task(name="load-mission-config", cache_policy=NO_CACHE)
def load_mission_config(config_file: str | None, fixer: str | None = None, path: str | None = None,
                        *, overrides: dict[str, Any] | None = None,
                        **mission_overrides) -> MendflowConfig:
    """Load the mission's configuration from its sources and apply command-line overrides.

    The sources, highest precedence first: ``config_file``, ``.mendflow.yaml`` at the
    root of the repository that contains ``path``, that repository's
    ``[tool.mendflow]`` in ``pyproject.toml``, the defaults
    (:func:`mendflow.core.config_sources.effective_config`).

    Args:
        config_file: path of a YAML file, or None.
        fixer: a fixer type chosen with ``--fixer`` (ruff | anthropic | chain), or None.
        path: the mission's path (a repository or a path inside one), or None.
        overrides: a partial config merged over every source, field by field (a fleet
            repository's ``config``), or None.
        **mission_overrides: ``mission`` fields (None values are ignored).

    Returns:
        The validated config. Its ``mission.state_dir`` is the state directory resolved
        once here (:meth:`mendflow.infra.layout.StateLayout.resolve`: the configured one,
        else ``$MENDFLOW_HOME``, else ``~/.mendflow``; absolute, created), so every step
        of the mission uses the same place.

    Raises:
        ConfigError: a source or an override is invalid (the message names the file
            and the field).
    """
    root = find_repository_root(path) if path is not None else None
    effective = effective_config(config_file, root)
    config = effective.config
    origin = effective.origin("sandbox.isolation")
    yours = {DEFAULTS, *([str(Path(config_file))] if config_file is not None else [])}
    if config.sandbox.isolation == "none" and origin not in yours:
        # the repository under test must not switch off the sandbox its own code runs in
        raise ConfigError("sandbox.isolation: none may only come from your own --config file, "
                          f"not from the repository ({origin})", subject="sandbox.isolation",
                          hint="remove it from the repository's configuration and pass "
                               "--config with `sandbox: {isolation: none}` if you mean it")
    if overrides:
        merged = merge_mappings(config.model_dump(mode="python", exclude_unset=True), overrides,
                                "the fleet repository's config", {})
        config = validate_config(merged, source="the fleet repository's config")
    config = config.with_overrides(**mission_overrides).with_fixer(fixer)
    root = StateLayout.resolve(config.mission.state_dir).root
    return config.model_copy(update={"mission": config.mission.model_copy(
        update={"state_dir": root})})


@task(name="new-mission-id", cache_policy=MISSION_STEP, persist_result=True)
def new_mission_id(flow_run_id: str) -> str:
    """Return a mission id such as ``m-20261122-0412-3f9a1c2b``.

    Cached per flow run: a deployed run that suspends for approval re-runs the
    flow from the top when resumed, and must find the same mission (and so
    every cached step of it) again.

    Args:
        flow_run_id: the Prefect flow run id; its first 8 hex digits end the id.

    Returns:
        A lowercase id of letters, digits and dashes (safe as a branch and file name).
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M")
    suffix = (flow_run_id.replace("-", "") or hashlib.sha256(stamp.encode()).hexdigest())[:8]
    return f"m-{stamp}-{suffix.lower()}"


def flow_run_name(mission_id: str, repo_root: Path) -> str:
    """The flow run's name: the mission and the repository, ``m-20261201-1358-6ed1: acme-api``."""
    return f"{mission_id}: {repo_root.name}"


@task(name="name-flow-run", cache_policy=NO_CACHE, timeout_seconds=30,
      **transient_retries(2, first_delay_s=1))
def name_flow_run(flow_run_id: str, mission_id: str, repo_root: Path) -> str:
    """Rename the flow run after its mission and repository (instead of Prefect's random name).

    Args:
        flow_run_id: the Prefect flow run id.
        mission_id: the mission's id.
        repo_root: the repository's root.

    Returns:
        The new name (:func:`flow_run_name`).
    """
    name = flow_run_name(mission_id, repo_root)
    with get_client(sync_client=True) as client:
        client.update_flow_run(UUID(flow_run_id), name=name)
    return name


@task(name="compute-measurement", cache_policy=NO_CACHE)
def compute_measurement(sandbox: Sandbox, tree: str, results: Sequence[ToolResult],
                        findings: Sequence[Finding], score: ScoreConfig) -> Measurement:
    """Combine the tool results of one tree into a :class:`Measurement` with its score.

    Args:
        sandbox: the measured worktree (lines of code are counted there).
        tree: the tree's content hash.
        results: one :class:`ToolResult` per detector.
        findings: the merged, ranked findings.
        score: the score weights.

    Returns:
        The measurement; ``score`` is the 0-100 quality score of mendflow.core.score.
    """
    loc = count_python_loc(sandbox.path)
    test_run = next((r.test_run for r in results if r.test_run is not None), None)
    value = quality_score(findings, test_run, loc, score)
    return Measurement(tree=tree, results=tuple(results), findings=tuple(findings),
                       score=value, loc=loc)


@task(name="back-up-files", cache_policy=NO_CACHE)
def back_up_files(sandbox: Sandbox, target: RepoTarget, backups_dir: Path) -> list[BackupEntry]:
    """Copy every tracked in-scope Python file of the base commit and record its SHA-256.

    Args:
        sandbox: the mission's worktree at the base commit.
        target: the mission's target (its scope selects the files).
        backups_dir: where copies go (``<dir>/baseline/<path>``).

    Returns:
        One :class:`BackupEntry` per file (before == after: nothing was changed).
    """
    listed = git.Repo(sandbox.path).git.ls_files("-z", "--", "*.py").split("\0")
    entries = []
    for rel in filter(None, listed):
        if not path_in_scope(rel, target):
            continue
        data = (sandbox.path / rel).read_bytes()
        copy = backups_dir / "baseline" / rel
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sandbox.path / rel, copy)
        digest = hashlib.sha256(data).hexdigest()
        entries.append(BackupEntry(path=rel, sha256_before=digest, sha256_after=digest,
                                   commit=sandbox.base_commit, patch_id="baseline",
                                   backup_path=str(copy)))
    return entries


@task(name="register-mission", cache_policy=NO_CACHE, **transient_retries(2, first_delay_s=1))
def register_mission(mission_id: str, repository: str, parameters: dict[str, Any],
                     flow_run_id: str | None, layout: StateLayout) -> MissionRecord:
    """Record the mission (or this resumed run of it) in mendflow's registry.

    Args:
        mission_id: the mission.
        repository: the repository root.
        parameters: the flow parameters, so that ``mendflow mission resume`` can re-run them.
        flow_run_id: this flow run.
        layout: mendflow's state directory, resolved.

    Returns:
        The record; ``started_at`` is the first run's start (it dates every commit).
    """
    return start_mission(mission_id, repository, parameters, flow_run_id, layout)


@task(name="close-mission", cache_policy=NO_CACHE, **transient_retries(2, first_delay_s=1))
def close_mission(result: MissionResult, layout: StateLayout) -> None:
    """Record how the mission ended in mendflow's registry (see :mod:`mendflow.infra.missions`)."""
    finish_mission(result.mission_id, result.status, result.report_dir, result.worktree, layout)
