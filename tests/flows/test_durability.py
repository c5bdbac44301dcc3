"""One mission per repository, a clean stop on SIGINT, and the low-disk pause."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from mendflow.core.errors import MissionLocked
from mendflow.flows.mission import maintenance_mission
from tests.helpers.git import git
from tests.helpers.target import target_python

FILES = {
    "pkg/__init__.py": "",
    "pkg/a.py": "import os\nimport sys\n\n\ndef one():\n    return 1\n",
    "tests/test_a.py": "from pkg.a import one\n\n\ndef test_one():\n    assert one() == 1\n",
}
CLI = [sys.executable, "-m", "mendflow.cli"]


def config_file(tmp_path: Path, **health) -> Path:
    path = tmp_path / "cfg.yaml"
    data = {"environment": {"type": "interpreter", "python": target_python()},
            "tools": {"mypy": {"enabled": False}},
            "mission": {"max_iterations": 1, "target_score": 100}}
    if health:
        data["health"] = health
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def cli_env(prefect_harness, tmp_path):
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
            "MENDFLOW_HOME": str(tmp_path / "home")}


def test_second_mission_on_a_repository_is_refused_naming_the_first(
        prefect_harness, make_repo, tmp_path):
    repo = make_repo(FILES)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from mendflow.infra.layout import StateLayout
        from mendflow.infra.lock import MissionLock
        with MissionLock({str(repo)!r}, "first-mission", StateLayout.resolve()):
            print("held", flush=True)
            time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(MissionLocked, match="first-mission"):
            maintenance_mission(path=str(repo), config_file=str(config_file(tmp_path)),
                                mission_id="second-mission")
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead now: its lock is stale and taken over
    result = maintenance_mission(path=str(repo), config_file=str(config_file(tmp_path)),
                                 mission_id="third-mission")
    assert result.status == "completed"


@pytest.mark.slow
def test_sigint_stops_cleanly_with_130_and_the_mission_resumes(make_repo, tmp_path, cli_env):
    repo = make_repo(FILES)
    proc = subprocess.Popen([*CLI, "mission", "run", str(repo), "--config",
                             str(config_file(tmp_path)), "--mission-id", "interrupted"],
                            env=cli_env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line or any(step in line for step in ("measuring candidate", "reach the change",
                                                     "measuring batch")):
            break
    time.sleep(0.5)  # inside the candidate's validation
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)

    assert proc.returncode == 130
    worktree = Path(cli_env["MENDFLOW_HOME"]) / "worktrees" / "interrupted"
    assert git(worktree, "status", "--porcelain", "--untracked-files=no") == ""  # rolled back
    resumed = subprocess.run([*CLI, "mission", "resume", "interrupted", "--json"], env=cli_env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode in (0, 2), resumed.stderr
    data = json.loads(resumed.stdout)
    assert data["status"] == "completed"
    assert [p["status"] for p in data["patches"]].count("accepted") >= 1


def test_low_disk_pauses_and_the_mission_resumes_when_space_is_back(
        prefect_harness, make_repo, tmp_path):
    repo = make_repo(FILES)
    config = config_file(tmp_path, min_free_disk_mb=10**9, warn_free_disk_mb=10**9)

    paused = maintenance_mission(path=str(repo), config_file=str(config), mission_id="low-disk")

    assert paused.status == "paused" and paused.exit_code == 3
    assert "low disk space" in paused.stop_reason and "mission resume low-disk" in \
        paused.stop_reason
    assert paused.patches == ()
    config.write_text(config.read_text().replace("1000000000", "1"))
    from mendflow.infra.flow_runs import resume_parameters
    from mendflow.infra.layout import StateLayout

    resumed = maintenance_mission(**resume_parameters("low-disk", StateLayout.resolve()))
    assert resumed.status == "completed" and resumed.exit_code in (0, 2)
    assert any(p.status == "accepted" for p in resumed.patches)
