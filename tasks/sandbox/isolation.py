"""Decide, once per mission, how the target's code is isolated (``sandbox.isolation``).

``auto`` uses bubblewrap when a probe shows it works, and otherwise says so
loudly (a warning and a progress line). A mission whose fixer is a model
(anthropic, openai-compatible, or a chain holding one) refuses to start
without working isolation, unless the config says ``isolation: none``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from mendflow.core.config import FixerConfig, SandboxConfig
from mendflow.core.config_fixers import runs_model_code
from mendflow.core.errors import SandboxError
from mendflow.core.models import Isolation
from mendflow.infra.isolation import INSTALL_HINT, isolation_problem, resolve_isolation
from mendflow.infra.progress import report_progress


def decide_isolation(config: SandboxConfig, fixer: FixerConfig,
                     hidden: Sequence[Path]) -> Isolation:
    """Resolve the isolation of a mission and enforce the policy.

    Args:
        config: the ``sandbox`` section.
        fixer: the ``fixer`` section (a model fixer needs isolation).
        hidden: directories the target's code must not see (home, state dir, checkout).

    Returns:
        The :class:`Isolation` every run of the target's code uses.

    Raises:
        SandboxError: ``isolation: bwrap`` and bubblewrap does not work; or ``auto``
            without working bubblewrap and a model fixer (subject ``sandbox.isolation``).
    """
    isolation = resolve_isolation(config, hidden=hidden)
    if isolation.backend == "bwrap" or config.isolation == "none":
        return isolation
    why = isolation_problem(config) or "bubblewrap does not work"
    if runs_model_code(fixer):
        raise SandboxError(
            f"refusing to run model-written code without isolation: {why}",
            subject="sandbox.isolation",
            hint=INSTALL_HINT.replace("unisolated", "unisolated (at your own risk)"))
    message = (f"WARNING: the target's code runs UNISOLATED ({why}): it has the network, "
               "your files and no resource limits; install bubblewrap")
    _logger().warning(message)
    report_progress("setup", message)
    return isolation


@task(name="decide-isolation", cache_policy=NO_CACHE, timeout_seconds=120)
def decide_sandbox_isolation(config: SandboxConfig, fixer: FixerConfig,
                             hidden: list[Path]) -> Isolation:
    """Prefect task around :func:`decide_isolation`."""
    return decide_isolation(config, fixer, hidden)


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)
