"""Benchmark the Detect stage: tools run one after another by hand, versus the
detect tasks submitted concurrently in one Prefect flow.

Usage::

    .venv/bin/python bench/detect.py [REPO] [--venv VENV] [--package NAME==VERSION]

``REPO`` is a git repository of Python code; it is cloned into a temporary
directory (HEAD only), so the checkout is never touched. Without ``REPO`` the
sdist of a real public package is fetched from PyPI, the same way you can by
hand::

    pip download --no-binary :all: --no-deps toolz==1.2.0 -d /tmp/sdists
    tar xzf /tmp/sdists/toolz-1.2.0.tar.gz -C /tmp && cd /tmp/toolz-1.2.0
    git init -q -b main && git add -A && git commit -qm sdist

The target's tests run with this interpreter (``sys.executable``, which has
pytest, coverage and pytest-timeout) unless ``--venv`` names a venv that has
the target's test dependencies. Pick a package whose tests need nothing else
(toolz, boltons and more-itertools do; attrs needs hypothesis).

It prints, and asserts nothing:

(a) the wall time of the five tool processes run one after another with
    ``mendflow.infra.runner.run_process`` (pytest under coverage, coverage json, ruff,
    mypy, bandit), built with the same command builders as the detectors;
(b) the wall time of one Prefect flow that submits ``run_pytest``,
    ``run_ruff``, ``run_mypy`` and ``run_bandit`` concurrently on the default
    ThreadPoolTaskRunner (after a warm-up flow run, reported separately, that
    starts Prefect's ephemeral API), pytest as a mission runs it by default
    (test-impact contexts recorded, the suite spread over one pytest-xdist
    worker per core where it allows it);
the ratio (b)/(a) (the goal is <= 0.6), and Prefect's share of (b): the flow's
wall time minus the longest task run, and minus the sum of the task runs, as a
percentage of the flow's wall time. mypy's cache is emptied before (a) and (b)
so both start cold.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

# Prefect's ephemeral API keeps its database under PREFECT_HOME: use a throwaway one.
_PREFECT_HOME = tempfile.mkdtemp(prefix="mendflow-bench-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mendflow.core.config import MendflowConfig, ToolsConfig
from mendflow.core.models import Sandbox, TargetEnv, ToolResult
from mendflow.infra.runner import run_process
from mendflow.tasks.detect import count_python_loc
from mendflow.tasks.detect.bandit_run import bandit_config_args
from mendflow.tasks.detect.common import tool_environ, tool_home_dir, tracked_python_files
from mendflow.tasks.detect.mypy_run import (
    discover_mypy_targets,
    mypy_command,
    mypy_config_sets_targets,
)
from mendflow.tasks.detect.parallel import default_workers
from mendflow.tasks.detect.pytest_run import pytest_command, target_modules
from mendflow.tasks.detect.ruff_run import ruff_config_args, ruff_executable

DEFAULT_PACKAGE = "toolz==1.2.0"
GIT_IDENTITY = ["-c", "user.name=mendflow bench", "-c", "user.email=bench@example.invalid"]


def git(cwd: Path, *args: str) -> str:
    """Run git and return its stdout (raises CalledProcessError on failure)."""
    return subprocess.run(["git", *GIT_IDENTITY, *args], cwd=cwd, check=True, text=True,
                          capture_output=True).stdout.strip()


def fetch_sdist(package: str, workdir: Path) -> Path:
    """Download ``package`` (NAME==VERSION) as an sdist, unpack it and commit it to git.

    Returns:
        The root of the new git repository.
    """
    downloads = workdir / "sdist"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:",
                    "--no-deps", "--dest", str(downloads), package], check=True)
    archive = next(p for p in downloads.iterdir() if p.name.endswith((".tar.gz", ".zip")))
    unpacked = workdir / "unpacked"
    if archive.suffix == ".zip":
        shutil.unpack_archive(archive, unpacked)
    else:
        with tarfile.open(archive) as tar:
            tar.extractall(unpacked, filter="data")
    (root,) = [p for p in unpacked.iterdir() if p.is_dir()]
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", f"sdist of {package}")
    return root


def clone(repo: Path, workdir: Path) -> Path:
    """Clone ``repo``'s HEAD into ``workdir`` so the user's checkout is never touched."""
    target = workdir / repo.resolve().name
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(repo), str(target)],
                   check=True)
    return target


def make_sandbox(root: Path) -> Sandbox:
    return Sandbox(mission_id="bench", path=root, repo_root=root,
                   branch=git(root, "rev-parse", "--abbrev-ref", "HEAD"),
                   base_commit=git(root, "rev-parse", "HEAD"))


def target_env(venv: str | None) -> TargetEnv:
    if venv is None:
        return TargetEnv(python=Path(sys.executable), kind="interpreter", fingerprint="bench")
    return TargetEnv(python=Path(venv) / "bin" / "python", kind="managed-venv",
                     fingerprint="bench-venv")


def clear_mypy_cache(sandbox: Sandbox) -> None:
    shutil.rmtree(tool_home_dir(sandbox) / "mypy-cache", ignore_errors=True)


def sequential_by_hand(sandbox: Sandbox, env: TargetEnv,
                       tools: ToolsConfig) -> list[tuple[str, float, int | None]]:
    """(a): the five tool processes, one after another, with run_process.

    Returns:
        ``(step, wall seconds, exit code)`` per step.
    """
    root = sandbox.path
    clear_mypy_cache(sandbox)
    with tempfile.TemporaryDirectory(prefix="mendflow-bench-") as tmp:
        out = Path(tmp)
        environ = tool_environ(sandbox, {"COVERAGE_FILE": str(out / ".coverage")})
        available = target_modules(env, root)
        mypy_targets = [] if mypy_config_sets_targets(root) else discover_mypy_targets(root)
        steps = [
            ("coverage run -m pytest", pytest_command(
                root, env, tools, out, available, timeout_s=tools.pytest.per_test_timeout_s),
             tools.pytest.run_timeout_s),
            ("coverage json", [str(env.python), "-m", "coverage", "json", "-i", "-o",
                               str(out / "coverage.json")], 600.0),
            ("ruff", [ruff_executable(), "check", "--output-format", "json", "--no-cache",
                      "--exit-zero", *ruff_config_args(root), "."], tools.ruff.timeout_s),
            ("mypy", mypy_command(sandbox, env, tools, mypy_targets), tools.mypy.timeout_s),
            ("bandit", [sys.executable, "-m", "bandit", "-r", ".", "-f", "json", "-q", "-o",
                        str(out / "bandit.json"), *bandit_config_args(root)],
             tools.bandit.timeout_s),
        ]
        timings = []
        for name, command, timeout_s in steps:
            proc = run_process(command, cwd=root, timeout_s=timeout_s, env=environ)
            timings.append((name, proc.duration_s, proc.returncode))
    return timings


def warm_up_prefect() -> float:
    """Run one empty flow so Prefect's ephemeral API is up; return its wall seconds."""
    from prefect import flow

    @flow(name="bench-warm-up")
    def warm_up() -> None:
        return None

    start = time.perf_counter()
    warm_up()
    return time.perf_counter() - start


# as a mission's detect step runs pytest by default: test-impact contexts recorded,
# the suite spread over one xdist worker per core (see the `validation` config section)
IMPACT = MendflowConfig().validation.select_tests
WORKERS = MendflowConfig().validation.test_workers or default_workers()


def concurrent_flow(sandbox: Sandbox, env: TargetEnv, tools: ToolsConfig):
    """(b): one flow submitting the four detect tasks concurrently.

    Returns:
        ``(flow wall seconds, [(task name, task-run seconds, ok)], in-flow seconds)``.
    """
    from prefect import flow
    from prefect.client.orchestration import get_client

    from mendflow.tasks.detect import run_bandit, run_mypy, run_pytest, run_ruff

    clear_mypy_cache(sandbox)
    tree = git(sandbox.path, "rev-parse", "HEAD^{tree}")

    @flow(name="bench-detect")
    def detect() -> tuple[list[Any], list[ToolResult], float]:
        start = time.perf_counter()
        futures = [run_pytest.submit(sandbox, env, tools, tree, IMPACT, WORKERS),
                   run_ruff.submit(sandbox, tools, tree),
                   run_mypy.submit(sandbox, env, tools, tree),
                   run_bandit.submit(sandbox, tools, tree)]
        results = [f.result() for f in futures]
        return [f.task_run_id for f in futures], results, time.perf_counter() - start

    start = time.perf_counter()
    run_ids, results, inside = detect()
    wall = time.perf_counter() - start
    rows = []
    with get_client(sync_client=True) as client:
        for run_id, result in zip(run_ids, results, strict=True):
            task_run = client.read_task_run(run_id)
            began, ended = task_run.start_time, task_run.end_time
            seconds = (ended - began).total_seconds() if began and ended else float("nan")
            rows.append((task_run.name.rsplit("-", 1)[0], seconds, result.ok))
    return wall, rows, inside


def report(repo: Path, env: TargetEnv, by_hand, warm_up: float, flow_result) -> None:
    wall, rows, inside = flow_result
    sequential = sum(seconds for _, seconds, _ in by_hand)
    print(f"repository: {repo}  ({len(tracked_python_files(repo))} tracked .py files, "
          f"{count_python_loc(repo)} lines of code)")
    print(f"target python: {env.python} ({env.kind})")
    print(f"cores: {os.cpu_count()}")
    print("\n(a) five tool processes one after another, by hand (run_process):")
    for name, seconds, code in by_hand:
        print(f"    {name:<26} {seconds:8.2f} s   exit {code}")
    print(f"    {'total':<26} {sequential:8.2f} s")
    print("\n(b) one Prefect flow, four detect tasks submitted concurrently:")
    for name, seconds, ok in rows:
        print(f"    {name:<26} {seconds:8.2f} s   ok={ok}")
    print(f"    {'flow wall time':<26} {wall:8.2f} s   (submit-to-last-result {inside:.2f} s; "
          f"warm-up flow before it {warm_up:.2f} s, not counted)")
    longest = max(seconds for _, seconds, _ in rows)
    total = sum(seconds for _, seconds, _ in rows)
    print(f"\nratio (b)/(a): {wall / sequential:.2f}   (goal <= 0.6)")
    print(f"Prefect's share of the flow: flow - longest task = {wall - longest:.2f} s "
          f"({100 * (wall - longest) / wall:.1f} %); flow - sum of tasks = "
          f"{wall - total:.2f} s ({100 * (wall - total) / wall:.1f} %)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", nargs="?", type=Path, help="a git repository (default: sdist)")
    parser.add_argument("--venv", help="a venv with the target's test dependencies")
    parser.add_argument("--package", default=DEFAULT_PACKAGE,
                        help=f"NAME==VERSION of the sdist to fetch (default {DEFAULT_PACKAGE})")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mendflow-bench-") as tmp:
        workdir = Path(tmp)
        root = clone(args.repo, workdir) if args.repo else fetch_sdist(args.package, workdir)
        sandbox, env, tools = make_sandbox(root), target_env(args.venv), ToolsConfig()
        by_hand = sequential_by_hand(sandbox, env, tools)
        warm_up = warm_up_prefect()
        flow_result = concurrent_flow(sandbox, env, tools)
        report(root, env, by_hand, warm_up, flow_result)
        shutil.rmtree(tool_home_dir(sandbox), ignore_errors=True)
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


if __name__ == "__main__":
    main()
