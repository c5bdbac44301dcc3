"""Measure what bubblewrap isolation costs on a real test suite.

Usage::

    .venv/bin/python bench/isolation.py SRC_DIR [--rounds 5]

``SRC_DIR`` is an unpacked sdist that ships its tests, for example::

    pip download --no-binary :all: --no-deps more-itertools==10.5.0
    tar xzf more-itertools-10.5.0.tar.gz

The bench copies it into a git repository and a git worktree under a private
state dir, then runs the detect stage's real test run (``coverage run -m
pytest`` with JUnit XML, then ``coverage json``: :func:`measure_tests`) with
this interpreter, alternately unisolated (``sandbox.isolation: none``) and
under bubblewrap with the default limits, ``--rounds`` times each. It prints
the median wall time of each, their ratio, and the bare cost of one
``bwrap ... -- prlimit ... -- true``. It asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mendflow.core.config import SandboxConfig, ToolsConfig  # noqa: E402
from mendflow.core.models import Isolation, Sandbox, TargetEnv  # noqa: E402
from mendflow.infra.isolation import bwrap_argv, resolve_isolation  # noqa: E402
from mendflow.tasks.detect.pytest_run import measure_tests  # noqa: E402


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def make_sandbox(src: Path, work: Path) -> Sandbox:
    repo = work / "repo"
    shutil.copytree(src, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.email=b@x", "-c", "user.name=bench", "add", "-A")
    git(repo, "-c", "user.email=b@x", "-c", "user.name=bench", "commit", "-q", "-m", "sdist")
    path = work / "state" / "worktrees" / "bench"
    path.parent.mkdir(parents=True)
    git(repo, "worktree", "add", "-q", "-b", "mendflow/bench", str(path))
    return Sandbox(mission_id="bench", path=path, branch="mendflow/bench",
                   base_commit=git(repo, "rev-parse", "HEAD"), repo_root=repo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="an unpacked sdist with tests")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mendflow-bench-isolation-"))
    sandbox = make_sandbox(args.src.resolve(), work)
    isolated = resolve_isolation(SandboxConfig(isolation="bwrap"),
                                 hidden=[Path.home(), work / "state", sandbox.repo_root])
    envs = {
        "none": TargetEnv(python=Path(sys.executable), kind="interpreter", fingerprint="b"),
        "bwrap": TargetEnv(python=Path(sys.executable), kind="interpreter", fingerprint="b",
                           isolation=isolated),
    }
    tools = ToolsConfig()
    times: dict[str, list[float]] = {"none": [], "bwrap": []}
    collected = {}
    for _ in range(args.rounds):
        for name, env in envs.items():
            start = time.monotonic()
            result = measure_tests(sandbox, env, tools)
            times[name].append(time.monotonic() - start)
            run = result.test_run
            collected[name] = (run.collected if run else 0,
                               sum(c.outcome == "passed" for c in run.cases) if run else 0,
                               run.coverage_percent if run else None, result.ok)
    bare = []
    for _ in range(10):
        argv = bwrap_argv(["true"], Isolation(backend="bwrap", hidden=isolated.hidden),
                          worktree=sandbox.path)
        start = time.monotonic()
        subprocess.run(argv, check=True)
        bare.append(time.monotonic() - start)
    none, bwrap = statistics.median(times["none"]), statistics.median(times["bwrap"])
    print(f"suite: {args.src.name} ({args.rounds} rounds each, alternating; "
          "coverage run -m pytest + coverage json)")
    for name in ("none", "bwrap"):
        tests, passed, cov, ok = collected[name]
        print(f"  {name:5}: median {statistics.median(times[name]):6.2f} s  "
              f"(min {min(times[name]):.2f}, max {max(times[name]):.2f}); {tests} tests, "
              f"{passed} passed, coverage {cov}%, ok={ok}")
    print(f"isolation overhead: ratio bwrap/none = {bwrap / none:.3f} "
          f"({bwrap - none:+.2f} s per test run)")
    print(f"bare bwrap + prlimit start: median {statistics.median(bare) * 1000:.1f} ms")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
