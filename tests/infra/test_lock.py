"""The mission lock, with real processes holding it, dying, and pids reused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from mendflow.core.errors import MissionLocked
from mendflow.infra.layout import StateLayout
from mendflow.infra.lock import LockInfo, MissionLock, is_stale, lock_path, read_locks, repo_key

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mendflow.infra.layout import StateLayout
    from mendflow.infra.lock import MissionLock
    with MissionLock(Path(sys.argv[1]), sys.argv[2], StateLayout.resolve()):
        print("locked", flush=True)
        time.sleep(600)
""")

home = StateLayout.resolve  # the $MENDFLOW_HOME layout (isolated per test by conftest)


@pytest.fixture
def repo(make_repo) -> Path:
    return make_repo({"pkg/a.py": "x = 1\n"})


@pytest.fixture
def holder(repo):
    """A live `python -c` process holding the lock of ``repo`` for mission ``held-1``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(repo), "held-1"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield proc
    proc.kill()
    proc.wait()


def test_acquire_writes_the_lock_and_release_removes_it(repo):
    path = lock_path(repo, home())
    assert path.name == f"{repo_key(repo)}.json" and len(repo_key(repo)) == 16
    with MissionLock(repo, "m-one", home()) as lock:
        data = json.loads(path.read_text())
        assert data["mission_id"] == "m-one"
        assert data["pid"] == os.getpid()
        assert data["create_time"] == pytest.approx(psutil.Process().create_time())
        assert data["repo"] == os.path.realpath(repo)
        assert lock.stale is None
        assert [info.mission_id for info in read_locks(home())] == ["m-one"]
    assert not path.exists()
    assert read_locks(home()) == []


def test_the_same_repo_through_a_symlink_is_the_same_lock(repo, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(repo)
    assert lock_path(link, home()) == lock_path(repo, home())


def test_a_live_process_holding_the_lock_refuses_a_second_mission(repo, holder):
    with pytest.raises(MissionLocked) as caught:
        MissionLock(repo, "m-two", home()).acquire()
    message = str(caught.value)
    assert "held-1" in message and str(holder.pid) in message
    assert "started" in message and "hint:" in message
    assert caught.value.exit_code == 1
    # the holder's lock is untouched and not stale
    (info,) = read_locks(home())
    assert info.mission_id == "held-1" and info.pid == holder.pid and not is_stale(info)


def test_the_same_mission_id_is_refused_too_while_its_process_lives(repo, holder):
    with pytest.raises(MissionLocked, match="held-1"):
        MissionLock(repo, "held-1", home()).acquire()


def test_a_lock_left_by_a_killed_process_is_taken_over(repo, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    (left,) = read_locks(home())
    assert is_stale(left)
    with MissionLock(repo, "m-after", home()) as lock:
        assert lock.stale is not None and lock.stale.mission_id == "held-1"
        assert [i.mission_id for i in read_locks(home())] == ["m-after"]
    assert read_locks(home()) == []


def test_a_mission_resumes_over_its_own_stale_lock(repo, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with MissionLock(repo, "held-1", home()) as lock:
        assert lock.stale is not None and lock.stale.pid == holder.pid
        assert lock.info is not None and lock.info.pid == os.getpid()


def test_the_flock_excludes_even_without_the_holder_record(repo, holder):
    """The exclusion is the kernel's flock: deleting the record does not free the repository."""
    lock_path(repo, home()).unlink()
    with pytest.raises(MissionLocked, match="another mission is starting"):
        MissionLock(repo, "m-two", home()).acquire()
    holder.send_signal(signal.SIGKILL)  # the kernel releases a dead holder's flock
    holder.wait()
    with MissionLock(repo, "m-two", home()) as lock:
        assert lock.stale is None and lock.info is not None


def test_a_reused_pid_with_another_create_time_is_stale(repo):
    me = psutil.Process()
    fake = LockInfo(mission_id="ghost", pid=me.pid, hostname=os.uname().nodename,
                    create_time=me.create_time() - 1000, started_at="2020-01-01T00:00:00+00:00",
                    repo=os.path.realpath(repo))
    lock_path(repo, home()).write_text(fake.model_dump_json())
    assert is_stale(read_locks(home())[0])
    with MissionLock(repo, "ghost", home()) as lock:
        assert lock.stale is not None and lock.stale.create_time == fake.create_time
        assert lock.info is not None and lock.info.create_time == pytest.approx(me.create_time())


def test_a_lock_from_another_host_is_never_stale(repo):
    fake = LockInfo(mission_id="far", pid=1, hostname="another-host.invalid", create_time=0.0,
                    started_at="2020-01-01T00:00:00+00:00", repo=os.path.realpath(repo))
    lock_path(repo, home()).write_text(fake.model_dump_json())
    assert not is_stale(read_locks(home())[0])
    with pytest.raises(MissionLocked, match="another-host.invalid"):
        MissionLock(repo, "near", home()).acquire()


def test_a_corrupt_lock_file_is_taken_over(repo, caplog):
    lock_path(repo, home()).write_text("{not json")
    with MissionLock(repo, "m-fix", home()) as lock:
        assert lock.info is not None and lock.info.mission_id == "m-fix"
    assert "unreadable lock file" in caplog.text


def test_reentry_by_the_same_process_keeps_the_outer_lock(repo):
    with MissionLock(repo, "m-re", home()) as outer:
        with MissionLock(repo, "m-re", home()) as inner:
            assert inner.info == outer.info
        assert lock_path(repo, home()).exists()  # the inner exit did not free the outer lock
    assert not lock_path(repo, home()).exists()


def test_release_leaves_a_lock_that_is_no_longer_ours(repo):
    lock = MissionLock(repo, "m-mine", home())
    lock.acquire()
    other = json.loads(lock_path(repo, home()).read_text()) | {"mission_id": "m-other"}
    lock_path(repo, home()).write_text(json.dumps(other))
    assert lock.release() is False
    assert read_locks(home())[0].mission_id == "m-other"


CONTENDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from mendflow.core.errors import MissionLocked
    from mendflow.infra.layout import StateLayout
    from mendflow.infra.lock import MissionLock
    try:
        with MissionLock(Path(sys.argv[1]), sys.argv[2], StateLayout.resolve()):
            print("won", flush=True)
            sys.stdin.read()  # hold it until the test has heard from every contender
    except MissionLocked:
        print("locked", flush=True)
""")


def test_contenders_for_a_stale_lock_have_exactly_one_winner(repo, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    contenders = [subprocess.Popen([sys.executable, "-c", CONTENDER, str(repo), f"m-c{i}"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                  for i in range(4)]
    outcomes = sorted(p.stdout.readline().strip() for p in contenders)  # type: ignore[union-attr]
    for proc in contenders:
        proc.communicate(timeout=60)
    assert outcomes == ["locked", "locked", "locked", "won"]
    assert read_locks(home()) == []
