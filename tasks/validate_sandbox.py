"""The ``sandbox`` gate: did the patched code hit a limit of the isolation?

The target's code runs under bubblewrap (see :mod:`mendflow.infra.isolation`):
no network, a read-only machine, hidden home/state/checkout, and resource
limits. Code that tries to escape fails with a recognisable error (``Connection
refused``, ``Read-only file system``, ``MemoryError``, ``[Errno 11]`` from
``fork``, ``File too large``, SIGXCPU). This gate looks for those errors in
what the patched tree's test run reported (failing tests' messages and
tracebacks, collection errors, the runner's crash output and exit status) that
the baseline did not report, and names the limit each one hit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mendflow.core.models import GateResult, Measurement

_SIGXCPU, _SIGXFSZ = 24, 25


@dataclass(frozen=True)
class Limit:
    """One limit of the sandbox and the error text that shows it was hit.

    Attributes:
        name: the limit, as reported (``process limit`` ...).
        setting: the config field that sets it.
        pattern: a regular expression over test output.
    """

    name: str
    setting: str
    pattern: re.Pattern[str]


LIMITS = (
    Limit("network (the sandbox has none)", "sandbox.isolation",
          re.compile(r"Connection refused|Network is unreachable|\[Errno 1(01|11)\]|"
                     r"Temporary failure in name resolution|Name or service not known")),
    Limit("read-only filesystem (only the worktree and a private /tmp are writable)",
          "sandbox.isolation", re.compile(r"Read-only file system|\[Errno 30\]")),
    Limit("hidden path (the user's home, mendflow's state and the checkout are not visible)",
          "sandbox.hide", re.compile(r"No such file or directory: '/")),
    Limit("process limit", "sandbox.limits.max_processes",
          re.compile(r"BlockingIOError|Resource temporarily unavailable|\[Errno 11\]|"
                     r"can't start new thread")),
    Limit("address-space limit", "sandbox.limits.address_space_mb",
          re.compile(r"MemoryError|Cannot allocate memory|\[Errno 12\]")),
    Limit("file-size limit", "sandbox.limits.file_size_mb",
          re.compile(r"File too large|\[Errno 27\]")),
    Limit("CPU-time limit", "sandbox.limits.cpu_time_s",
          re.compile(r"SIGXCPU|CPU time limit exceeded")),
)


def run_texts(measurement: Measurement) -> list[tuple[str, str]]:
    """``(where, text)`` pairs of everything a measurement's test run said went wrong.

    Args:
        measurement: a measurement (its ``pytest`` result and pytest findings).

    Returns:
        One pair per failing/erroring test (node id, message + traceback), per
        pytest finding (path, message + detail) and, when pytest itself failed,
        its error text and an exit-status line (``exit 152 (SIGXCPU)``).
    """
    texts: list[tuple[str, str]] = []
    result = measurement.result_of("pytest")
    if result is not None and result.test_run is not None:
        texts += [(c.nodeid, f"{c.message or ''}\n{c.detail or ''}")
                  for c in result.test_run.cases if c.outcome in ("failed", "error")]
    texts += [(f.test_id or f.path, f"{f.message}\n{f.detail or ''}")
              for f in measurement.findings if f.source == "pytest"]
    if result is not None and not result.ok:
        texts.append(("pytest", result.error or ""))
        signal = _signal_of(result.exit_code)
        if signal == _SIGXCPU:
            texts.append(("pytest", f"exit {result.exit_code} (SIGXCPU)"))
        elif signal == _SIGXFSZ:
            texts.append(("pytest", f"exit {result.exit_code} (SIGXFSZ): File too large"))
    return texts


def _signal_of(exit_code: int | None) -> int | None:
    """The signal that ended a process: ``-N`` from Python, ``128+N`` from a shell or bwrap."""
    if exit_code is None:
        return None
    if exit_code < 0:
        return -exit_code
    return exit_code - 128 if 128 < exit_code < 160 else None


def limits_hit(texts: Iterable[tuple[str, str]]) -> dict[Limit, list[str]]:
    """Which limits the texts show were hit, and where (``{limit: [where: line]}``)."""
    hits: dict[Limit, list[str]] = {}
    for where, text in texts:
        for limit in LIMITS:
            match = limit.pattern.search(text)
            if match is not None:
                line = next((ln.strip() for ln in text.splitlines() if match.group(0) in ln),
                            match.group(0))
                hits.setdefault(limit, []).append(f"{where}: {line[:200]}")
    return hits


def gate_sandbox(baseline: Measurement, after: Measurement) -> GateResult:
    """``sandbox``: the patched code hit no limit of the isolation that the baseline did not.

    Args:
        baseline: the measurement the patch was applied on.
        after: the measurement of the patched tree.

    Returns:
        A failed gate whose detail's first line is ``hit: <limit> [<setting>]; ...``,
        then each limit with the tests that hit it; else a passed gate.
    """
    before = limits_hit(run_texts(baseline))
    now = limits_hit(run_texts(after))
    new = {limit: where for limit, where in now.items() if limit not in before}
    if not new:
        return GateResult(gate="sandbox", passed=True, detail="no sandbox limit was hit")
    lines = ["hit: " + "; ".join(f"{limit.name} [{limit.setting}]" for limit in new)]
    for limit, where in new.items():
        lines.append(f"the patched code hit the sandbox's {limit.name} ({limit.setting}):")
        lines += [f"  {w}" for w in where[:5]]
    return GateResult(gate="sandbox", passed=False, detail="\n".join(lines))
