"""The mission deployment: built from the config, described by prefect.yaml, served by the CLI.

The served deployment itself runs end to end in tests/e2e (a real Prefect server).
"""

from __future__ import annotations

import importlib
import inspect
from datetime import timedelta
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from mendflow.core.config import MendflowConfig
from mendflow.core.errors import ConfigError
from mendflow.deployments.serve import build_deployment, deployment_parameters, register
from mendflow.flows.mission import maintenance_mission

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "mendflow.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_deployment_from_the_config_section(tmp_path):
    config = write(tmp_path, {"deployment": {"name": "nightly", "path": str(tmp_path),
                                             "interval_minutes": 90, "autonomy": "autonomous"}})

    deployment = build_deployment(config)

    assert deployment.name == "nightly" and deployment.flow_name == "maintenance-mission"
    assert deployment.parameters == {"path": str(tmp_path), "config_file": str(config),
                                     "autonomy": "autonomous"}
    assert deployment.entrypoint == "mendflow.flows.mission.maintenance_mission"
    assert [s.schedule.interval for s in deployment.schedules] == [timedelta(minutes=90)]


def test_command_line_values_override_the_config(tmp_path):
    config = write(tmp_path, {"deployment": {"interval_minutes": 90}})

    deployment = build_deployment(config, name="adhoc", interval_minutes=5, path=str(tmp_path))

    assert deployment.name == "adhoc" and deployment.parameters["path"] == str(tmp_path)
    assert [s.schedule.interval for s in deployment.schedules] == [timedelta(minutes=5)]
    plain = build_deployment(None)
    assert plain.name == "mendflow" and plain.schedules == []
    assert plain.parameters == {"path": str(Path(".").resolve()), "config_file": None,
                                "autonomy": None}


def test_parameters_match_the_flow_signature():
    params = deployment_parameters(MendflowConfig(), None)
    assert set(params) <= set(inspect.signature(maintenance_mission.fn).parameters)


def test_bad_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown field 'deployment.nme'"):
        build_deployment(write(tmp_path, {"deployment": {"nme": "x"}}))


def test_prefect_yaml_describes_the_same_deployment():
    spec = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    (deployment,) = spec["deployments"]
    module, _, name = deployment["entrypoint"].rpartition(".")
    assert importlib.import_module(module) is not None and name == "maintenance_mission"
    assert deployment["name"] == MendflowConfig().deployment.name
    assert set(deployment["parameters"]) <= set(inspect.signature(maintenance_mission.fn)
                                                .parameters)
    assert deployment["parameters"]["autonomy"] in ("interactive", "semi_autonomous",
                                                    "autonomous", "full_autonomous")
    assert deployment["schedules"][0]["interval"] > 0 and deployment["work_pool"]["name"]


def test_serve_command_is_registered_and_reports_bad_config(tmp_path):
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # two commands: `serve` stays a sub-command

    shown = CliRunner().invoke(app, ["serve", "--help"])
    failed = CliRunner().invoke(app, ["serve", "--config", str(tmp_path / "missing.yaml")])

    assert shown.exit_code == 0
    for option in ("--config", "--name", "--interval-minutes", "--path"):
        assert option in shown.output
    assert failed.exit_code == 1 and "config file not found" in failed.output
