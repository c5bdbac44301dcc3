"""Benchmark a fleet on a PostgreSQL-backed Prefect server: 1 worker versus 2 workers.

Usage::

    .venv/bin/python bench/fleet.py [--repos N]

It starts a throwaway PostgreSQL 15 cluster (as the ``postgres`` user when run
as root), ``prefect server start`` on it, ``mendflow fleet deploy --pool``, and
``prefect worker start --pool`` processes, each with its own MENDFLOW_HOME (a
host), then prints, asserting nothing:

(a) the server's overhead for one mission: the wall time of ``mendflow fleet
    run --wait`` on a one-repository fleet minus the time the flow run spent
    Running, and the part of it from the run's creation to its start (queueing,
    the worker's poll, the flow-run process start and imports);
(b) the throughput (missions per minute) of a fleet of N repositories with 1
    worker, then with 2 workers (``limits.concurrent_missions`` = N), and their
    ratio.

Both workers share this machine's cores, so (b) measures the engine's ability
to spread missions, not the speed of two real hosts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.fleet import (  # noqa: I001
    Fleet,
    make_bare_repos,
    start_postgres,
    start_server,
    start_worker,
    wait_workers,
    write_fleet,
)

POOL = "bench-fleet"


def run_fleet(fleet: Fleet, spec: Path) -> tuple[float, list[dict]]:
    """``mendflow fleet run SPEC --wait --json``: (wall seconds, runs)."""
    started = time.monotonic()
    done = fleet.mendflow("fleet", "run", str(spec), "--pool", POOL, "--wait", "--json",
                          check=False, timeout=3600)
    wall = time.monotonic() - started
    runs = json.loads(done.stdout)["runs"]
    return wall, runs


def running_seconds(fleet: Fleet, run_id: str) -> float:
    """The flow run's start-to-end time on the server."""
    run = fleet.server.api("GET", f"/flow_runs/{run_id}")
    return (datetime.fromisoformat(run["end_time"])
            - datetime.fromisoformat(run["start_time"])).total_seconds()


def dispatch_seconds(fleet: Fleet, run_id: str) -> float:
    """From the flow run's creation to its start: queue, the worker's poll, the process start."""
    run = fleet.server.api("GET", f"/flow_runs/{run_id}")
    return (datetime.fromisoformat(run["start_time"])
            - datetime.fromisoformat(run["created"])).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repos", type=int, default=4, help="repositories in the fleet")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="mendflow-bench-fleet-"))
    t0 = time.monotonic()
    postgres = start_postgres(base / "pg")
    server = start_server(base / "server", postgres.url())
    fleet = Fleet(postgres=postgres, server=server, pool=POOL, base=base)
    try:
        print(f"PostgreSQL + Prefect server up in {time.monotonic() - t0:.1f} s")
        fleet.mendflow("fleet", "deploy", "--pool", POOL)
        shared = base / "results"
        shared.mkdir()
        fleet.workers.append(start_worker(server, POOL, "host-a", base / "hosts", shared))
        wait_workers(server, POOL, 1)
        repos = make_bare_repos(base / "repos", args.repos + 1)
        urls = [repo.as_uri() for repo in repos]

        wall, runs = run_fleet(fleet, write_fleet(base / "one.yaml", urls[-1:]))
        inside = running_seconds(fleet, runs[0]["flow_run_id"])
        dispatch = dispatch_seconds(fleet, runs[0]["flow_run_id"])
        print(f"(a) one mission, 1 idle worker: {wall:.1f} s end to end, {inside:.1f} s Running; "
              f"overhead {wall - inside:.1f} s per mission ({100 * (wall - inside) / wall:.0f} %): "
              f"{dispatch:.1f} s from the run's creation to its start (queue, worker poll, "
              f"flow-run process start), the rest the CLI (start, submit, --wait polling)")

        spec = write_fleet(base / "fleet.yaml", urls[:-1], concurrent=args.repos)
        wall1, runs1 = run_fleet(fleet, spec)
        fleet.workers.append(start_worker(server, POOL, "host-b", base / "hosts", shared))
        wait_workers(server, POOL, 2)
        wall2, runs2 = run_fleet(fleet, spec)
        for label, wall_s, runs in (("1 worker ", wall1, runs1), ("2 workers", wall2, runs2)):
            ok = sum(run["state"] == "COMPLETED" for run in runs)
            mean_run = sum(running_seconds(fleet, r["flow_run_id"]) for r in runs) / len(runs)
            print(f"(b) {label}: {len(runs)} missions ({ok} completed) in {wall_s:.1f} s = "
                  f"{60 * len(runs) / wall_s:.2f} missions/min; mean flow run {mean_run:.1f} s")
        print(f"    2 workers / 1 worker throughput: {wall1 / wall2:.2f}x")
    finally:
        fleet.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
