"""Soak test: many offline missions in one process, watching for leaks.

Usage::

    .venv/bin/python bench/soak.py [--cycles 200] [--every 10] [--keep-sandboxes]

A time-compressed long run. A small real git repository is made in a
temporary directory (a package with a test, a ruff finding its safe fixer
removes, a TODO); then, in this one process, the whole offline mission runs
``--cycles`` times: ``mendflow.flows.mission.maintenance_mission`` with a new mission id
each cycle (baseline pytest+coverage, ruff, mypy, bandit, TODO scan; the ruff
fixer; validation of the candidate in the sandbox; commit; reports), the
target's tests running with this interpreter. Each mission holds the
repository's :class:`~mendflow.infra.lock.MissionLock`; after it, its sandbox
worktree, branch and base ref are removed (as a mission with
``keep_worktree: false`` would), so that nothing should accumulate. The
temporary Prefect server is recorded in the process registry after the first
mission (:func:`~mendflow.infra.owned_processes.register_prefect_server`).

Every ``--every`` cycles it prints: RSS (psutil, after ``gc.collect()``),
open file descriptors, child processes alive (and how many are the temporary
Prefect server), worktree directories under the state dir (and the tools'
state directories beside them), ``git worktree list`` entries, lock files and
process-registry files. At the end: the slope of RSS over the second half of
the run (MiB per 100 cycles, least squares) and the leftovers. The goal: flat
memory and zero leftovers (the temporary Prefect server is this process's own
child and its record is expected while it runs).
It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

_TMP = Path(tempfile.mkdtemp(prefix="mendflow-soak-"))
os.environ.setdefault("PREFECT_HOME", str(_TMP / "prefect"))
os.environ.setdefault("MENDFLOW_HOME", str(_TMP / "state"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # a busy machine
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from mendflow.infra.layout import StateLayout
from mendflow.infra.lock import MissionLock
from mendflow.infra.owned_processes import read_records, register_prefect_server
from mendflow.infra.timeouts import record_duration

FILES = {
    "pyproject.toml": '[project]\nname = "soakpkg"\nversion = "0.1"\n',
    "soakpkg/__init__.py": "",
    "soakpkg/core.py": """
        import os


        def add(a: int, b: int) -> int:
            # TODO: handle overflow
            return a + b
    """,
    "tests/test_core.py": """
        from soakpkg.core import add


        def test_add():
            assert add(2, 3) == 5
    """,
}
GIT_ID = ["-c", "user.name=mendflow soak", "-c", "user.email=soak@example.invalid"]


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` and return its stdout (raises CalledProcessError on failure)."""
    return subprocess.run(["git", *GIT_ID, *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def make_repo(root: Path) -> Path:
    """Create the small repository the missions run on and return its root."""
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def write_config(path: Path) -> Path:
    """An offline config: this interpreter for the target's tests, one iteration."""
    path.write_text(textwrap.dedent(f"""
        environment: {{type: interpreter, python: {sys.executable}}}
        mission: {{max_iterations: 1, target_score: 100}}
    """), encoding="utf-8")
    return path


def drop_sandbox(repo: Path, result) -> None:
    """Remove a mission's sandbox (``WorktreeSandbox.remove``, as ``remove_sandbox`` does),
    then its branch and base ref. The tools' state beside it is left: it is counted."""
    from mendflow.core.models import Sandbox
    from mendflow.tasks.sandbox import WorktreeSandbox

    if result.worktree:
        WorktreeSandbox().remove(Sandbox(mission_id=result.mission_id, path=Path(result.worktree),
                                         branch=result.branch, base_commit=result.base_commit,
                                         repo_root=repo))
    git(repo, "branch", "-D", result.branch)
    git(repo, "update-ref", "-d", f"refs/mendflow/{result.mission_id}/base")


def sample(repo: Path) -> dict[str, float]:
    """Measure the process and mendflow's state now."""
    gc.collect()
    me = psutil.Process()
    children = me.children(recursive=True)
    servers = [c for c in children if _is_prefect_server(c)]
    state = StateLayout.resolve().root
    worktrees = state / "worktrees"
    entries = list(worktrees.iterdir()) if worktrees.is_dir() else []
    return {
        "rss_mb": me.memory_info().rss / 2**20,
        "fds": me.num_fds(),
        "children": len(children),
        "servers": len(servers),
        "state_worktrees": len([p for p in entries if not p.name.endswith(".mendflow-tools")]),
        "tool_dirs": len([p for p in entries if p.name.endswith(".mendflow-tools")]),
        "git_worktrees": len(git(repo, "worktree", "list", "--porcelain").split("\n\n")),
        "locks": len(list((state / "locks").glob("*.json"))) if (state / "locks").is_dir() else 0,
        "procs": len(read_records(StateLayout.resolve())),
    }


def _is_prefect_server(proc: psutil.Process) -> bool:
    try:
        words = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return "uvicorn" in words and "prefect" in words


def slope_per_100(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of (cycle, MiB) points, in MiB per 100 cycles."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return 100 * cov / var if var else 0.0


def run(cycles: int, every: int, keep_sandboxes: bool) -> None:
    """Run the soak and print the figures."""
    from mendflow.flows.mission import maintenance_mission

    repo = make_repo(_TMP / "repo")
    config = write_config(_TMP / "config.yaml")
    print(f"soak: {cycles} missions on {repo} (state {StateLayout.resolve().root}, PREFECT_HOME "
          f"{os.environ['PREFECT_HOME']})")
    print(f"{'cycle':>5} {'secs':>6} {'rss MiB':>8} {'fds':>4} {'child':>5} {'srv':>3} "
          f"{'wt(state)':>9} {'tools':>5} {'wt(git)':>7} {'locks':>5} {'procs':>5} {'status':>10}")
    rss: list[tuple[int, float]] = []
    durations: list[float] = []
    for cycle in range(1, cycles + 1):
        mission_id = f"soak-{cycle:04d}"
        start = time.monotonic()
        with MissionLock(repo, mission_id):
            result = maintenance_mission(path=str(repo), config_file=str(config),
                                         mission_id=mission_id)
        durations.append(time.monotonic() - start)
        record_duration(repo, "mission", durations[-1], layout=StateLayout.resolve())
        if cycle == 1:
            register_prefect_server(StateLayout.resolve())
        if not keep_sandboxes:
            drop_sandbox(repo, result)
        figures = sample(repo)
        rss.append((cycle, figures["rss_mb"]))
        if cycle % every == 0 or cycle in (1, cycles):
            print(f"{cycle:>5} {durations[-1]:>6.1f} {figures['rss_mb']:>8.1f} {figures['fds']:>4} "
                  f"{figures['children']:>5} {figures['servers']:>3} "
                  f"{figures['state_worktrees']:>9} {figures['tool_dirs']:>5} {figures['git_worktrees']:>7} "
                  f"{figures['locks']:>5} {figures['procs']:>5} {result.status:>10}", flush=True)
    report(repo, rss, durations, keep_sandboxes)


def report(repo: Path, rss: list[tuple[int, float]], durations: list[float],
           keep_sandboxes: bool) -> None:
    """Print the memory slope and the leftovers."""
    final = sample(repo)
    half = rss[len(rss) // 2:]
    print(f"\nmission wall time: first {durations[0]:.1f} s, median "
          f"{sorted(durations)[len(durations) // 2]:.1f} s, total {sum(durations):.0f} s")
    print(f"RSS: first {rss[0][1]:.1f} MiB, middle {half[0][1]:.1f} MiB, last {rss[-1][1]:.1f} MiB; "
          f"slope over the second half: {slope_per_100(half):+.2f} MiB per 100 cycles")
    print(f"open fds at the end: {final['fds']}")
    leftovers = {
        "child processes (besides the temporary Prefect server)":
            final["children"] - final["servers"],
        "lock files": final["locks"],
        "process records (besides the Prefect server's)":
            final["procs"] - sum(r.kind == "prefect-server" for r in read_records(StateLayout.resolve())),
    }
    if not keep_sandboxes:
        leftovers["worktree dirs under the state dir"] = final["state_worktrees"]
        leftovers["git worktree entries besides the checkout"] = final["git_worktrees"] - 1
        leftovers["tool-state dirs (.<id>.mendflow-tools) of removed sandboxes"] = final["tool_dirs"]
    for what, count in leftovers.items():
        print(f"leftover {what}: {count}")
    print("goal: flat memory (|slope| ≈ 0) and zero leftovers")


def main() -> None:
    """Parse the arguments and run the soak."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200, help="missions to run (default 200)")
    parser.add_argument("--every", type=int, default=10, help="print figures every K cycles")
    parser.add_argument("--keep-sandboxes", action="store_true",
                        help="keep each mission's worktree and branch (they then accumulate)")
    args = parser.parse_args()
    logging.getLogger("prefect").setLevel(logging.WARNING)
    run(args.cycles, max(1, args.every), args.keep_sandboxes)


if __name__ == "__main__":
    main()
