"""The `mendflow` console script, run as a real subprocess against a real Prefect API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.git import git, write_files
from tests.helpers.target import target_python

MENDFLOW = [sys.executable, "-m", "mendflow.cli"]


@pytest.fixture
def cli_env(prefect_harness, tmp_path):
    """Run the CLI against the harness's API (saves starting an ephemeral server)."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "MENDFLOW_HOME": str(tmp_path / "home")}
    return env


def run_cli(args, env, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MENDFLOW, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def interpreter_config(tmp_path: Path) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({
        "environment": {"type": "interpreter", "python": target_python()},
        "tools": {"mypy": {"enabled": False}},
        "mission": {"max_iterations": 1, "target_score": 100},
    }))
    return path


@pytest.fixture(scope="module")
def json_mission(prefect_harness, tmp_path_factory):
    """One ``mendflow mission run --json`` for the module (its stdout, the repository and the
    environment it ran in): the JSON test reads it, the rollback test then rolls it back."""
    from prefect.settings import PREFECT_API_URL

    tmp_path = tmp_path_factory.mktemp("cli-mission")
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "MENDFLOW_HOME": str(tmp_path / "home")}
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write_files(repo, {"pkg/__init__.py": "", "pkg/lib.py": "import os\n\n\ndef f():\n    return 1\n",
                       "tests/test_lib.py": "from pkg.lib import f\n\n\ndef test_f():\n"
                                            "    assert f() == 1\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    proc = run_cli(["mission", "run", str(repo), "--config", str(interpreter_config(tmp_path)),
                    "--json", "--mission-id", "cli-json"], env)
    return proc, repo, env


def test_json_output_is_the_only_thing_on_stdout(json_mission):
    proc, repo, _ = json_mission

    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # stdout is exactly one JSON document
    assert data["mission_id"] == "cli-json" and data["status"] == "completed"
    assert set(data) >= {"mission_id", "flow_run_id", "status", "repository", "base_commit",
                         "branch", "findings", "patches", "quality_score", "report_dir"}
    assert set(data["quality_score"]) == {"before", "after"}
    assert data["patches"][0]["status"] == "accepted" and data["patches"][0]["commit"]
    saved = json.loads((Path(data["report_dir"]) / "session_data.json").read_text())
    assert saved == data
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("case", ["not-a-repo", "bad-yaml", "unknown-field", "missing-path"])
def test_bad_input_gets_one_clear_line_and_no_traceback(case, make_repo, tmp_path, cli_env):
    repo = make_repo({"a.py": "x = 1\n"})
    target, extra = str(repo), []
    if case == "not-a-repo":
        (tmp_path / "plain").mkdir()
        target = str(tmp_path / "plain")
    elif case == "bad-yaml":
        (tmp_path / "c.yaml").write_text("mission: [unclosed\n")
        extra = ["--config", str(tmp_path / "c.yaml")]
    elif case == "unknown-field":
        (tmp_path / "c.yaml").write_text("tools:\n  ruff:\n    enabeld: false\n")
        extra = ["--config", str(tmp_path / "c.yaml")]
    else:  # a long path must reach the terminal in one piece, to copy it
        target = str(tmp_path / ("deep-" * 30) / "does-not-exist")

    proc = run_cli(["mission", "run", target, *extra], cli_env)

    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert "error:" in proc.stderr
    expected = {"not-a-repo": "git", "bad-yaml": "YAML", "unknown-field": "enabeld",
                "missing-path": f"{target}: path does not exist"}[case]
    assert expected in proc.stderr


def test_rollback_moves_the_mission_branch_back(json_mission):
    """(After the JSON test: it rolls back the module's mission.)"""
    proc, repo, cli_env = json_mission
    data = json.loads(proc.stdout)
    assert git(repo, "rev-parse", "mendflow/cli-json") != data["base_commit"]

    proc = run_cli(["mission", "rollback", "cli-json"], cli_env)

    assert proc.returncode == 0, proc.stderr
    assert git(repo, "rev-parse", "mendflow/cli-json") == data["base_commit"]
    # the mission's commits, then the revert, are in the audit trail; the store marks them
    from mendflow.infra import audit
    from mendflow.infra.outcomes import OutcomeStore

    home = Path(cli_env["MENDFLOW_HOME"])
    whats = [e["what"] for e in audit.read(home, mission="cli-json")]
    assert whats[0] == "config-change" and whats[-1] == "revert" and "commit" in whats
    assert audit.verify(home).ok
    counts = OutcomeStore.open(None, home).outcome_counts(str(repo))
    accepted = [p for p in data["patches"] if p["status"] == "accepted"]
    assert counts.get("merge:reverted", 0) >= len(accepted) > 0  # a row per finding
    unknown = run_cli(["mission", "rollback", "no-such-mission"], cli_env)
    assert unknown.returncode == 1 and "no-such-mission" in unknown.stderr
