"""Serve the mission as a Prefect deployment: ``maintenance-mission/<name>``.

``mendflow serve [--config FILE] [--name NAME] [--interval-minutes N] [--path PATH]``
(or ``python -m mendflow.deployments.serve ...``) registers the deployment with the
Prefect API (``PREFECT_API_URL``: a ``prefect server start`` or Prefect Cloud)
and runs its flow runs in this process, scheduled every N minutes and on
demand::

    prefect deployment run 'maintenance-mission/mendflow' --param autonomy=interactive

A deployed run that needs approval is *suspended*: its process exits and the
run waits without holding anything. ``mendflow approve RUN_ID`` (or the
Resume dialog in the Prefect UI) resumes it; this server then runs it again
from the top, the cached steps return at once, and delivery follows. While it
serves, a background thread answers suspended runs whose approval deadline
passed as timed out (:func:`mendflow.cli.approvals.expire_overdue`).

Its flow runs send a heartbeat every ``deployment.heartbeat_s`` seconds, and it
installs an automation (scoped to this deployment) that marks a flow run Crashed
when its heartbeats stop, and, with ``deployment.auto_resume_crashed``, one that
reschedules it (:mod:`mendflow.deployments.automation`).

``deployments/prefect.yaml`` describes the same deployment for ``prefect deploy``
(a work pool and a worker instead of this process).
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta
from pathlib import Path

import typer

from mendflow.core.config import MendflowConfig, load_config
from mendflow.core.errors import MendflowError

logger = logging.getLogger("mendflow.serve")


def deployment_parameters(config: MendflowConfig, config_path: Path | None,
                          path: str | None = None) -> dict[str, object]:
    """The deployment's default flow parameters.

    Args:
        config: the loaded config (its ``deployment`` section).
        config_path: the config file, passed on to each run as ``config_file``.
        path: overrides ``deployment.path``.

    Returns:
        ``{"path": <absolute path>, "config_file": <absolute path or None>,
        "autonomy": <deployment.autonomy>}``.
    """
    target = Path(path or config.deployment.path).expanduser().resolve()
    return {"path": str(target),
            "config_file": str(Path(config_path).resolve()) if config_path else None,
            "autonomy": config.deployment.autonomy}


def build_deployment(config_path: Path | str | None = None, *, name: str | None = None,
                     interval_minutes: float | None = None, path: str | None = None):
    """Build the ``maintenance-mission/<name>`` deployment (``Flow.to_deployment``).

    Args:
        config_path: the YAML config (its ``deployment`` section gives the defaults).
        name: the deployment name; None = ``deployment.name``.
        interval_minutes: schedule; None = ``deployment.interval_minutes`` (None = no schedule).
        path: the repository; None = ``deployment.path``.

    Returns:
        The :class:`prefect.deployments.runner.RunnerDeployment`.

    Raises:
        ConfigError: the config file is invalid.
    """
    from prefect.deployments.runner import EntrypointType

    from mendflow.flows.mission import maintenance_mission

    config_file = Path(config_path) if config_path else None
    config = load_config(config_file)
    minutes = interval_minutes or config.deployment.interval_minutes
    return maintenance_mission.to_deployment(
        name=name or config.deployment.name,
        parameters=deployment_parameters(config, config_file, path),
        interval=timedelta(minutes=minutes) if minutes else None,
        description="mendflow maintenance mission (suspends for approval when the autonomy "
                    "level asks for it; answer with `mendflow approve RUN_ID`)",
        tags=["mendflow"],
        # "mendflow.flows.mission.maintenance_mission": the installed module, whatever the
        # working directory of the runner (a user's own flows/ or tasks.py cannot shadow it)
        entrypoint_type=EntrypointType.MODULE_PATH)


def sweep_timeouts(stop: threading.Event, every_s: float) -> None:
    """Every ``every_s`` seconds, answer overdue suspended approvals as timed out, until ``stop``."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    from mendflow.infra.approvals import expire_overdue

    while not stop.wait(every_s):
        try:
            for run_id in expire_overdue():
                logger.warning("approval of flow run %s timed out", run_id)
        except (httpx.HTTPError, PrefectHTTPStatusError, MendflowError) as err:
            logger.warning("approval timeout sweep failed (will retry): %s", err)


def serve(config_path: Path | str | None = None, *, name: str | None = None,
          interval_minutes: float | None = None, path: str | None = None,
          sweep_every_s: float = 30.0) -> None:
    """Register the mission deployment and run its flow runs here until interrupted.

    Args:
        config_path: the YAML config.
        name: the deployment name (default ``deployment.name``, "mendflow").
        interval_minutes: run a mission every N minutes (default ``deployment.interval_minutes``).
        path: the repository (default ``deployment.path``).
        sweep_every_s: seconds between checks for approvals past their deadline.

    Raises:
        ConfigError: the config file is invalid.
    """
    settings = load_config(config_path).deployment
    from prefect import serve as prefect_serve

    from mendflow.deployments.automation import install_crash_automations

    deployment = build_deployment(config_path, name=name, interval_minutes=interval_minutes,
                                  path=path)
    # the automations are scoped to the deployment's id: register it first
    install_crash_automations(deployment.apply(), deployment.name, settings.heartbeat_s,
                              settings.auto_resume_crashed)
    stop = threading.Event()
    sweeper = threading.Thread(target=sweep_timeouts, args=(stop, sweep_every_s),
                               name="mendflow-approval-timeouts", daemon=True)
    sweeper.start()
    try:
        # the runner passes the period to each flow run process (it overrides any
        # PREFECT_FLOWS_HEARTBEAT_FREQUENCY), so runs beat exactly as the automation expects
        prefect_serve(deployment, print_starting_message=True,
                      heartbeat_seconds=settings.heartbeat_s)
    finally:
        stop.set()


def serve_command(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
    name: str | None = typer.Option(None, "--name", help="deployment name (default: mendflow)"),
    interval_minutes: float | None = typer.Option(None, "--interval-minutes", min=0.1,
                                                  help="run a mission every N minutes"),
    path: str | None = typer.Option(None, "--path", help="the repository (default: .)"),
    timeout_sweep_s: float = typer.Option(30.0, "--timeout-sweep-s", min=0.5, help="seconds "
                                          "between checks for approvals past their deadline"),
) -> None:
    """Serve the mission deployment maintenance-mission/NAME (needs PREFECT_API_URL)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    try:
        serve(config, name=name, interval_minutes=interval_minutes, path=path,
              sweep_every_s=timeout_sweep_s)
    except MendflowError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(error.exit_code) from None


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app``."""
    app.command("serve")(serve_command)


if __name__ == "__main__":  # python -m mendflow.deployments.serve [--config FILE] ...
    typer.run(serve_command)
