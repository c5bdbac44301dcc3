"""Benchmark the Detect stage: tools run one after another by hand, versus the
detect tasks submitted concurrently in one Prefect flow.

Usage::

    .venv/bin/python bench/detect.py [REPO ...] [--venv VENV] [--package NAME==VERSION ...]
                                     [--compare]

Each ``REPO`` is a git repository of Python code; it is cloned into a temporary
directory (HEAD only), so the checkout is never touched. Without ``REPO`` the
sdists of real public packages are fetched from PyPI (by default toolz 1.0.0 and
more-itertools 10.5.0, whose thread tests make coverage slow), the same way you
can by hand::

    pip download --no-binary :all: --no-deps toolz==1.0.0 -d /tmp/sdists
    tar xzf /tmp/sdists/toolz-1.0.0.tar.gz -C /tmp && cd /tmp/toolz-1.0.0
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
    (test-impact contexts recorded, ``validation.test_workers``: the suite spread
    over pytest-xdist workers where that pays and the suite allows it): once as
    a first baseline (nothing known: serial, every test with the first
    timeout), once as the next measurement, the workers decided from what the
    first one took and each test's timeout learned from its duration there
    (as a later baseline of the repository learns it); with ``--compare``, the same
    flow again with the suite forced serial (1 worker) and forced spread (one
    worker per core), in the same run;
the ratio (b)/(a) (the goal is <= 0.6), and Prefect's share of (b): the flow's
wall time minus the longest task run, and minus the sum of the task runs, as a
percentage of the flow's wall time. mypy's cache is emptied before (a) and (b)
so both start cold. The machine's load average (``os.getloadavg``, 1 min) is
printed beside every figure: on a shared machine read the ratios, measured
within one run, rather than the seconds. The last lines sum up every package.
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
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
# a loaded machine can take more than the default 20 s to start the ephemeral API
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mendflow.core.config import MendflowConfig, ToolsConfig
from mendflow.core.hangs import plan_from_durations
from mendflow.core.models import Sandbox, TargetEnv, TestPlan, ToolResult
from mendflow.core.spread import OTHER_TOOLS, cost_of_run, estimate_s, plan_workers
from mendflow.infra.layout import StateLayout
from mendflow.infra.runner import run_process
from mendflow.infra.test_durations import load_test_durations, record_test_durations
from mendflow.infra.tool_cache import shared_cache_dir
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

DEFAULT_PACKAGES = ("toolz==1.0.0", "more-itertools==10.5.0")
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
    """Cold mypy, as a first mission's (and the by-hand run's): the sandbox's cache and the
    repository's shared one (a later mission's baseline would start from it)."""
    shutil.rmtree(tool_home_dir(sandbox) / "mypy-cache", ignore_errors=True)
    shutil.rmtree(shared_cache_dir(sandbox.path, sandbox.repo_root, "mypy"), ignore_errors=True)


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
# the suite spread over xdist workers as `validation.test_workers` says
IMPACT = MendflowConfig().validation.select_tests
WORKERS = MendflowConfig().validation.test_workers


def load() -> str:
    """The 1-minute load average, for printing beside a figure."""
    return f"load {os.getloadavg()[0]:.1f}"


def concurrent_flow(sandbox: Sandbox, env: TargetEnv, tools: ToolsConfig, workers: int,
                    plan: TestPlan | None = None):
    """(b): one flow submitting the four detect tasks concurrently.

    Args:
        workers: ``validation.test_workers`` (0 = decided per run, 1 = serial).
        plan: the tests' timeouts (None: the first timeout for each, as at a first baseline).

    Returns:
        ``(flow wall seconds, [(task name, task-run seconds, ok)], in-flow seconds)``.
    """
    from prefect import flow
    from prefect.client.orchestration import get_client

    from mendflow.tasks.detect import run_bandit, run_mypy, run_pytest, run_ruff

    clear_mypy_cache(sandbox)
    # the tree is a cache-key input only: a fresh one per flow, so no variant replays another
    tree = f"{git(sandbox.path, 'rev-parse', 'HEAD^{tree}')}-{time.time_ns()}"

    @flow(name="bench-detect")
    def detect() -> tuple[list[Any], list[ToolResult], float]:
        start = time.perf_counter()
        futures = [run_pytest.submit(sandbox, env, tools, tree, plan, impact=IMPACT,
                                          workers=workers),
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
    return wall, rows, inside, results


def report_by_hand(repo: Path, env: TargetEnv, by_hand, loads: tuple[str, str]) -> float:
    sequential = sum(seconds for _, seconds, _ in by_hand)
    print(f"\nrepository: {repo}  ({len(tracked_python_files(repo))} tracked .py files, "
          f"{count_python_loc(repo)} lines of code)")
    print(f"target python: {env.python} ({env.kind});  cores: {os.cpu_count()}")
    print(f"\n(a) five tool processes one after another, by hand (run_process)  "
          f"[{loads[0]} -> {loads[1]}]:")
    for name, seconds, code in by_hand:
        print(f"    {name:<26} {seconds:8.2f} s   exit {code}")
    print(f"    {'total':<26} {sequential:8.2f} s")
    return sequential


def report_flow(label: str, sequential: float, flow_result, loads: tuple[str, str]) -> float:
    wall, rows, inside, _ = flow_result
    print(f"\n(b) {label}: one Prefect flow, four detect tasks submitted concurrently  "
          f"[{loads[0]} -> {loads[1]}]:")
    for name, seconds, ok in rows:
        print(f"    {name:<26} {seconds:8.2f} s   ok={ok}")
    print(f"    {'flow wall time':<26} {wall:8.2f} s   (submit-to-last-result {inside:.2f} s)")
    longest = max(seconds for _, seconds, _ in rows)
    total = sum(seconds for _, seconds, _ in rows)
    print(f"    ratio (b)/(a): {wall / sequential:.2f}   (goal <= 0.6)")
    print(f"    Prefect's share of the flow: flow - longest task = {wall - longest:.2f} s "
          f"({100 * (wall - longest) / wall:.1f} %); flow - sum of tasks = "
          f"{wall - total:.2f} s ({100 * (wall - total) / wall:.1f} %)")
    return wall / sequential


def bench_one(root: Path, env: TargetEnv, compare: bool) -> dict[str, str]:
    """Measure (a) and every (b) variant on one repository; return ``{label: "ratio (load)"}``.

    A mission decides the workers from what the repository's previous measurement
    took (:func:`mendflow.core.spread.plan_workers`): its first baseline has nothing
    to go by, the next measurement (a later baseline, a full validation run) has.
    """
    sandbox, tools, cores = make_sandbox(root), ToolsConfig(), default_workers()
    before = load()
    by_hand = sequential_by_hand(sandbox, env, tools)
    sequential = report_by_hand(root, env, by_hand, (before, load()))
    ratios: dict[str, str] = {}

    def one(label: str, workers: int, plan: TestPlan | None = None):
        before = load()
        result = concurrent_flow(sandbox, env, tools, workers, plan)
        ratio = report_flow(label, sequential, result, (before, load()))
        ratios[label] = f"{ratio:.2f} ({before})"
        return result

    first_workers = plan_workers(WORKERS, cores, None)
    *_, results = one(f"mission, first baseline ({first_workers} worker(s))", first_workers)
    run = next(r.test_run for r in results if r.tool == "pytest")
    cost = cost_of_run(run, [r.duration_s for r in results if r.tool in OTHER_TOOLS])
    workers = plan_workers(WORKERS, cores, cost)
    print(f"\n    learned: tests {cost.tests_s:.2f} s, fixed {cost.fixed_s:.2f} s, others "
          f"{cost.others_s:.2f} s -> estimate serial {estimate_s(cost, 1, cores):.2f} s, "
          f"spread {estimate_s(cost, cores, cores):.2f} s: {workers} worker(s)")
    # a later baseline also gives each test that passed a timeout learned from its
    # duration, so an honest slow test runs once instead of twice (its second chance)
    layout = StateLayout.resolve(root.parent / "mendflow-state")
    record_test_durations(root, run, layout)
    plan = plan_from_durations(load_test_durations(root, layout), tools.pytest)
    print(f"    learned timeouts: {len(plan.timeouts) if plan else 0} test(s) above the first "
          f"timeout of {tools.pytest.first_timeout_s:g} s")
    one(f"mission, next measurement ({workers} worker(s))", workers, plan)
    if compare:
        one("forced serial (test_workers=1)", 1, plan)
        one(f"forced spread (test_workers={cores})", cores, plan)
    shutil.rmtree(tool_home_dir(sandbox), ignore_errors=True)
    return ratios


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", nargs="*", type=Path, help="git repositories (default: sdists)")
    parser.add_argument("--venv", help="a venv with the targets' test dependencies")
    parser.add_argument("--package", action="append",
                        help=f"NAME==VERSION of an sdist to fetch, repeatable "
                             f"(default {' and '.join(DEFAULT_PACKAGES)})")
    parser.add_argument("--compare", action="store_true",
                        help="also run the flow with the suite forced serial and forced spread")
    args = parser.parse_args(argv)
    env = target_env(args.venv)
    summary = {}
    with tempfile.TemporaryDirectory(prefix="mendflow-bench-") as tmp:
        workdir = Path(tmp)
        print(f"warm-up flow (starts Prefect's ephemeral API, not counted): "
              f"{warm_up_prefect():.2f} s  [{load()}]")
        targets = [(r.name, lambda r=r, d=workdir / f"repo{i}": clone(r, _made(d)))
                   for i, r in enumerate(args.repo)]
        if not targets:
            targets = [(p, lambda p=p, d=workdir / p: fetch_sdist(p, _made(d)))
                       for p in args.package or DEFAULT_PACKAGES]
        for name, make in targets:
            summary[name] = bench_one(make(), env, args.compare)
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)
    print("\nsummary: ratio (b)/(a) per package (goal <= 0.6), load average at the start")
    for name, ratios in summary.items():
        print(f"    {name:<28} " + ";  ".join(f"{k}: {v}" for k, v in ratios.items()))


def _made(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


if __name__ == "__main__":
    main()
