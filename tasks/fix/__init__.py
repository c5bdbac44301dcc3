"""Fix stage: turn ranked findings into candidate patches.

A fixer is chosen by the ``fixer.type`` of the config (see
:class:`mendflow.core.config.FixerConfig`). :func:`build_fixer` dispatches through
``FIXERS``, a table of ``type -> "module:Class"`` imported lazily, so a fixer's
dependencies are only imported when a mission uses it. A new fixer is one
module implementing :class:`~mendflow.tasks.fix.base.Fixer` (constructed from its
config section) plus one line in that table.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from mendflow.core.config import FixerConfig
from mendflow.core.errors import ConfigError, LLMError, PatchRejected
from mendflow.core.models import Finding, OutputRejected, Proposal, Sandbox
from mendflow.infra.caching import MISSION_STEP
from mendflow.infra.retry import retry_if_transient
from mendflow.tasks.fix.base import Fixer

__all__ = ["FIXERS", "Fixer", "build_fixer", "plan_fixes", "propose_patch"]

FIXERS: dict[str, str] = {
    "ruff": "mendflow.tasks.fix.ruff:RuffFixer",
    "anthropic": "mendflow.tasks.fix.claude:ClaudeFixer",
    "openai-compatible": "mendflow.tasks.fix.openai_compat:OpenAICompatibleFixer",
    "chain": "mendflow.tasks.fix.chain:ChainFixer",
}
"""Fixer implementations by config ``type``: ``"module:Class"``, imported on first use."""


def build_fixer(config: FixerConfig) -> Fixer:
    """Build the fixer a config section asks for.

    Args:
        config: the ``fixer`` section of :class:`mendflow.core.config.MendflowConfig`
            (any model with a ``type`` field naming an entry of ``FIXERS``).

    Returns:
        The fixer, constructed from that section.

    Raises:
        ConfigError: the type is unknown.
    """
    kind = getattr(config, "type", None)
    target = FIXERS.get(kind) if isinstance(kind, str) else None
    if target is None:
        raise ConfigError(f"unknown fixer type {kind!r}", subject="fixer.type",
                          hint=f"use one of: {', '.join(sorted(FIXERS))}")
    module_name, class_name = target.split(":")
    fixer_class = getattr(importlib.import_module(module_name), class_name)
    return fixer_class(config)


@task(name="plan-fixes", cache_policy=NO_CACHE, timeout_seconds=60)
def plan_fixes(fixer_config: FixerConfig, findings: Sequence[Finding]) -> list[tuple[Finding, ...]]:
    """Group the findings the configured fixer can handle, one group per candidate patch.

    Args:
        fixer_config: the ``fixer`` section of the config.
        findings: the ranked queue (most important first).

    Returns:
        The groups, in fixing order.

    Raises:
        ConfigError: the fixer type is unknown.
    """
    return build_fixer(fixer_config).plan(findings)


PROPOSE_BACKSTOP_S = 7200
"""The propose-patch task's Prefect timeout, seconds: a backstop only. The real limit
is each model call's HTTP timeout (``fixer.timeout_s``, learned per repository and at
most ``timeouts.ceiling_s``). Prefect cannot interrupt a task in a worker thread, so a
lower backstop would fail a call that already succeeded, and its retry would pay twice."""


@task(name="propose-patch", cache_policy=MISSION_STEP, persist_result=True, retries=3,
      retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_jitter_factor=0.5,
      retry_condition_fn=retry_if_transient, timeout_seconds=PROPOSE_BACKSTOP_S)
def propose_patch(fixer_config: FixerConfig, sandbox: Sandbox, group: Sequence[Finding],
                  feedback: str | None = None, attempt: int = 1, tree: str = "") -> Proposal:
    """Ask the configured fixer for one candidate patch against the sandbox's current tree.

    Retried (3 times, backoff 2, 4, 8 s ±50 %) only for transient errors
    (:func:`mendflow.infra.retry.is_transient`). A retryable model error that carries
    a ``retry-after`` first sleeps that long, capped by the fixer's
    ``max_retry_after_s``. Each retry is a new call charged to the budget.

    Args:
        fixer_config: the ``fixer`` section of the config.
        sandbox: the mission's worktree (read, never written).
        group: one group from :func:`plan_fixes`.
        feedback: the gate output that rejected the previous attempt, or None.
        attempt: 1 for the first attempt, 2 for the next ...
        tree: the content hash of the sandbox's tree (a cache-key part: the
            result is persisted and re-used when a resumed mission asks again).

    Returns:
        The fixer's :class:`Proposal`: a patch, why it declined, or the guard
        that refused its output (``rejected``). Being results, these are cached.

    Raises:
        ConfigError: the fixer type is unknown.
        ToolError: the fixer's tool (ruff) is missing or failed.
        LLMError: a model call failed: at once when permanent (HTTP 400/401),
            after the retries when transient.
    """
    fixer = build_fixer(fixer_config)
    ids = tuple(f.id for f in group)
    name = getattr(fixer, "name", "fixer")
    try:
        return fixer.propose(sandbox, group, feedback=feedback, attempt=attempt)
    except PatchRejected as err:
        return OutputRejected(fixer=name, finding_ids=ids, attempt=attempt, guard=err.reason,
                              message=err.message, llm_calls=getattr(err, "llm_calls", 0))
    except LLMError as err:
        # Raised, not returned: an API error is never cached, so a resumed mission
        # asks again once the key, the quota or the service is fixed.
        if err.retryable and err.retry_after_s:
            time.sleep(err.retry_after_s)
        raise
