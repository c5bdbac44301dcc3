"""The process registry: real tool processes, a SIGKILLed owner, a reused pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from mendflow.infra.layout import StateLayout
from mendflow.infra.owned_processes import (
    ProcRecord,
    is_alive,
    kill_orphan,
    orphans,
    procs_dir,
    read_records,
    register_prefect_server,
    unregister_process,
)
from mendflow.infra.runner import run_process
from tests.helpers.prefect_db import seed_prefect_home

OWNER = textwrap.dedent("""
    from pathlib import Path
    from mendflow.infra.runner import run_process
    print("running", flush=True)
    run_process(["sleep", "600"], cwd=Path("."), timeout_s=900)
""")


def wait_for(predicate, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def dead_pid() -> tuple[int, float]:
    """A pid and create time of a process that has ended (and was reaped)."""
    proc = subprocess.Popen(["true"])
    created = psutil.Process(proc.pid).create_time()
    proc.wait()
    return proc.pid, created


@pytest.fixture
def reap():
    """Kill (by group) every process whose pid a test appends, if it still runs at the end."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def test_a_tool_run_is_registered_while_it_runs_and_unregistered_after(tmp_path):
    home = Path(os.environ["MENDFLOW_HOME"]).resolve()
    # the tool reads its own record: proof it exists while the tool runs
    script = ('f="$MENDFLOW_HOME/procs/$$.json"; for i in $(seq 100); do [ -f "$f" ] && break; '
              'sleep 0.05; done; cat "$f"')
    result = run_process(["sh", "-c", script], cwd=tmp_path, timeout_s=30)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["argv"] == ["sh", "-c", script]
    assert record["owner_pid"] == os.getpid()
    assert record["pgid"] == record["pid"]  # its own session, its own group
    assert record["owner_create_time"] == pytest.approx(psutil.Process().create_time())
    assert list((home / "procs").glob("*.json")) == []


def test_a_registry_that_cannot_be_written_never_fails_the_tool(tmp_path, caplog):
    procs = Path(os.environ["MENDFLOW_HOME"]) / "procs"
    procs.write_text("a file where the directory should be")
    result = run_process(["sh", "-c", "sleep 0.2; echo fine"], cwd=tmp_path, timeout_s=30)
    assert result.returncode == 0 and result.stdout.strip() == "fine"
    assert "could not record process" in caplog.text


def test_a_killed_owner_leaves_an_orphan_that_is_found_and_killed(tmp_path, reap):
    owner = subprocess.Popen([sys.executable, "-c", OWNER], cwd=tmp_path, stdout=subprocess.PIPE,
                             text=True)
    assert owner.stdout is not None and owner.stdout.readline().strip() == "running"
    (record,) = wait_for(lambda: [r for r in read_records(home()) if r.argv[:1] == ("sleep",)])
    reap.append(record.pid)
    assert record.owner_pid == owner.pid
    assert orphans(home()) == []  # its owner still runs: not an orphan
    assert kill_orphan(record) is False and is_alive(record.pid, record.create_time)

    owner.send_signal(signal.SIGKILL)
    owner.wait()
    (orphan,) = orphans(home())
    assert orphan.pid == record.pid and orphan.argv == ("sleep", "600")
    assert is_alive(orphan.pid, orphan.create_time)

    assert kill_orphan(orphan, grace_s=5) is True
    assert not is_alive(orphan.pid, orphan.create_time)
    assert read_records(home()) == [] and orphans(home()) == []


def test_a_pid_alive_with_another_create_time_is_never_killed(tmp_path, reap):
    victim = subprocess.Popen(["sleep", "600"], start_new_session=True)
    reap.append(victim.pid)
    owner_pid, owner_created = dead_pid()
    created = psutil.Process(victim.pid).create_time()
    directory = procs_dir(home())
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{victim.pid}.json"
    record = ProcRecord(pid=victim.pid, pgid=victim.pid, create_time=created - 500,
                        owner_pid=owner_pid, owner_create_time=owner_created, argv=("sleep", "600"),
                        started_at="2020-01-01T00:00:00+00:00", path=path)
    path.write_text(record.model_dump_json())

    assert kill_orphan(record, grace_s=0.5) is False
    assert victim.poll() is None  # still running: a reused pid is never signalled
    path.write_text(record.model_dump_json())
    assert orphans(home()) == []  # not the recorded process: the record is stale and dropped
    assert not path.exists()
    assert victim.poll() is None
    victim.kill()
    victim.wait()


def test_a_record_of_an_ended_process_is_cleaned(tmp_path):
    pid, created = dead_pid()
    me = psutil.Process()
    directory = procs_dir(home())
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{pid}.json"
    path.write_text(ProcRecord(pid=pid, pgid=pid, create_time=created, owner_pid=me.pid,
                               owner_create_time=me.create_time(), argv=("true",),
                               started_at="2020-01-01T00:00:00+00:00").model_dump_json())
    assert orphans(home()) == []
    assert not path.exists()


def test_unregister_leaves_a_record_that_a_reused_pid_wrote(tmp_path):
    pid, created = dead_pid()
    me = psutil.Process()
    directory = procs_dir(home())
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{pid}.json"
    ours = ProcRecord(pid=pid, pgid=pid, create_time=created, owner_pid=me.pid,
                      owner_create_time=me.create_time(), started_at="2020-01-01T00:00:00+00:00",
                      path=path)
    path.write_text(ours.model_copy(update={"create_time": created + 100}).model_dump_json())
    unregister_process(ours)
    assert path.exists()
    path.write_text(ours.model_dump_json())
    unregister_process(ours)
    assert not path.exists()


def test_the_session_prefect_server_is_registered_and_not_an_orphan(prefect_harness):
    records = register_prefect_server(home())
    assert records, "prefect_test_harness runs a temporary uvicorn server as a child"
    assert all(r.kind == "prefect-server" and r.owner_pid == os.getpid() for r in records)
    assert any("uvicorn" in " ".join(psutil.Process(r.pid).cmdline()) for r in records)
    assert orphans(home()) == []
    for record in records:
        unregister_process(record)
    assert read_records(home()) == []


SERVER_OWNER = textwrap.dedent("""
    import time
    from prefect.server.api.server import SubprocessASGIServer
    from mendflow.infra.layout import StateLayout
    from mendflow.infra.owned_processes import register_prefect_server
    SubprocessASGIServer().start(timeout=120)
    print(len(register_prefect_server(StateLayout.resolve())), flush=True)
    time.sleep(600)
""")

home = StateLayout.resolve  # the $MENDFLOW_HOME layout (isolated per test by conftest)


@pytest.mark.slow
def test_the_temporary_prefect_server_of_a_killed_mendflow_is_found_and_stopped(tmp_path):
    env = {**os.environ, "PREFECT_HOME": str(seed_prefect_home(tmp_path / "prefect")),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    env.pop("PREFECT_API_URL", None)
    owner = subprocess.Popen([sys.executable, "-c", SERVER_OWNER], env=env, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "1"
        (record,) = read_records(home())
        assert record.kind == "prefect-server" and record.pgid != record.pid
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    (orphan,) = orphans(home())
    assert orphan.pid == record.pid
    assert kill_orphan(orphan, grace_s=10) is True
    assert not is_alive(record.pid, record.create_time)
    assert read_records(home()) == []
