"""Benchmark Prefect's share of a mission: wall time minus the time spent in tools, git and
model calls.

Usage::

    .venv/bin/python bench/overhead.py [--bugs 12] [--select | --no-select]

One default mission runs in this process (``maintenance_mission``, Prefect's
ephemeral API started by a warm-up flow run first, reported apart) on the
generated repository of ``bench/oracle.py`` (``--bugs`` one-line bugs), with the
Claude fixer on the fake Messages API scripted as a perfect model. While it
runs, :mod:`mendflow.infra.busy` records every span spent waiting on a tool
subprocess (``run_process``), on git (``run_git``) and on a model call. It
prints the mission's wall time, the time covered by those spans (concurrent
spans count once) per kind and together, and the rest: the time the mission's
own Python spends, which is Prefect's orchestration (task runs, result
persistence, state changes against the API) plus mendflow's parsing and
bookkeeping, as a share of the wall time (goal: <= 5 %). It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bugs", type=int, default=12)
    parser.add_argument("--select", action=argparse.BooleanOptionalAction, default=True)
    opts = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mendflow-bench-overhead-"))
    os.environ.update({"MENDFLOW_HOME": str(work / "mendflow"),
                       "PREFECT_HOME": str(work / "prefect"), "DO_NOT_TRACK": "1",
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "ANTHROPIC_API_KEY": "sk-ant-bench-overhead-0000",
                       "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600"})
    os.environ.pop("PREFECT_API_URL", None)

    from oracle import generate, make_repo, oracle
    from prefect import flow

    from mendflow.flows.mission import maintenance_mission
    from mendflow.infra import busy
    from tests.fakes import fake_messages_api as api

    @flow
    def warm_up() -> int:
        return 1

    start = time.monotonic()
    warm_up()
    warm = time.monotonic() - start
    files, bugs = generate(opts.bugs, 7)
    repo = make_repo(work / "shop", files)
    with api.FakeMessagesAPI() as fake:
        fake.respond_with(oracle(bugs))
        config = work / "mendflow.json"
        config.write_text(json.dumps({
            "environment": {"type": "interpreter", "python": sys.executable},
            "fixer": {"type": "anthropic", "base_url": fake.root_url, "model": "oracle"},
            "validation": {"select_tests": opts.select}}))
        busy.start()
        start = time.monotonic()
        result = maintenance_mission(path=str(repo), config_file=str(config),
                                     mission_id="overhead")
        wall = time.monotonic() - start
        spans = busy.stop()
    accepted = sum(p.status == "accepted" for p in result.patches)
    print(f"warm-up flow run      {warm:6.1f} s (Prefect's ephemeral API start; not counted)")
    print(f"mission               {wall:6.1f} s ({opts.bugs} bugs, {accepted} accepted, "
          f"select_tests={str(opts.select).lower()})")
    for kind in ("tool", "git", "model"):
        mine = [s for s in spans if s[0] == kind]
        print(f"  in {kind:5s}            {busy.union_s(mine):6.1f} s ({len(mine)} spans)")
    waiting = busy.union_s(spans)
    rest = wall - waiting
    print(f"  tools+git+model     {waiting:6.1f} s")
    print(f"  the rest            {rest:6.1f} s = {rest / wall:.1%} of the mission "
          "(Prefect's orchestration + mendflow's own Python; goal <= 5 %)")


if __name__ == "__main__":
    main()
