"""Serve the ``heal`` flow as a deployment started by ``mendflow.exception.raised`` events.

``mendflow heal serve [--config FILE] [--name NAME] [--path REPO]`` registers
``heal/<name>`` with a :class:`~prefect.events.schemas.deployment_triggers.DeploymentEventTrigger`:
each event of the live hook (:mod:`mendflow.heal`) starts a flow run whose
``event`` parameter is the event's payload (``{{ event.payload }}``, rendered as a
JSON object). The flow keeps the rest in check: at most one open run per
fingerprint (a file lock), a repeat within ``heal.repeat_window_s`` of a
finished run only adds to the group's count, and ``heal.max_runs_per_hour``
caps the runs (:mod:`mendflow.flows.heal`). The deployment runs one flow run at
a time (``concurrency_limit=1``): the others wait for a slot.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from mendflow.core.config import load_config
from mendflow.core.errors import MendflowError


def heal_trigger(repository: str | None = None):
    """The trigger: every ``mendflow.exception.raised`` event, one flow run each.

    Args:
        repository: only events whose ``mendflow.repository`` label equals this;
            None = events of any repository.

    Returns:
        The :class:`DeploymentEventTrigger`.
    """
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    match: dict[str, str | list[str]] = {"prefect.resource.id": "mendflow.error.*"}
    if repository:
        match["mendflow.repository"] = repository
    return DeploymentEventTrigger(
        name="mendflow-heal-on-exception", expect={"mendflow.exception.raised"}, match=match,
        parameters={"event": "{{ event.payload }}"})


def build_heal_deployment(config_path: Path | str | None = None, *, name: str | None = None,
                          path: str | None = None, repository: str | None = None):
    """The ``heal/<name>`` deployment with its event trigger.

    Args:
        config_path: the YAML config (passed to each run as ``config_file``).
        name: the deployment name; None = ``deployment.name``.
        path: the repository to heal; None = ``deployment.path``.
        repository: the ``mendflow.repository`` label to match (see :func:`heal_trigger`).

    Returns:
        The :class:`prefect.deployments.runner.RunnerDeployment`.

    Raises:
        ConfigError: the config file is invalid.
    """
    from prefect.deployments.runner import EntrypointType

    from mendflow.flows.heal import heal

    config = load_config(config_path)
    target = Path(path or config.deployment.path).expanduser().resolve()
    return heal.to_deployment(
        name=name or config.deployment.name,
        parameters={"repo": str(target),
                    "config_file": str(Path(config_path).resolve()) if config_path else None,
                    "autonomy": config.deployment.autonomy},
        triggers=[heal_trigger(repository)],
        description="mendflow heal: reproduce, fix and validate an exception raised in the "
                    "application (started by mendflow.exception.raised events)",
        tags=["mendflow", "heal"], entrypoint_type=EntrypointType.MODULE_PATH,
        # heal runs of one repository take turns (each holds the repository's mission lock);
        # the others wait for a slot instead of failing
        concurrency_limit=1)


def serve_heal_command(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
    name: str | None = typer.Option(None, "--name", help="deployment name (default: mendflow)"),
    path: str | None = typer.Option(None, "--path", help="the repository (default: .)"),
    repository: str | None = typer.Option(None, "--repository", help="only events of this "
                                          "mendflow.repository label"),
) -> None:
    """Serve heal/NAME, started by mendflow.exception.raised events (needs PREFECT_API_URL)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    try:
        deployment = build_heal_deployment(config, name=name, path=path, repository=repository)
    except MendflowError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(error.exit_code) from None
    from prefect import serve

    serve(deployment, print_starting_message=True)
