"""Benchmark candidate validation: selected tests versus a full run, and a whole mission.

Usage::

    .venv/bin/python bench/validate.py [REPO] [--package NAME==VERSION] [--patches 7]
                                       [--mission-bugs 12] [--no-mission]

Part 1, on ``REPO`` (cloned, HEAD only) or the sdist of more-itertools 10.5.0
from PyPI: a full measurement with test-impact recording (pytest under
coverage with contexts, then ruff, mypy and bandit, concurrently as the
mission's detect step runs them), then ``--patches`` one-function patches (one
changed line inside a function of ``more_itertools/more.py`` or
``recipes.py``). Each patch is validated both ways, with the detectors'
own functions and this interpreter as the target environment:

- selective: the tests that reach the changed line (plus the failing ones),
  with the four linters beside them;
- full: the whole suite under coverage plus the four linters.

It prints each patch's times and test counts, then the median selective time
divided by the median full time (goal: <= 0.25).

Part 2: the wall time of a whole default mission (Claude fixer on the fake
Messages API, scripted as a perfect model; see ``bench/oracle.py``) on a
generated repository of ``--mission-bugs`` one-line bugs, with
``validation.select_tests`` false (every candidate its own full run) and true.
It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from detect import clone, fetch_sdist, git, make_sandbox  # noqa: E402

from mendflow.core.config import ToolsConfig  # noqa: E402
from mendflow.core.models import Patch, TargetEnv  # noqa: E402
from mendflow.tasks.detect import (  # noqa: E402
    measure_bandit,
    measure_mypy,
    measure_ruff,
    measure_tests,
    scan_todos,
)
from mendflow.tasks.detect.impact import content_hash, load_impact_map, select_tests  # noqa: E402

TOOLS = ToolsConfig.model_validate({"pytest": {"per_test_timeout_s": 60}})


def linters(sandbox, env):
    return [lambda: measure_ruff(sandbox, TOOLS), lambda: measure_mypy(sandbox, env, TOOLS),
            lambda: measure_bandit(sandbox, TOOLS), lambda: scan_todos(sandbox, TOOLS)]


def timed_run(jobs) -> tuple[float, list]:
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = [f.result() for f in [pool.submit(job) for job in jobs]]
    return time.monotonic() - start, results


def function_lines(root: Path, count: int) -> list[tuple[str, int, str]]:
    """(file, line, function) of the first body line of some covered functions."""
    import ast
    picks = []
    for rel in ("more_itertools/more.py", "more_itertools/recipes.py"):
        tree = ast.parse((root / rel).read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.body:
                first = node.body[0]
                if isinstance(first, ast.Expr) and len(node.body) > 1:  # skip the docstring
                    first = node.body[1]
                if first.lineno == first.end_lineno:
                    picks.append((rel, first.lineno, node.name))
    step = max(len(picks) // count, 1)
    return picks[::step][:count]


def one_function_patch(root: Path, rel: str, line: int, name: str) -> Patch:
    path = root / rel
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[line - 1] = lines[line - 1].rstrip("\n") + "  # touched\n"
    path.write_text("".join(lines), encoding="utf-8")
    diff = git(root, "diff")
    return Patch(id=f"touch-{name}", fixer="bench", finding_ids=(), diff=diff + "\n",
                 files=(rel,), title=name)


def part_one(source: Path, work: Path, count: int) -> None:
    root = clone(source, work / "validate")
    sandbox = make_sandbox(root)
    env = TargetEnv(python=Path(sys.executable), kind="interpreter", fingerprint="bench")
    impact_file = work / "impact.json"
    base_s, results = timed_run([lambda: measure_tests(sandbox, env, TOOLS,
                                                       impact_file=impact_file),
                                 *linters(sandbox, env)])
    impact = load_impact_map(impact_file)
    run = results[0].test_run
    failed = {c.nodeid for c in run.cases if c.outcome in ("failed", "error")}
    print(f"repository      {source}: {run.collected} tests, baseline with contexts "
          f"{base_s:.1f} s")
    selective, full = [], []
    for rel, line, name in function_lines(root, count):
        before = {rel: content_hash(root / rel)}
        patch = one_function_patch(root, rel, line, name)
        chosen = select_tests(impact, patch, before, failed)
        if chosen.nodeids is None:
            print(f"  {name:28s} full suite ({chosen.reason})")
            git(root, "checkout", "-q", "--", rel)
            continue
        quick_s, quick = timed_run([lambda ids=chosen.nodeids: measure_tests(
                                        sandbox, env, TOOLS, select=ids),
                                    *linters(sandbox, env)])
        full_s, _ = timed_run([lambda: measure_tests(sandbox, env, TOOLS),
                               *linters(sandbox, env)]) if len(full) < 3 else (None, None)
        git(root, "checkout", "-q", "--", rel)
        selective.append(quick_s)
        if full_s is not None:
            full.append(full_s)
        print(f"  {name:28s} selective {quick_s:6.1f} s ({len(quick[0].test_run.cases):4d} "
              f"tests)" + (f"   full {full_s:6.1f} s ({run.collected} tests)" if full_s else ""))
    if selective and full:
        ratio = statistics.median(selective) / statistics.median(full)
        print(f"median selective {statistics.median(selective):.1f} s, median full "
              f"{statistics.median(full):.1f} s: ratio {ratio:.2f}  (goal <= 0.25)")


def part_two(work: Path, bugs: int, modes: tuple[bool, ...] = (False, True)) -> None:
    from oracle import generate, make_repo, oracle

    from tests.fakes import fake_messages_api as api

    files, generated = generate(bugs, 7)
    for select in modes:
        repo = make_repo(work / f"shop-{select}", files)
        env = {**os.environ, "MENDFLOW_HOME": str(work / f"home-{select}"),
               "PREFECT_HOME": str(work / "prefect"), "DO_NOT_TRACK": "1",
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "ANTHROPIC_API_KEY": "sk-ant-bench-validate-0000"}
        env.pop("PREFECT_API_URL", None)
        with api.FakeMessagesAPI() as fake:
            fake.respond_with(oracle(generated))
            config = work / f"config-{select}.json"
            config.write_text(json.dumps({
                "environment": {"type": "interpreter", "python": sys.executable},
                "fixer": {"type": "anthropic", "base_url": fake.root_url, "model": "oracle"},
                "validation": {"select_tests": select}}))
            start = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "mendflow.cli", "mission", "run",
                                   str(repo), "--config", str(config), "--json"],
                                  env=env, capture_output=True, text=True)
            wall = time.monotonic() - start
        if proc.returncode not in (0, 2):
            print(f"mission failed ({proc.returncode}): {proc.stderr[-2000:]}")
            continue
        result = json.loads(proc.stdout)
        runs = result["timings"]["validations"]
        accepted = sum(p["status"] == "accepted" for p in result["patches"])
        print(f"mission, select_tests={str(select).lower():5s} {wall:6.1f} s: {accepted} of "
              f"{bugs} accepted, {sum(v['full_run'] for v in runs)} full run(s), "
              f"{sum(not v['full_run'] for v in runs)} selective, validations "
              f"{sum(v['duration_s'] for v in runs):.1f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", nargs="?", type=Path)
    parser.add_argument("--package", default="more-itertools==10.5.0")
    parser.add_argument("--patches", type=int, default=7)
    parser.add_argument("--mission-bugs", type=int, default=12)
    parser.add_argument("--no-mission", action="store_true")
    parser.add_argument("--mission-only", choices=("both", "select", "full"),
                        help="skip part 1; run the mission with selection on, off or both")
    opts = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mendflow-bench-validate-"))
    if opts.mission_only:
        modes = {"both": (False, True), "select": (True,), "full": (False,)}[opts.mission_only]
        part_two(work, opts.mission_bugs, modes)
        return
    source = opts.repo or fetch_sdist(opts.package, work)
    part_one(source, work, opts.patches)
    if not opts.no_mission:
        part_two(work, opts.mission_bugs)


if __name__ == "__main__":
    main()
