"""Ctrl-C in a terminal, and the death of Prefect's temporary API server.

Each test runs the real CLI as a subprocess leading its own session, with no
``PREFECT_API_URL`` (the temporary API server of a user's first run), and
signals it as a terminal does: ``os.killpg(pgid, SIGINT)`` reaches the CLI
and everything left in its process group. The target's test blocks while a
gate file exists (``CTRL_C_TEST_GATE``: every run; ``CTRL_C_PATCHED_GATE``: only a
run of the patched tree, so that a fast baseline cannot slip past it), so that the
signal lands inside the baseline's or the candidate's test run; the resumed mission
runs with the gate removed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from mendflow.infra.layout import StateLayout
from mendflow.infra.missions import read_mission
from tests.helpers.git import git
from tests.helpers.prefect import unrecorded_task_runs
from tests.helpers.prefect_db import seed_prefect_home
from tests.helpers.prefect_env import client_env
from tests.helpers.target import target_python

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "mendflow.cli"]
FILES = {
    "pkg/__init__.py": "",
    "pkg/a.py": "import os\n\n\ndef one():\n    return 1\n",
    "tests/test_a.py": (
        "import os\nimport pathlib\nimport time\n\nimport pkg.a\nfrom pkg.a import one\n\n\n"
        "def blocked():\n"
        "    gate = os.environ.get('CTRL_C_TEST_GATE')\n"
        "    patched = 'import os' not in pathlib.Path(pkg.a.__file__).read_text()\n"
        "    on_patch = os.environ.get('CTRL_C_PATCHED_GATE')\n"
        "    return bool(gate and os.path.exists(gate)) or bool(\n"
        "        patched and on_patch and os.path.exists(on_patch))\n\n\n"
        "def test_one():\n"
        "    deadline = time.monotonic() + 120\n"
        "    while blocked() and time.monotonic() < deadline:\n"
        "        time.sleep(0.1)\n"
        "    assert one() == 1\n"),
}
NOISE = ("Traceback", "EventsWorker", "ConnectError", "failed to process item")


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory) -> Path:
    """One PREFECT_HOME for the module, its database migrated already (the temporary API
    servers of the CLI runs start on it; what a first run on an empty home does is
    tests/infra/test_prefect_api.py's)."""
    return seed_prefect_home(tmp_path_factory.mktemp("ctrl-c-prefect"))


@pytest.fixture
def cli_env(prefect_home, tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update(client_env())  # the suite's CA file: no API URL
    # the CLI's temporary server records task runs: resume() checks that none was lost
    env["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED"] = "true"
    env.update(PREFECT_HOME=str(prefect_home), MENDFLOW_HOME=str(tmp_path / "home"),
               CTRL_C_TEST_GATE=str(tmp_path / "gate"),
               CTRL_C_PATCHED_GATE=str(tmp_path / "gate-on-patch"))
    return env


def write_config(tmp_path: Path, **approval) -> Path:
    data = {"environment": {"type": "interpreter", "python": target_python()},
            "tools": {"mypy": {"enabled": False}, "bandit": {"enabled": False}},
            "mission": {"max_iterations": 1, "target_score": 100}}
    if approval:
        data["approval"] = {"poll_interval_s": 1, **approval}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Cli:
    """A CLI subprocess in its own session, its stderr read line by line."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines: list[str] = []
        self.stdout = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._out = threading.Thread(target=self._read_stdout, daemon=True)
        self._out.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def _read_stdout(self) -> None:
        self.stdout = self.proc.stdout.read()

    def wait_for(self, pattern: str, timeout_s: float = 300) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.lines:
                found = re.search(pattern, line)
                if found:
                    return found
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.lines}"
            time.sleep(0.1)
        raise AssertionError(f"never saw {pattern!r}: {self.lines}")

    def exit_after(self, action) -> float:
        """Run ``action``, then return the seconds until the CLI exited."""
        start = time.monotonic()
        action()
        self.proc.wait(timeout=60)
        elapsed = time.monotonic() - start
        self._reader.join(10)
        self._out.join(10)
        return elapsed

    def interrupt(self) -> float:
        """Ctrl-C as a terminal sends it: SIGINT to the whole process group."""
        return self.exit_after(lambda: os.killpg(self.proc.pid, signal.SIGINT))

    def api_server(self) -> psutil.Process:
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            if any("uvicorn" in word for word in child.cmdline()):
                return child
        raise AssertionError("no temporary Prefect API server among the CLI's children")


def assert_one_line_stop(cli: Cli, before: int, pattern: str) -> str:
    """The lines printed after the signal: exactly one, matching ``pattern``, no dump."""
    after = cli.lines[before:]
    assert len(after) == 1, after
    assert re.search(pattern, after[0]), after[0]
    text = "\n".join(cli.lines)
    assert not any(noise in text for noise in NOISE), text[-3000:]
    return after[0]


def resume(mission_id: str, env: dict[str, str]) -> dict:
    done = subprocess.run([*CLI, "mission", "resume", mission_id, "--json"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 2), done.stderr[-3000:]
    data = json.loads(done.stdout)
    assert data["status"] == "completed"
    assert [p["status"] for p in data["patches"]].count("accepted") == 1
    # the replay's task runs, most of them cached, outrun the temporary server's recorder:
    # the CLI lets it record them all before stopping it
    logged, lost = unrecorded_task_runs(env["PREFECT_HOME"], data["flow_run_id"])
    assert logged > 10 and lost == 0, (logged, lost)
    return data


def tools_of(env: dict[str, str]) -> list[psutil.Process]:
    """The live tool processes started for this test (their environment carries its gate)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("CTRL_C_TEST_GATE") == env["CTRL_C_TEST_GATE"] and \
                    proc.status() != psutil.STATUS_ZOMBIE and "pytest" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_ctrl_c_during_detection_then_the_api_servers_death_and_resume_finishes(
        make_repo, tmp_path, cli_env):
    """Ctrl-C during the baseline: exit 130 in one line; then the resumed mission's temporary
    API server is killed during the baseline again: exit 1 in one line; then the resume,
    with the gate gone, finishes (two stops of one mission share its set-up)."""
    repo = make_repo(FILES)
    gate = Path(cli_env["CTRL_C_TEST_GATE"])
    gate.touch()
    cli = Cli(["mission", "run", str(repo), "--config", str(write_config(tmp_path)),
               "--mission-id", "ctrl-c-detect"], cli_env)
    cli.wait_for("measuring baseline")
    deadline = time.monotonic() + 60
    while not tools_of(cli_env) and time.monotonic() < deadline:
        time.sleep(0.1)  # the baseline's test run has started
    server = cli.api_server()
    before = len(cli.lines)

    elapsed = cli.interrupt()

    assert cli.proc.returncode == 130 and elapsed <= 10, (cli.proc.returncode, elapsed)
    assert_one_line_stop(cli, before, r"mission ctrl-c-detect stopped during detect "
                                      r"\(measuring baseline\).*mendflow mission resume "
                                      r"ctrl-c-detect$")
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
    assert not tools_of(cli_env)
    layout = StateLayout.resolve(cli_env["MENDFLOW_HOME"])
    assert read_mission("ctrl-c-detect", layout).interrupted == "SIGINT"  # list: Ctrl-C

    # the death of the temporary API server (the gate still blocks the baseline's tests)
    cli = Cli(["mission", "resume", "ctrl-c-detect"], cli_env)
    cli.wait_for("measuring baseline")
    server = cli.api_server()
    before = len(cli.lines)

    elapsed = cli.exit_after(server.kill)

    assert cli.proc.returncode == 1 and elapsed <= 15, (cli.proc.returncode, elapsed)
    assert_one_line_stop(cli, before, r"Prefect's temporary API server \(pid \d+\) was killed "
                                      r"by signal 9; mission ctrl-c-detect stopped during "
                                      r"detect .*mendflow mission resume ctrl-c-detect$")
    assert not tools_of(cli_env)

    gate.unlink()
    resume("ctrl-c-detect", cli_env)
    assert read_mission("ctrl-c-detect", layout).interrupted is None


def test_ctrl_c_during_validation_rolls_back_and_resume_finishes(make_repo, tmp_path, cli_env):
    repo = make_repo(FILES)
    gate = Path(cli_env["CTRL_C_PATCHED_GATE"])
    gate.touch()  # the candidate's test run blocks (the patched pkg/a.py), not the baseline's
    cli = Cli(["mission", "run", str(repo), "--config", str(write_config(tmp_path)),
               "--mission-id", "ctrl-c-validate"], cli_env)
    cli.wait_for("measuring candidate")
    time.sleep(1.0)
    before = len(cli.lines)

    elapsed = cli.interrupt()

    assert cli.proc.returncode == 130 and elapsed <= 10, (cli.proc.returncode, elapsed)
    assert_one_line_stop(cli, before, r"mission ctrl-c-validate stopped during detect "
                                      r"\(measuring candidate .*mendflow mission resume "
                                      r"ctrl-c-validate$")
    worktree = Path(cli_env["MENDFLOW_HOME"]) / "worktrees" / "ctrl-c-validate"
    assert git(worktree, "status", "--porcelain", "--untracked-files=no") == ""  # rolled back
    gate.unlink()
    data = resume("ctrl-c-validate", cli_env)
    assert git(worktree, "status", "--porcelain", "--untracked-files=no") == ""
    assert data["patches"][0]["commit"]


def test_ctrl_c_during_the_approval_wait_and_resume_then_approve(make_repo, tmp_path, cli_env):
    repo = make_repo(FILES)
    config = write_config(tmp_path, autonomy="interactive")
    cli = Cli(["mission", "run", str(repo), "--config", str(config),
               "--mission-id", "ctrl-c-approve"], cli_env)
    cli.wait_for(r"wait for approval")
    time.sleep(1.0)
    before = len(cli.lines)

    elapsed = cli.interrupt()

    assert cli.proc.returncode == 130 and elapsed <= 10, (cli.proc.returncode, elapsed)
    assert_one_line_stop(cli, before, r"mission ctrl-c-approve stopped during approve .*"
                                      r"mendflow mission resume ctrl-c-approve$")
    assert git(repo, "log", "--format=%s", "-1") == "initial"  # nothing delivered
    resumed = Cli(["mission", "resume", "ctrl-c-approve", "--json"], cli_env)
    try:
        run_id = resumed.wait_for(r"`mendflow approve ([0-9a-f-]{36})`").group(1)
        approve = subprocess.run([*CLI, "approve", run_id, "--comment", "ok"], env=cli_env,
                                 capture_output=True, text=True, timeout=300)
        assert approve.returncode == 0, approve.stderr[-3000:]
        resumed.proc.wait(timeout=300)
    finally:
        if resumed.proc.poll() is None:  # never leave a mission waiting for an answer
            os.killpg(resumed.proc.pid, signal.SIGINT)
            resumed.proc.wait(timeout=60)
    resumed._out.join(10)
    assert resumed.proc.returncode in (0, 2), resumed.lines[-20:]
    data = json.loads(resumed.stdout)
    assert data["status"] == "completed"
    assert git(repo, "log", "--format=%s", "-1") != "initial"  # delivered after the approval
