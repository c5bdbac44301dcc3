"""Fix stage: turn ranked findings into candidate patches.

A fixer is chosen by the ``fixer.type`` of the config (see
:class:`mendflow.core.config.FixerConfig`). :func:`build_fixer` dispatches through
:func:`fixer_classes`: each :class:`~mendflow.tasks.fix.base.Fixer` subclass declares
the config section it is built from (``config_type = RuffFixerConfig``), and the
registry is collected from those subclasses (the fixer modules of this package are
imported on the first use, so a fixer's SDK is not imported with the CLI). A new
fixer is one config section in the :data:`~mendflow.core.config.FixerConfig` union
plus one ``Fixer`` subclass.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from mendflow.core.config import FIXER_TYPES, FixerConfig
from mendflow.core.config_fixers import fixer_type
from mendflow.core.errors import ConfigError, LLMError, PatchRejected
from mendflow.core.models import Finding, OutputRejected, Proposal, Sandbox
from mendflow.infra.caching import MISSION_STEP
from mendflow.infra.retry import transient_retries
from mendflow.tasks.fix.base import Fixer

__all__ = ["Fixer", "build_fixer", "fixer_classes", "plan_fixes", "propose_patch"]


def _subclasses(cls: type) -> list[type]:
    direct: list[type] = cls.__subclasses__()
    return direct + [deeper for sub in direct for deeper in _subclasses(sub)]


def fixer_classes() -> dict[str, type[Fixer]]:
    """The fixer registry: config ``type`` -> the ``Fixer`` subclass built from that section.

    Collected from the subclasses of :class:`~mendflow.tasks.fix.base.Fixer` that declare
    ``config_type`` (a section of the :data:`~mendflow.core.config.FixerConfig` union),
    after importing the modules of this package.

    Returns:
        One class per type of :data:`~mendflow.core.config.FIXER_TYPES`, in that order.

    Raises:
        ConfigError: a type of the union has no ``Fixer`` subclass (a programming error,
            named so that it is found at once).
    """
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    found = {fixer_type(section): cls for cls in _subclasses(Fixer)
             if (section := cls.__dict__.get("config_type")) is not None}
    missing = [kind for kind in FIXER_TYPES if kind not in found]
    if missing:
        raise ConfigError(f"no Fixer subclass declares config_type for {', '.join(missing)}",
                          subject="fixer.type", hint="add `config_type = <its section>` to the "
                          "fixer's class in mendflow/tasks/fix/")
    return {kind: found[kind] for kind in FIXER_TYPES}


def build_fixer(config: FixerConfig) -> Fixer:
    """Build the fixer a config section asks for.

    Args:
        config: the ``fixer`` section of :class:`mendflow.core.config.MendflowConfig`
            (any model with a ``type`` field naming one of the union's types).

    Returns:
        The fixer, constructed from that section.

    Raises:
        ConfigError: the type is unknown.
    """
    kind = getattr(config, "type", None)
    fixer_class = fixer_classes().get(kind) if isinstance(kind, str) else None
    if fixer_class is None:
        raise ConfigError(f"unknown fixer type {kind!r}", subject="fixer.type",
                          hint=f"use one of: {', '.join(FIXER_TYPES)}")
    return fixer_class(config)  # type: ignore[call-arg]


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


@task(name="propose-patch", cache_policy=MISSION_STEP, persist_result=True,
      timeout_seconds=PROPOSE_BACKSTOP_S, **transient_retries(3))
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
