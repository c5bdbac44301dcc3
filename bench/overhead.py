"""Benchmark Prefect's share of a mission: wall time minus the time spent in tools, git and
model calls.

Usage::

    .venv/bin/python bench/overhead.py [REPO] [--bugs 12] [--select | --no-select]

One default mission runs in this process (``maintenance_mission``, Prefect's
ephemeral API started by a warm-up flow run first, reported apart): on the
generated repository of ``bench/oracle.py`` (``--bugs`` one-line bugs), with the
Claude fixer on the fake Messages API scripted as a perfect model; or, given
``REPO``, on a clone of it with the offline fixer (a real project's suite). While it
runs, :mod:`mendflow.infra.busy` records every span spent waiting on a tool
subprocess (``run_process``), on git (``run_git``) and on a model call. It
prints the mission's wall time, the time covered by those spans (concurrent
spans count once) per kind and together, and the rest: the time the mission's
own Python spends, as a share of the wall time (goal: <= 5 %), split in two
with the task runs' own start and end times read back from the Prefect API:

* mendflow's Python inside task bodies (parsing tool output, findings, scoring,
  bookkeeping): the time covered by task runs but not by a tool, git or model span;
* Prefect's orchestration and the flow's own code: the time no task run covers
  (creating task runs, cache lookups, state changes, result persistence around
  the bodies, and the flow function between its task calls).

It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from mendflow.infra import busy  # noqa: E402  (imports no Prefect: the env is set first)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", nargs="?", type=Path,
                        help="a git repository: a mission with the offline (ruff) fixer on a "
                             "clone of it, instead of the generated bugs and the Claude fixer")
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

    from prefect import flow

    @flow
    def warm_up() -> int:
        return 1

    start = time.monotonic()
    warm_up()
    warm = time.monotonic() - start
    config = {"environment": {"type": "interpreter", "python": sys.executable},
              "validation": {"select_tests": opts.select}}
    if opts.repo is not None:
        repo = work / "repo"
        subprocess.run(["git", "clone", "-q", str(opts.repo), str(repo)], check=True)
        wall, spans, result = run_mission(work, repo, config)
        what = f"{repo.name}, offline fixer"
    else:
        from oracle import generate, make_repo, oracle

        from tests.fakes import fake_messages_api as api

        files, bugs = generate(opts.bugs, 7)
        repo = make_repo(work / "shop", files)
        with api.FakeMessagesAPI() as fake:
            fake.respond_with(oracle(bugs))
            config["fixer"] = {"type": "anthropic", "base_url": fake.root_url, "model": "oracle"}
            wall, spans, result = run_mission(work, repo, config)
        what = f"{opts.bugs} bugs"
    bodies = task_run_spans(result.flow_run_id, result.started_mono - result.started_wall)
    accepted = sum(p.status == "accepted" for p in result.mission.patches)
    print(f"warm-up flow run      {warm:6.1f} s (Prefect's ephemeral API start; not counted)")
    print(f"mission               {wall:6.1f} s ({what}, {accepted} accepted, "
          f"select_tests={str(opts.select).lower()})")
    print_split(wall, spans, bodies)


@dataclass
class Timed:
    """A mission's result and the two clocks at its start."""

    mission: object
    flow_run_id: str | None
    started_mono: float
    started_wall: float


def run_mission(work: Path, repo: Path, config: dict) -> tuple[float, list, Timed]:
    """One mission in this process, with busy spans recorded: (wall s, spans, Timed)."""
    from mendflow.flows.mission import maintenance_mission

    path = work / "mendflow.json"
    path.write_text(json.dumps(config))
    busy.start()
    start, start_wall = time.monotonic(), time.time()
    result = maintenance_mission(path=str(repo), config_file=str(path), mission_id="overhead")
    wall = time.monotonic() - start
    spans = busy.stop()
    return wall, spans, Timed(result, result.flow_run_id, start, start_wall)


def print_split(wall: float, spans: list[tuple[str, float, float]],
                bodies: list[tuple[str, float, float]]) -> None:
    """Print where the mission's wall time went: tools, git, model, mendflow, Prefect."""
    for kind in ("tool", "git", "model"):
        mine = [s for s in spans if s[0] == kind]
        print(f"  in {kind:5s}            {busy.union_s(mine):6.1f} s ({len(mine)} spans)")
    waiting = busy.union_s(spans)
    rest = wall - waiting
    in_tasks = busy.union_s([*spans, *bodies])
    print(f"  tools+git+model     {waiting:6.1f} s")
    print(f"  the rest            {rest:6.1f} s = {rest / wall:.1%} of the mission "
          "(Prefect's orchestration + mendflow's own Python; goal <= 5 %)")
    print(f"    mendflow's Python {in_tasks - waiting:6.1f} s = {(in_tasks - waiting) / wall:.1%}"
          f" (inside {len(bodies)} task runs, outside tools, git and model calls)")
    print(f"    Prefect + flow    {wall - in_tasks:6.1f} s = {(wall - in_tasks) / wall:.1%}"
          " (no task body running: task-run creation, cache lookups, states, results)")
    for name, own, count in own_python_by_task(bodies, spans)[:8]:
        print(f"      {name:28s} {own:6.2f} s of mendflow's Python in {count} runs")


def task_run_spans(flow_run_id: str | None, offset_s: float) -> list[tuple[str, float, float]]:
    """The flow run's task runs as ``("task", start, end)`` spans on ``time.monotonic``'s
    clock (``offset_s`` = monotonic minus wall-clock seconds), read from the Prefect API
    once the server has recorded them all (task runs are recorded from events)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    if flow_run_id is None:
        return []
    flows = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    runs: list = []
    with get_client(sync_client=True) as client:
        for _ in range(30):  # until two reads agree
            time.sleep(1.0)
            seen, offset = [], 0
            while page := client.read_task_runs(flow_run_filter=flows, offset=offset, limit=200):
                seen.extend(page)
                offset += len(page)
            if seen and len(seen) == len(runs):
                break
            runs = seen
    return [(r.name.rsplit("-", 1)[0], r.start_time.timestamp() + offset_s,
             r.end_time.timestamp() + offset_s)
            for r in runs if r.start_time is not None and r.end_time is not None]


def own_python_by_task(bodies: list[tuple[str, float, float]],
                       spans: list[tuple[str, float, float]]) -> list[tuple[str, float, int]]:
    """Per task: seconds of its bodies not covered by a tool, git or model span, and runs."""
    totals: dict[str, list[float]] = {}
    for name, start, end in bodies:
        inside = [(k, max(a, start), min(b, end)) for k, a, b in spans if a < end and b > start]
        entry = totals.setdefault(name, [0.0, 0])
        entry[0] += (end - start) - busy.union_s(inside)
        entry[1] += 1
    return sorted(((n, t, int(c)) for n, (t, c) in totals.items()), key=lambda x: -x[1])


if __name__ == "__main__":
    main()
