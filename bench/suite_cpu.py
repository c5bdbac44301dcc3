"""CPU seconds of test files: pytest and every process it started, servers included.

Wall time is noisy on a shared machine; CPU seconds are not (much). For each test file
given, runs ``python -m pytest -p no:cacheprovider -q FILE`` (one file at a time, no
xdist) as a child of this script, which makes itself a child subreaper
(``prctl(PR_SET_CHILD_SUBREAPER)``): processes that outlive their parent (servers
started in a session of their own and killed by group, flow-run processes) are
re-parented to this script and reaped here, so ``getrusage(RUSAGE_CHILDREN)`` counts
them too. Prints user + system CPU seconds, wall seconds and the pytest summary line.

Usage: ``python bench/suite_cpu.py tests/e2e/test_fleet.py [more files or node ids...]``
(extra pytest arguments after ``--``). Asserts nothing; prints figures.
"""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def _reap_all() -> None:
    """Wait for every remaining descendant re-parented to this process."""
    while True:
        try:
            pid, _ = os.waitpid(-1, 0)
        except ChildProcessError:
            return
        if pid == 0:
            return


def measure(target: list[str], extra: list[str]) -> tuple[float, float, str]:
    """(CPU seconds, wall seconds, last line of pytest's output) of one pytest run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           *target, *extra], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    _reap_all()
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return cpu, wall, (lines[-1] if lines else done.stderr[-300:])


def main(argv: list[str]) -> None:
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    for target in argv:
        cpu, wall, summary = measure([target], extra)
        print(f"{cpu:8.1f} cpu-s {wall:8.1f} wall-s  {target}  [{summary}]", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
