"""Benchmark the outcome store and the audit trail: what learning adds to a mission.

Usage::

    .venv/bin/python bench/outcomes.py [--groups 200] [--url SQLALCHEMY_URL]

Prints, for the default SQLite store (WAL) in a temporary state directory (or ``--url``):
the time to open a store the first time (Alembic migration) and again; the time per
``record_attempts`` call of one group (what a mission pays after each group); the time
to read a repository's priors and its stats; and the time per audit append. Asserts
nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mendflow.core.learning import AttemptRecord  # noqa: E402
from mendflow.infra import audit  # noqa: E402
from mendflow.infra.outcomes import OutcomeStore, dispose_engines  # noqa: E402


def record(n: int) -> AttemptRecord:
    return AttemptRecord(
        key=f"bench:{n}", mission_id=f"m{n // 20}", repository="/repo", finding_id=f"f{n}",
        source="ruff", rule="F401", category=("lint", "type", "test-failure")[n % 3],
        severity="low", path="pkg/a.py", strategy=("big", "small")[n % 2], fixer="anthropic",
        result=("accepted", "rejected")[n % 3 == 0], tokens_in=4000, tokens_out=400,
        cost_usd=0.09, wall_s=1.0, created_at=datetime.now(timezone.utc))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--url", default=None)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="mendflow-bench-outcomes-"))
    t = time.perf_counter()
    store = OutcomeStore.open(args.url, state)
    first_open = time.perf_counter() - t
    dispose_engines()
    t = time.perf_counter()
    store = OutcomeStore.open(args.url, state)
    reopen = time.perf_counter() - t
    writes = []
    for n in range(args.groups):
        t = time.perf_counter()
        store.record_attempts([record(n)])
        writes.append(time.perf_counter() - t)
    t = time.perf_counter()
    store.priors("/repo")
    priors = time.perf_counter() - t
    t = time.perf_counter()
    store.strategy_stats()
    stats = time.perf_counter() - t
    appends = []
    for n in range(args.groups):
        t = time.perf_counter()
        audit.append(state, who=audit.AUTOMATION, what="commit", details={"n": n})
        appends.append(time.perf_counter() - t)
    t = time.perf_counter()
    verdict = audit.verify(state)
    verify = time.perf_counter() - t
    print(f"store: {store.engine.url.get_backend_name()} at {state}")
    print(f"open + migrate (new store): {first_open * 1000:.0f} ms; open again (new process "
          f"state): {reopen * 1000:.0f} ms")
    print(f"record one group's attempts: median {statistics.median(writes) * 1000:.1f} ms, "
          f"p95 {sorted(writes)[int(0.95 * len(writes))] * 1000:.1f} ms ({args.groups} calls)")
    print(f"priors of a repository ({args.groups} rows): {priors * 1000:.1f} ms; "
          f"stats: {stats * 1000:.1f} ms")
    print(f"audit append: median {statistics.median(appends) * 1000:.2f} ms (fsync); verify "
          f"{verdict.entries} entries: {verify * 1000:.1f} ms")


if __name__ == "__main__":
    main()
