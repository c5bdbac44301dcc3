"""Benchmark of healing: exception raised → validated commit, and the hook's cost.

Usage::

    .venv/bin/python bench/heal.py [--runs 2] [--exceptions 2000]

1. **Raised → committed.** A small real application (``tests/helpers/heal.py``'s
   shop) runs in a subprocess with :func:`mendflow.heal.install` and raises a
   ZeroDivisionError; its ``mendflow.exception.raised`` event goes to a local
   events endpoint. The ``heal`` flow then runs in this process on that event
   (what the served deployment's trigger does), with the real anthropic SDK
   against the fake Messages API answering a reproduction test and a fix:
   baseline, reproduction on the unfixed tree, the fix, every gate, the commit.
   Printed: seconds from the exception's timestamp to the flow's return, per
   run (the first run of a process also starts Prefect's temporary API).
2. **Hook overhead.** In this process, the time the hook spends in the raising
   thread per exception (payload, fingerprint, queue), for a new fingerprint
   each time and for repeats held back by the rate limit, against the cost of
   raising and catching the exception alone.

It asserts nothing; it prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")

from tests.fakes.server import FakeServer, ScriptedReply  # noqa: E402
from tests.helpers.git import git, write_files  # noqa: E402
from tests.helpers.heal import FIX, GOOD_TEST, SHOP_FILES, heal_config, heal_reply  # noqa: E402

APP = """
import os, mendflow.heal
from shop.report import daily
mendflow.heal.install(repository=os.environ["APP_REPO"], api_url=os.environ["APP_API"],
                      spool_dir=os.environ["APP_SPOOL"])
daily([])
"""


def make_repo(root: Path) -> Path:
    write_files(root, SHOP_FILES)
    (root / "app.py").write_text(APP)
    git(root, "init", "-q", "-b", "main")
    git(root, "-c", "user.email=b@example.com", "-c", "user.name=bench", "add", "-A")
    git(root, "-c", "user.email=b@example.com", "-c", "user.name=bench", "commit", "-q", "-m", "shop")
    return root


def raise_in_app(repo: Path, work: Path) -> dict:
    """Run the application; return the event its hook sent."""
    with FakeServer("/api/events") as events:
        events.respond_with(lambda request: ScriptedReply(status=204, body=b""))
        env = {**os.environ, "APP_REPO": str(repo), "APP_API": f"{events.root_url}/api",
               "APP_SPOOL": str(work / "spool"), "PYTHONPATH": str(repo)}
        subprocess.run([sys.executable, "app.py"], cwd=repo, env=env, capture_output=True,
                       timeout=120)
        return events.requests[0].json[0]


def raised_to_commit(runs: int) -> None:
    from mendflow.flows.heal import heal
    from tests.fakes.fake_messages_api import FakeMessagesAPI

    os.environ["ANTHROPIC_API_KEY"] = "sk-ant-bench-0000000000"
    print("== raised -> validated commit (fake model) ==")
    for number in range(1, runs + 1):
        with tempfile.TemporaryDirectory(prefix="mendflow-bench-heal-") as tmp, \
                FakeMessagesAPI() as fake:
            work = Path(tmp)
            os.environ["MENDFLOW_HOME"] = str(work / "home")
            repo = make_repo(work / "shop")
            fake.enqueue(heal_reply([GOOD_TEST, FIX]))
            config = heal_config(work, fake)
            event = raise_in_app(repo, work)
            raised = datetime.fromisoformat(event["payload"]["timestamp"]).timestamp()
            started = time.time()
            result = heal(repo=str(repo), event=event["payload"], config_file=str(config))
            done = time.time()
            print(f"run {number}: {result.heal_status}, commit {str(result.commit)[:10]}, "
                  f"test {result.reproduction_test}; raised -> committed {done - raised:.1f} s "
                  f"(event delivery + app exit {started - raised:.1f} s, heal flow "
                  f"{done - started:.1f} s)")


def hook_overhead(count: int) -> None:
    import mendflow.heal

    print("== hook overhead per exception (in the raising thread) ==")
    with tempfile.TemporaryDirectory() as tmp, FakeServer("/api/events") as events:
        events.respond_with(lambda request: ScriptedReply(status=204, body=b""))
        hook = mendflow.heal.install(repository=tmp, api_url=f"{events.root_url}/api",
                                     spool_dir=Path(tmp) / "spool", rate_limit_s=3600)

        def fail(n: int) -> None:
            code = compile(f"def f{n}(d):\n    return d['missing']\n", f"/srv/app/mod{n}.py",
                           "exec")
            scope: dict = {}
            exec(code, scope)  # noqa: S102  (a distinct function, so a distinct fingerprint)
            scope[f"f{n}"]({})

        started = time.perf_counter()
        for n in range(count):
            try:
                fail(n % 50)
            except KeyError:
                pass
        alone = (time.perf_counter() - started) / count
        for n in range(count):
            try:
                fail(n)
            except KeyError as exc:
                hook.report(exc, "bench")
        new = hook.stats.mean_hook_s
        before_s, before_n = hook.stats.hook_s, hook.stats.exceptions
        for _ in range(count):
            try:
                fail(0)
            except KeyError as exc:
                hook.report(exc, "bench")
        repeat = (hook.stats.hook_s - before_s) / (hook.stats.exceptions - before_n)
        print(f"raise + catch alone: {alone * 1e6:.0f} us; hook, new fingerprint: "
              f"{new * 1e6:.0f} us (max {hook.stats.max_hook_s * 1e3:.1f} ms); hook, "
              f"rate-limited repeat: {repeat * 1e6:.0f} us; over {count} exceptions each")
        print(json.dumps({"rate_limited": hook.stats.rate_limited,
                          "dropped": hook.stats.dropped}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--exceptions", type=int, default=2000)
    args = parser.parse_args()
    hook_overhead(args.exceptions)
    raised_to_commit(args.runs)


if __name__ == "__main__":
    main()
