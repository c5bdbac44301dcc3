"""Serve the evolution loop: the ``evolution-cycle/<name>`` deployment of one repository.

``mendflow evolve serve [--config FILE] PATH_OR_GIT_URL`` registers the deployment
with the Prefect API (``PREFECT_API_URL``) and runs its flow runs in this process
every ``evolution.interval_s`` seconds; ``prefect deployment run
'evolution-cycle/NAME'`` starts one by hand. The deployment's concurrency limit
is 1 (``collision_strategy=CANCEL_NEW``): a cycle that would overlap the running
one is cancelled by Prefect, and the next cycle records it as ``skipped``.

Each flow run is a new process (the runner starts ``python -m prefect.engine``),
so it imports mendflow afresh: with mendflow installed from a checkout the loop
delivers to (``pip install -e``), the next cycle runs the new code. The serving
process itself re-executes (``os.execv``) after a cycle asked for a restart
(``auto_restart``, or the loop maintains mendflow's own repository), so its own
code is new too. ``deployments/prefect.yaml`` describes the same deployment for
``prefect deploy`` with a ``git_clone`` pull step.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from datetime import timedelta
from pathlib import Path

from mendflow.core.config import load_config
from mendflow.infra.evolution_store import is_git_url, loop_dir, loop_key, read_memory, write_memory
from mendflow.infra.layout import StateLayout

logger = logging.getLogger("mendflow.evolve")


def deployment_name(target: str, name: str | None = None) -> str:
    """The deployment's name: ``name``, else the loop key of the repository (``<repo>-<hash8>``)."""
    return name or loop_key(target)


def build_evolution_deployment(target: str, config_path: Path | str | None = None, *,
                               name: str | None = None, interval_s: float | None = None):
    """Build ``evolution-cycle/<name>`` (``Flow.to_deployment``), scheduled every ``interval_s``.

    Args:
        target: the repository path (made absolute) or git URL.
        config_path: the YAML config; its ``evolution.interval_s`` is the default interval.
        name: the deployment name (default: the loop key of ``target``).
        interval_s: seconds between cycles (default ``evolution.interval_s``).

    Returns:
        The :class:`prefect.deployments.runner.RunnerDeployment`.

    Raises:
        ConfigError: the config file is invalid.
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType

    from mendflow.flows.evolution import evolution_cycle

    config = load_config(config_path)
    target = target if is_git_url(target) else str(Path(target).expanduser().resolve())
    seconds = interval_s or config.evolution.interval_s
    return evolution_cycle.to_deployment(
        name=deployment_name(target, name),
        parameters={"path": target,
                    "config_file": str(Path(config_path).resolve()) if config_path else None},
        interval=timedelta(seconds=seconds),
        description="mendflow evolution loop: detect, fix, deliver pull requests, watch",
        tags=["mendflow", "evolution"],
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        entrypoint_type=EntrypointType.MODULE_PATH)


def watch_restart(folder: Path, stop: threading.Event, every_s: float = 2.0) -> None:
    """Re-exec this process (same argv) once a cycle asked for a restart; until ``stop``."""
    while not stop.wait(every_s):
        memory = read_memory(folder)
        if memory.restart_requested:
            write_memory(folder, memory.model_copy(update={"restart_requested": False}))
            logger.warning("mendflow changed: restarting `%s`", " ".join(sys.argv))
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(sys.executable, [sys.executable, *sys.argv])


def serve_evolution(target: str, config_path: Path | str | None = None, *,
                    name: str | None = None, interval_s: float | None = None) -> None:
    """Register the deployment and run its cycles in this process until interrupted."""
    from prefect import serve as prefect_serve

    config = load_config(config_path)
    folder = loop_dir(StateLayout.resolve(config.mission.state_dir), target if is_git_url(
        target) else str(Path(target).expanduser().resolve()))
    deployment = build_evolution_deployment(target, config_path, name=name,
                                            interval_s=interval_s)
    stop = threading.Event()
    threading.Thread(target=watch_restart, args=(folder, stop), daemon=True,
                     name="mendflow-evolve-restart").start()
    try:
        prefect_serve(deployment, print_starting_message=True)
    finally:
        stop.set()
