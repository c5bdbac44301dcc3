"""Crash and resume: a real mission subprocess is SIGKILLed, then `mendflow mission resume`
finishes it as if nothing had happened (same accepted patches, same tree, fixer not re-asked)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import pytest
import yaml

from mendflow.core.checkpoint import CHECKPOINT_FILE, LedgerCheckpoint
from mendflow.infra import audit
from mendflow.infra.flow_runs import read_task_runs
from mendflow.tasks.vcs import snapshot_checkout
from tests.helpers.git import git, write_files
from tests.helpers.processes import kill_when
from tests.helpers.target import target_python

pytestmark = pytest.mark.slow

FILES = {
    "pkg/__init__.py": "",
    "pkg/a.py": "import os\nimport sys\n\n\ndef one():\n    return 1\n",
    "pkg/b.py": "import json\n\n\ndef two():\n    x = 1\n    if x == None:\n        return 0\n"
                "    return 2\n",
    "pkg/c.py": "from typing import List\n\n\ndef three(xs: List[int]) -> int:\n"
                "    return len(xs) + 2\n",
    "tests/test_pkg.py": "from pkg.a import one\nfrom pkg.b import two\nfrom pkg.c import three\n\n\n"
                         "def test_all():\n    assert one() + two() + three([]) == 5\n",
}
CLI = [sys.executable, "-m", "mendflow.cli"]


def _env(home: Path) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "MENDFLOW_HOME": str(home)}


@pytest.fixture
def env(recording_api, tmp_path):
    """The CLI's environment: the module's API (its server records task runs: the tests
    read them back), a MENDFLOW_HOME of the test's own."""
    return _env(tmp_path / "home")


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume-config") / "cfg.yaml"
    path.write_text(yaml.safe_dump({
        "environment": {"type": "interpreter", "python": target_python()},
        "tools": {"mypy": {"enabled": False}},
        "mission": {"max_iterations": 2, "target_score": 100},
    }))
    return path


def start(args, env) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(args, env) -> dict:
    proc = subprocess.run([*CLI, *args, "--json"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode in (0, 2), proc.stderr
    return json.loads(proc.stdout)


def listed_missions(env, monkeypatch) -> list[dict]:
    """``mendflow mission list --json`` run in this process (typer's CliRunner), on the
    mission's MENDFLOW_HOME and this session's Prefect API: a CLI subprocess would only
    add its ~3 CPU-seconds of imports (the command is the same code)."""
    from typer.testing import CliRunner

    from mendflow.cli import app

    for key in ("PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK",
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
                "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "PREFECT_LOGGING_HANDLERS_DEBUG_LEVEL"):
        monkeypatch.setenv(key, os.environ[key]) if key in os.environ \
            else monkeypatch.delenv(key, raising=False)  # restored after the test
    out = CliRunner().invoke(app, ["mission", "list", "--json"],
                             env={"MENDFLOW_HOME": env["MENDFLOW_HOME"],
                                  "PREFECT_API_URL": env["PREFECT_API_URL"]})
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def task_runs(flow_run_ids: list[str]):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return read_task_runs(client, flow_run_ids)


def executed(runs, prefix: str) -> int:
    """Task runs of that name that really ran (Completed, not served from the cache)."""
    return sum(1 for r in runs if r.name.startswith(prefix) and r.state
               and r.state.is_completed() and r.state.name != "Cached")


def mission_runs(env, mission_id: str) -> list[str]:
    record = Path(env["MENDFLOW_HOME"]) / "missions" / mission_id / "mission.json"
    return json.loads(record.read_text())["flow_run_ids"]


@pytest.fixture(scope="module")
def reference(recording_api, config, tmp_path_factory):
    """An uninterrupted mission on an identical repository (one for the module), and the
    environment it ran in (its own MENDFLOW_HOME)."""
    root = tmp_path_factory.mktemp("resume-reference")
    repo = root / "reference"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write_files(repo, FILES)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    env = _env(root / "home")
    result = finish(["mission", "run", str(repo), "--config", str(config),
                     "--mission-id", "ref-run"], env)
    runs = task_runs([result["flow_run_id"]])
    return repo, result, runs, env


def settled_task_runs(flow_run_id: str, quiet_s: float = 1.0, timeout_s: float = 30.0):
    """The flow run's task runs, once the server has recorded them all (their count stays
    the same for ``quiet_s`` seconds)."""
    runs, deadline = task_runs([flow_run_id]), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        again = task_runs([flow_run_id])
        if len(again) == len(runs):
            return again
        runs = again
    return runs


def named(runs, prefix: str) -> int:
    """Task runs of that name, whatever their state (run again or served from the cache)."""
    return sum(1 for r in runs if r.name.startswith(prefix))


def read_checkpoint(env, mission_id: str) -> LedgerCheckpoint | None:
    path = Path(env["MENDFLOW_HOME"]) / "missions" / mission_id / CHECKPOINT_FILE
    return LedgerCheckpoint.model_validate_json(path.read_text()) if path.exists() else None


def kill_after_checkpoint(proc: subprocess.Popen[str], env, mission_id: str,
                          timeout_s: float = 300) -> None:
    """SIGKILL the mission once its checkpoint holds an accepted commit (its first
    confirmed batch), as a crash would."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            checkpoint = read_checkpoint(env, mission_id)
        except ValueError:  # a file being replaced is never partial, but be patient
            checkpoint = None
        if checkpoint and any(o.status == "accepted" for o in checkpoint.outcomes):
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


@pytest.mark.parametrize("marker, nth, delay_s", [
    ("checkpoint", 1, 0.0),             # after the first confirmed batch (its checkpoint)
    ("candidate ", 2, 0.0),             # between two validations
    ("commit accepted ", 1, 0.0),       # just after a commit
])
def test_killed_mission_resumes_to_the_same_result(make_repo, config, env, reference, marker,
                                                   nth, delay_s, monkeypatch):
    ref_repo, ref, ref_runs, _ = reference
    repo = make_repo(FILES, name="target")
    (repo / "notes.txt").write_text("the user's own untracked work\n")
    before = snapshot_checkout(repo)
    mission = "crash-" + marker.split()[0]

    proc = start(["mission", "run", str(repo), "--config", str(config), "--mission-id", mission],
                 env)
    if marker == "checkpoint":
        kill_after_checkpoint(proc, env, mission)
    else:
        kill_when(proc, marker, nth, delay_s)
    checkpoint = read_checkpoint(env, mission)
    made_before = git(repo, "rev-parse", f"mendflow/{mission}")
    row = next(r for r in listed_missions(env, monkeypatch) if r["mission_id"] == mission)
    assert row["status"] == "crashed"

    resumed = finish(["mission", "resume", mission], env)

    # the same accepted patches, the same tree on the mission branch
    accepted = sorted(p["title"] for p in resumed["patches"] if p["status"] == "accepted")
    assert accepted == sorted(p["title"] for p in ref["patches"] if p["status"] == "accepted")
    assert git(repo, "rev-parse", f"mendflow/{mission}^{{tree}}") == \
        git(ref_repo, "rev-parse", "mendflow/ref-run^{tree}")
    assert resumed["quality_score"] == ref["quality_score"]
    # no repeated commit: one commit per accepted patch on top of the base
    log = git(repo, "rev-list", f"{resumed['base_commit']}..mendflow/{mission}").split()
    assert len(log) == len(accepted)
    assert made_before in log or made_before == resumed["base_commit"]  # re-used, not re-made
    assert git(repo, "for-each-ref", f"refs/mendflow/{mission}/replay") == ""
    # the steps before the checkpoint were not replayed: only the commits after it were made
    kept = sum(o.status == "accepted" for o in checkpoint.outcomes) if checkpoint else 0
    if marker == "checkpoint":
        assert kept >= 1
    assert named(settled_task_runs(resumed["flow_run_id"]), "commit-accepted-patch") == \
        len(accepted) - kept
    # the audit trail records each accepted commit once, however often it was replayed
    trail = audit.read(Path(env["MENDFLOW_HOME"]), mission)
    assert sorted(e["details"]["commit"] for e in trail if e["what"] == "commit") == \
        sorted(p["commit"] for p in resumed["patches"] if p["status"] == "accepted")
    # the fixer was not asked more often than in the uninterrupted mission
    runs = task_runs(mission_runs(env, mission))
    assert executed(runs, "propose-patch") <= executed(ref_runs, "propose-patch")
    # the crashed flow run was marked Crashed, and the user's checkout is untouched
    from prefect.client.orchestration import get_client

    first = mission_runs(env, mission)[0]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(UUID(first)).state.type.value == "CRASHED"
    assert snapshot_checkout(repo) == before


def test_resume_of_a_finished_mission_reuses_everything(reference):
    repo, first, _, env = reference
    history = next((Path(env["MENDFLOW_HOME"]) / "history").glob("*.json")).read_text()
    again = finish(["mission", "resume", "ref-run"], env)

    assert again["patches"] == first["patches"]
    assert git(repo, "rev-parse", "mendflow/ref-run") == \
        next(p["commit"] for p in reversed(first["patches"]) if p["status"] == "accepted")
    runs = settled_task_runs(again["flow_run_id"])
    for tool in ("run-pytest", "run-ruff", "run-bandit", "propose-patch"):
        assert executed(runs, tool) == 0, tool  # every tool run and proposal came from the cache
    # restored from the final checkpoint: no step of the cycle was replayed
    for step in ("propose-patch", "apply-patch", "check-patch-syntax", "judge-patch",
                 "commit-accepted-patch"):
        assert named(runs, step) == 0, step
    # the replayed tool runs' durations were not recorded a second time
    assert next((Path(env["MENDFLOW_HOME"]) / "history").glob("*.json")).read_text() == history


def test_killed_llm_mission_resumes_without_repeating_a_model_call(make_repo, tmp_path, env,
                                                                   fake_anthropic):
    from tests.fixtures.bugs import load_bug, project_files
    from tests.helpers.llm import route_by_test

    bugs = ("wrong_operator", "off_by_one")
    fake_anthropic.respond_with(route_by_test({name: load_bug(name).fix for name in bugs}))
    llm_env = {**env, "ANTHROPIC_API_KEY": "sk-ant-resume-test-key"}
    config = tmp_path / "llm.yaml"
    config.write_text(yaml.safe_dump({
        "environment": {"type": "interpreter", "python": target_python()},
        "tools": {"mypy": {"enabled": False}},
        "fixer": {"type": "anthropic", "base_url": fake_anthropic.root_url, "model": "claude-test"},
        "mission": {"max_iterations": 2, "target_score": 100},
    }))
    files = project_files(*bugs)

    ref_repo = make_repo(files, name="llm-reference")
    ref = finish(["mission", "run", str(ref_repo), "--config", str(config),
                  "--mission-id", "llm-ref"], llm_env)
    ref_calls = len(fake_anthropic.requests)
    assert sum(p["status"] == "accepted" for p in ref["patches"]) == 2 and ref_calls == 2

    repo = make_repo(files, name="llm-target")
    proc = start(["mission", "run", str(repo), "--config", str(config), "--mission-id",
                  "llm-crash"], llm_env)
    kill_when(proc, "commit accepted ", 1)
    resumed = finish(["mission", "resume", "llm-crash"], llm_env)

    assert len(fake_anthropic.requests) - ref_calls <= ref_calls  # no model call repeated
    assert sorted(p["title"] for p in resumed["patches"] if p["status"] == "accepted") == \
        sorted(p["title"] for p in ref["patches"] if p["status"] == "accepted")
    assert git(repo, "rev-parse", "mendflow/llm-crash^{tree}") == \
        git(ref_repo, "rev-parse", "mendflow/llm-ref^{tree}")
    assert resumed["llm_usage"]["calls"] == ref["llm_usage"]["calls"]
