"""stop_all_processes: a Ctrl-C stops the tools of every thread, and none of them is a result.

It sets a process-wide flag for good, so each case runs in a fresh Python process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, sys, threading, time
    from pathlib import Path
    from mendflow.infra.runner import ToolsStopped, run_process, stop_all_processes

    outcome = {}

    def tool():  # a tool in a worker thread, as Prefect's task runner runs them
        try:
            run_process([sys.executable, "-c", "import time; time.sleep(60)"],
                        cwd=Path("."), timeout_s=120)
            outcome["thread"] = "returned a result"
        except ToolsStopped:
            outcome["thread"] = "ToolsStopped"

    worker = threading.Thread(target=tool)
    worker.start()
    time.sleep(1.0)
    start = time.monotonic()
    outcome["stopped"] = stop_all_processes(grace_s=1.0)
    worker.join(30)
    outcome["seconds"] = time.monotonic() - start
    try:
        run_process([sys.executable, "-c", "pass"], cwd=Path("."), timeout_s=10)
        outcome["after"] = "started"
    except ToolsStopped:
        outcome["after"] = "refused"
    print(json.dumps(outcome))
""")


def test_stop_all_processes_stops_a_tool_of_another_thread_and_starts_no_other(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["stopped"] == 1
    assert outcome["thread"] == "ToolsStopped"  # a killed tool's output is never a result
    assert outcome["seconds"] < 10
    assert outcome["after"] == "refused"
