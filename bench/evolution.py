"""Benchmark the evolution loop: the cost of an unchanged cycle and of a cycle with one patch.

Usage::

    .venv/bin/python bench/evolution.py [--cycles N]

It builds a small repository (one ruff-fixable finding, two passing tests) with a
local bare repository as its remote (push only: ``delivery.forge: null``), in a
temporary directory with its own MENDFLOW_HOME and PREFECT_HOME, then runs in
one process:

(a) a warm-up flow run (starts Prefect's ephemeral API; reported separately);
(b) a cycle with one patch: sync, the mission (baseline, fix, validation), and
    the push of the PR branch;
(c) N unchanged cycles (the target branch has not moved, nothing pending): the
    cycle's own ``duration_s`` and the flow run's wall time.

It prints the figures and their ratio, and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def _setup(root: Path) -> tuple[Path, Path]:
    seed = root / "seed"
    (seed / "pkg").mkdir(parents=True)
    (seed / "tests").mkdir()
    (seed / "pkg" / "__init__.py").write_text("")
    (seed / "pkg" / "lib.py").write_text("import os\n\n\ndef add(a, b):\n    return a + b\n")
    (seed / "tests" / "test_lib.py").write_text(
        "from pkg.lib import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
        "def test_add_zero():\n    assert add(0, 0) == 0\n")
    _git(seed, "init", "-q", "-b", "main")
    _git(seed, "add", "-A")
    _git(seed, "commit", "-q", "-m", "initial")
    _git(root, "clone", "-q", "--bare", str(seed), str(root / "remote.git"))
    _git(root, "clone", "-q", str(root / "remote.git"), str(root / "work"))
    config = root / "evolve.yaml"
    config.write_text(
        "environment: {type: interpreter, python: " + sys.executable + "}\n"
        "tools: {mypy: {enabled: false}, bandit: {enabled: false}}\n"
        "mission: {max_iterations: 1}\n"
        "delivery: {remote: origin, forge: null}\n", encoding="utf-8")
    return root / "work", config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=5, help="unchanged cycles to time")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mendflow-bench-evolution-"))
    os.environ.update({"MENDFLOW_HOME": str(root / "home"), "PREFECT_HOME": str(root / "pf"),
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                       "PREFECT_LOGGING_LEVEL": "WARNING",
                       "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"})
    work, config = _setup(root)

    from prefect import flow

    from mendflow.flows.evolution import evolution_cycle

    t0 = time.perf_counter()
    flow(lambda: None, name="warm-up")()
    print(f"warm-up flow run (ephemeral API start): {time.perf_counter() - t0:.2f} s")

    t0 = time.perf_counter()
    first = evolution_cycle(path=str(work), config_file=str(config))
    patch_wall = time.perf_counter() - t0
    print(f"cycle with one patch: status {first.status}, {first.patches_accepted} accepted, "
          f"duration_s {first.duration_s:.2f} s, flow run wall {patch_wall:.2f} s")

    durations, walls = [], []
    for _ in range(args.cycles):
        t0 = time.perf_counter()
        record = evolution_cycle(path=str(work), config_file=str(config))
        walls.append(time.perf_counter() - t0)
        durations.append(record.duration_s)
        if record.status != "unchanged":
            print(f"note: cycle {record.cycle} was {record.status}, not unchanged")
    print(f"unchanged cycle (x{args.cycles}): duration_s median {statistics.median(durations):.3f}"
          f" s (max {max(durations):.3f}), flow run wall median {statistics.median(walls):.3f} s"
          f" (max {max(walls):.3f})")
    print(f"ratio unchanged / one-patch (flow run wall): "
          f"{statistics.median(walls) / patch_wall:.3f}")


if __name__ == "__main__":
    main()
