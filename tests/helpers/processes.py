"""Killing a CLI subprocess at a chosen point of its progress output, as a crash would."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest


def kill_when(proc: subprocess.Popen[str], marker: str, nth: int = 1, delay_s: float = 0.0,
              timeout_s: float = 300) -> str:
    """SIGKILL ``proc``'s whole process group once ``marker`` showed ``nth`` times on stderr.

    Args:
        proc: a process started in its own session, stderr piped as text.
        marker: the text to wait for in a stderr line.
        nth: kill at its nth appearance.
        delay_s: seconds to wait after it before the kill.
        timeout_s: give up (kill, fail the test) after this many seconds.

    Returns:
        The stderr lines read up to the kill.
    """
    seen, lines = 0, []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            seen += 1
            if seen == nth:
                time.sleep(delay_s)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
                return "".join(lines)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pytest.fail(f"the process never printed {marker!r} {nth} time(s):\n{''.join(lines)}")
