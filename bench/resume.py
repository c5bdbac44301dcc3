"""Benchmark crash resume: the cost of resuming a mission killed at ~80 % of its run.

Usage::

    .venv/bin/python bench/resume.py [REPO] [--package NAME==VERSION] [--kill-at 0.8]
                                     [--max-patches N] [--max-iterations N]

``REPO`` is a git repository of Python code (cloned into a temporary
directory, HEAD only); without it the sdist of a real public package is
fetched from PyPI (default more-itertools 10.5.0: 664 tests, stdlib only).

It runs, each as a real ``mendflow`` process with the offline fixer and this
interpreter as the target environment (the mission config's defaults for
patches per iteration and iterations; ``--max-patches``/``--max-iterations``
make a shorter mission, on which the fixed cost F weighs more):

1. an uninterrupted mission on clone A: wall time T;
2. ``mendflow mission resume`` of that finished mission: wall time F, the
   fixed cost of any resume (a new process, Prefect's temporary API server,
   the replay of every step from the cache) with no work left;
3. the same mission on clone B, SIGKILLed (the whole process group) once
   ``--kill-at`` x T seconds have passed;
4. ``mendflow mission resume`` on B: wall time R;
5. ``mendflow mission resume`` of the finished mission again, this time against
   a running ``prefect server`` (``PREFECT_API_URL``; the setup of a fleet or of
   long missions): F_server, the fixed cost without the temporary API's start.

It prints T, F, R, the ratio R / T (goal: <= 0.25; the unfinished work alone
is about 1 - kill-at of T, the rest is F plus the step the kill interrupted)
and whether both missions ended with the same tree on their mission
branches. Every process starts Prefect's ephemeral API against one
PREFECT_HOME, as a user's would. It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from detect import clone, fetch_sdist, git  # noqa: E402  (bench/detect.py helpers)

CLI = [sys.executable, "-m", "mendflow.cli"]


def mission_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "MENDFLOW_HOME": str(home / "mendflow"),
           "PREFECT_HOME": str(home / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1"}
    env.pop("PREFECT_API_URL", None)
    return env


def write_config(path: Path, max_patches: int, max_iterations: int = 1) -> Path:
    path.write_text(json.dumps({
        "environment": {"type": "interpreter", "python": sys.executable},
        "mission": {"max_iterations": max_iterations, "target_score": 100,
                    "max_patches_per_iteration": max_patches},
    }))
    return path


def run(args: list[str], env: dict[str, str]) -> tuple[float, dict]:
    start = time.monotonic()
    proc = subprocess.run([*CLI, *args, "--json"], env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if proc.returncode not in (0, 2):
        sys.exit(f"mission failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed, json.loads(proc.stdout)


def run_and_kill(args: list[str], env: dict[str, str], after_s: float) -> float:
    proc = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    start = time.monotonic()
    try:
        proc.wait(timeout=after_s)
        print("  (the mission finished before the kill; raise --kill-at's base or use a bigger repo)")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return time.monotonic() - start


def resume_against_server(mission: str, env: dict[str, str], work: Path) -> float:
    """Wall time of ``mendflow mission resume`` against a ``prefect server`` started (and
    stopped) here on the same PREFECT_HOME; the server's start is not counted."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (work / "prefect-server.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host",
                               "127.0.0.1", "--port", str(port)], env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            sys.exit(f"prefect server did not start; see {log.name}")
        elapsed, _ = run(["mission", "resume", mission], {**env, "PREFECT_API_URL": url})
        return elapsed
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", nargs="?", type=Path)
    parser.add_argument("--package", default="more-itertools==10.5.0")
    parser.add_argument("--kill-at", type=float, default=0.8)
    # the mission's own defaults (mission.max_patches_per_iteration, mission.max_iterations)
    parser.add_argument("--max-patches", type=int, default=25)
    parser.add_argument("--max-iterations", type=int, default=3)
    opts = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mendflow-bench-resume-"))
    source = opts.repo or fetch_sdist(opts.package, work)
    repo_a, repo_b = clone(source, work / "a"), clone(source, work / "b")
    env = mission_env(work)
    config = write_config(work / "config.json", opts.max_patches, opts.max_iterations)
    common = ["--config", str(config)]

    total, ref = run(["mission", "run", str(repo_a), *common, "--mission-id", "bench-ref"], env)
    fixed, _ = run(["mission", "resume", "bench-ref"], env)
    killed_after = run_and_kill(["mission", "run", str(repo_b), *common, "--mission-id",
                                 "bench-crash"], env, opts.kill_at * total)
    resumed, res = run(["mission", "resume", "bench-crash"], env)

    fixed_server = resume_against_server("bench-ref", env, work)

    same_tree = git(repo_a, "rev-parse", "mendflow/bench-ref^{tree}") == \
        git(repo_b, "rev-parse", "mendflow/bench-crash^{tree}")
    accepted = sum(p["status"] == "accepted" for p in ref["patches"])
    print(f"repository           {source}")
    print(f"uninterrupted (T)    {total:7.1f} s  ({len(ref['patches'])} candidates, "
          f"{accepted} accepted)")
    print(f"resume, nothing left {fixed:7.1f} s  (F: new process, Prefect API start, cached replay;"
          f" F / T {fixed / total:.2f})")
    print(f"  against a server   {fixed_server:7.1f} s  (F_server: new process and cached replay;"
          f" F - F_server {fixed - fixed_server:.1f} s = the temporary API server's start)")
    print(f"killed after         {killed_after:7.1f} s  ({opts.kill_at:.0%} of T)")
    print(f"resume (R)           {resumed:7.1f} s")
    print(f"R / T                {resumed / total:7.2f}   (goal <= 0.25; unfinished work alone "
          f"~{1 - opts.kill_at:.2f})")
    titles = sorted(p["title"] for p in res["patches"] if p["status"] == "accepted")
    same_patches = titles == sorted(p["title"] for p in ref["patches"] if p["status"] == "accepted")
    print(f"same tree on branch  {same_tree}")
    print(f"same accepted        {same_patches}")


if __name__ == "__main__":
    main()
