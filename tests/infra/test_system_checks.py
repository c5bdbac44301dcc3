"""Health checks on real repositories, real worktrees, real processes, a real Prefect API."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from mendflow.core.config import HealthConfig, MendflowConfig
from mendflow.core.models import RepoTarget
from mendflow.infra.gitops import list_worktrees
from mendflow.infra.layout import StateLayout
from mendflow.infra.lock import LockInfo, MissionLock, lock_path, read_locks
from mendflow.infra.owned_processes import ProcRecord, is_alive, procs_dir
from mendflow.infra.system_checks import (
    check_disk_space,
    check_git_worktrees,
    check_locks,
    check_memory,
    check_orphans,
    check_prefect_api,
    check_state_worktrees,
    check_tool,
    check_tools,
    known_repositories,
    run_checks,
)
from tests.helpers.git import git

home = StateLayout.resolve  # the $MENDFLOW_HOME layout (isolated per test by conftest)


@pytest.fixture
def repo(make_repo) -> Path:
    return make_repo({"pkg/__init__.py": "", "pkg/a.py": "x = 1\n"})


def target(root: Path) -> RepoTarget:
    return RepoTarget(root=root, head_commit=git(root, "rev-parse", "HEAD"), head_branch="main",
                      scope="project", scope_path=".")


def record_session(mission_id: str, repo: Path) -> None:
    """What a finished mission leaves: its session_data.json naming the repository."""
    report = home().missions / mission_id / "report"
    report.mkdir(parents=True)
    (report / "session_data.json").write_text(json.dumps({"mission_id": mission_id,
                                                          "repository": str(repo)}))


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


def dead_pid() -> tuple[int, float]:
    proc = subprocess.Popen(["true"])
    created = psutil.Process(proc.pid).create_time()
    proc.wait()
    return proc.pid, created


# --- disk and memory ---------------------------------------------------------------


def test_disk_space_thresholds(tmp_path):
    huge = 10**9
    failing = check_disk_space(tmp_path, HealthConfig(min_free_disk_mb=huge, warn_free_disk_mb=huge))
    assert failing.status == "fail" and "MiB free" in failing.found and failing.action
    warning = check_disk_space(tmp_path, HealthConfig(min_free_disk_mb=0, warn_free_disk_mb=huge))
    assert warning.status == "warn"
    fine = check_disk_space(tmp_path, HealthConfig(min_free_disk_mb=0, warn_free_disk_mb=0))
    assert fine.status == "ok" and fine.action is None
    # a path that does not exist yet is measured where it would be created
    assert check_disk_space(tmp_path / "not" / "yet", HealthConfig(
        min_free_disk_mb=0, warn_free_disk_mb=0)).status == "ok"


def test_memory_threshold():
    assert check_memory(HealthConfig(min_free_memory_mb=10**9)).status == "fail"
    assert check_memory(HealthConfig(min_free_memory_mb=0)).status == "ok"


# --- tools -------------------------------------------------------------------------


def test_every_tool_is_found_with_its_version():
    checks = {c.name: c for c in check_tools()}
    assert list(checks) == [f"tool: {t}" for t in
                            ("git", "python", "ruff", "mypy", "bandit", "pytest", "coverage")]
    assert all(c.status == "ok" for c in checks.values()), checks
    assert checks["tool: git"].found.startswith("git version")
    assert checks["tool: ruff"].found.startswith("ruff ")
    assert str(Path(sys.executable).parent / "mypy") in checks["tool: mypy"].found
    assert "Python 3." in checks["tool: python"].found


def test_a_missing_tool_fails():
    check = check_tool("no-such-tool-mendflow")
    assert check.status == "fail" and check.found == "not found" and check.action


# --- the Prefect API ----------------------------------------------------------------


def test_the_prefect_api_is_reachable(prefect_harness):
    from prefect.settings import PREFECT_API_URL

    check = check_prefect_api(PREFECT_API_URL.value())
    assert check.status == "ok" and "reachable" in check.found


def test_a_closed_port_is_unreachable(monkeypatch):
    url = closed_port_url()
    monkeypatch.setenv("PREFECT_API_URL", url)
    check = check_prefect_api()
    assert check.status == "fail" and url in check.found and "unreachable" in check.found
    assert "prefect server start" in (check.action or "")


def test_without_an_api_url_prefect_runs_ephemeral(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    out = subprocess.run([sys.executable, "-c", "from mendflow.infra.system_checks import check_prefect_api; "
                          "print(check_prefect_api().model_dump_json())"],
                         env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    check = json.loads(out)
    assert check["status"] == "ok" and "ephemeral" in check["found"]


# --- worktrees -----------------------------------------------------------------------


def test_a_deleted_sandbox_is_found_and_forgotten_on_repair(repo):
    from mendflow.tasks.sandbox import WorktreeSandbox

    sandbox = WorktreeSandbox().create(target(repo), "m-gone", home())
    record_session("m-gone", repo)
    assert known_repositories(home()) == [repo.resolve()]
    assert check_git_worktrees(home()).status == "ok"
    shutil.rmtree(sandbox.path)

    found = check_git_worktrees(home())
    assert found.status == "warn" and str(sandbox.path) in found.found and "--repair" in found.action
    assert any(Path(e["worktree"]) == sandbox.path for e in list_worktrees(repo))

    repaired = check_git_worktrees(home(), repair=True)
    assert repaired.status == "ok" and "removed" in repaired.action
    assert [Path(e["worktree"]) for e in list_worktrees(repo)] == [repo]
    assert git(repo, "rev-parse", "--verify", "refs/heads/mendflow/m-gone")  # the branch stays
    assert check_git_worktrees(home()).status == "ok"


def test_a_missing_worktree_that_is_not_mendflows_is_left_alone(repo, tmp_path):
    record_session("m-any", repo)
    theirs = tmp_path / "their-worktree"
    git(repo, "worktree", "add", "-q", str(theirs), "-b", "feature")
    shutil.rmtree(theirs)
    check = check_git_worktrees(home(), repair=True)
    assert check.status == "ok" and "left alone" in check.action and str(theirs) in check.action
    assert any(Path(e["worktree"]) == theirs for e in list_worktrees(repo))


def test_leftover_worktree_dirs_are_removed_unless_git_or_a_live_lock_holds_them(repo):
    from mendflow.tasks.sandbox import WorktreeSandbox

    valid = WorktreeSandbox().create(target(repo), "m-valid", home())
    root = home().worktrees
    ghost = root / "m-ghost"
    (ghost / "pkg").mkdir(parents=True)
    (ghost / "pkg" / "a.py").write_text("x = 1\n")
    held = root / "m-held"
    held.mkdir()
    # tool state (tasks.detect.common.tool_home_dir) goes with its mission's worktree
    tools = {name: root / f".{name}.mendflow-tools" for name in ("m-valid", "m-ghost", "m-held",
                                                                  "m-removed")}
    for path in tools.values():
        (path / "home").mkdir(parents=True)
    with MissionLock(repo, "m-held", home()):
        found = check_state_worktrees(home())
        assert found.status == "warn"
        assert found.found == ("3 stale: .m-ghost.mendflow-tools, .m-removed.mendflow-tools, "
                               "m-ghost")
        repaired = check_state_worktrees(home(), repair=True)
        assert repaired.status == "ok" and repaired.action.startswith("removed ")
        assert check_state_worktrees(home()).found == "none stale"
    assert not ghost.exists() and held.exists() and (valid.path / "pkg" / "a.py").is_file()
    assert [p.exists() for p in tools.values()] == [True, False, True, False]
    # once its lock is released, the held directory is an ordinary leftover
    assert check_state_worktrees(home()).found == "2 stale: .m-held.mendflow-tools, m-held"


# --- locks and orphans ------------------------------------------------------------------


def test_stale_locks_are_reported_and_removed_on_repair(repo, make_repo):
    pid, created = dead_pid()
    stale = LockInfo(mission_id="m-dead", pid=pid, hostname=socket.gethostname(),
                     create_time=created, started_at="2020-01-01T00:00:00+00:00",
                     repo=os.path.realpath(repo))
    lock_path(repo, home()).write_text(stale.model_dump_json())
    other = make_repo({"b.py": "y = 2\n"}, name="other")
    with MissionLock(other, "m-live", home()):
        check = check_locks(home())
        assert check.status == "warn" and "m-dead" in check.found and "m-live" in check.found
        repaired = check_locks(home(), repair=True)
        assert repaired.status == "ok" and "m-dead" in repaired.action
        assert [i.mission_id for i in read_locks(home())] == ["m-live"]


def test_orphans_are_reported_and_stopped_on_repair(tmp_path):
    # a shell that notes the SIGTERM it gets (kill_orphan waits with psutil.wait_procs, which
    # may reap it before Popen sees its exit status)
    marker = tmp_path / "signal"
    orphan = subprocess.Popen(["sh", "-c", f"trap 'echo TERM > {marker}; exit 0' TERM; "
                               "sleep 600 & wait"], start_new_session=True)
    try:
        owner_pid, owner_created = dead_pid()
        created = psutil.Process(orphan.pid).create_time()
        procs_dir(home()).mkdir(parents=True, exist_ok=True)
        (procs_dir(home()) / f"{orphan.pid}.json").write_text(ProcRecord(
            pid=orphan.pid, pgid=orphan.pid, create_time=created, owner_pid=owner_pid,
            owner_create_time=owner_created, argv=("sleep", "600"),
            started_at="2020-01-01T00:00:00+00:00").model_dump_json())
        check = check_orphans(home())
        assert check.status == "warn" and f"pid {orphan.pid}" in check.found
        assert is_alive(orphan.pid, created)
        repaired = check_orphans(home(), repair=True)
        assert repaired.status == "ok" and f"pid {orphan.pid}" in repaired.action
        orphan.wait(timeout=10)
        assert marker.read_text().strip() == "TERM"  # stopped by SIGTERM, not SIGKILL
        assert check_orphans(home()).found == "none"
    finally:
        orphan.kill()
        orphan.wait()


def test_run_checks_on_a_clean_state(repo):
    record_session("m-clean", repo)
    checks = run_checks(MendflowConfig(), home(), repair=False)
    names = [c.name for c in checks]
    assert names[0] == "disk: state dir" and "memory" in names and "prefect api" in names
    assert names[-4:] == ["locks", "worktrees: state dir", "worktrees: git", "orphaned processes"]
    by_name = {c.name: c for c in checks}
    assert all(by_name[n].status == "ok" for n in names[-4:])
    assert all(c.status == "ok" for c in checks if c.name.startswith("tool: "))
