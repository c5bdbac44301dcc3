"""Run external tools as subprocesses that can always be stopped.

Prefect's ``timeout_seconds`` does not kill a task's subprocesses (in a worker
thread nothing is interrupted, in the main thread a grandchild survives), so
every tool runs in its own session and, on timeout, the whole process group is
killed. The environment handed to a tool is scrubbed
of anything that looks like a secret.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from mendflow.core.errors import ToolError
from mendflow.infra import busy
from mendflow.infra.owned_processes import register_process, unregister_process

_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()


class ToolsStopped(KeyboardInterrupt):
    """Raised by :func:`run_process` in every thread once :func:`stop_all_processes` ran.

    A ``KeyboardInterrupt`` (a ``BaseException``): a Prefect task that gets it
    crashes instead of completing, so the output of a tool killed by an
    interruption is never cached as a result.
    """

SECRET_NAME = re.compile(
    r"(KEY|TOKEN|SECRET|PASSW(OR)?D|PASSPHRASE|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|DSN)",
    re.IGNORECASE,
)
# Variables that would leak mendflow's own state or Prefect's into a tool.
_DROP_PREFIXES = ("PREFECT_", "MENDFLOW_", "VIRTUAL_ENV", "PYTHONHOME", "PYTEST_ADDOPTS",
                  "COVERAGE_", "CONDA_")


@dataclass(frozen=True)
class ProcessResult:
    """The outcome of one subprocess.

    Attributes:
        args: the command line.
        returncode: the exit status (negative: killed by that signal; None: timed out).
        stdout: decoded standard output.
        stderr: decoded standard error.
        duration_s: wall time in seconds.
        timed_out: True if the process group was killed on timeout.
    """

    args: tuple[str, ...]
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool

    def tail(self, lines: int = 30) -> str:
        text = (self.stdout + "\n" + self.stderr).strip()
        return "\n".join(text.splitlines()[-lines:])


def sandbox_environ(home: Path | None = None, extra: Mapping[str, str] | None = None,
                    base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Build the environment for a tool run: no secrets, no mendflow/Prefect state.

    Args:
        home: a private HOME for the tool (created if missing), with ``TMPDIR`` set to
            ``home/tmp``; or None to keep HOME and TMPDIR.
        extra: variables to add after scrubbing.
        base: the environment to start from (default ``os.environ``).

    Returns:
        A new mapping; every variable whose name looks like a secret
        (KEY, TOKEN, SECRET, PASSWORD, ...) is gone.
    """
    env = {
        name: value
        for name, value in (base if base is not None else os.environ).items()
        if not SECRET_NAME.search(name) and not name.startswith(_DROP_PREFIXES)
    }
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        env["HOME"] = str(home)
        # and a private temp dir: a tool's pytest run keeps only its 3 newest
        # ``$TMPDIR/pytest-of-<user>`` folders, and must not rotate the user's own away
        tmp = home / "tmp"
        tmp.mkdir(exist_ok=True)
        env["TMPDIR"] = str(tmp)
    env.setdefault("PYTHONIOENCODING", "utf-8")
    if extra:
        env.update(extra)
    return env


def run_process(args: Sequence[str | os.PathLike[str]], *, cwd: Path, timeout_s: float,
                env: Mapping[str, str] | None = None, input_text: str | None = None,
                keep_line_endings: bool = False) -> ProcessResult:
    """Run a command in a new session; on timeout kill its whole process group.

    Args:
        args: the command and its arguments.
        cwd: working directory.
        timeout_s: seconds before SIGTERM, then SIGKILL 5 s later, to the group.
        env: the environment (use :func:`sandbox_environ`); None inherits.
        input_text: text for standard input.
        keep_line_endings: keep CRLF line endings in stdout/stderr (read bytes, decode UTF-8)
            instead of translating newlines; needed to read diffs of CRLF files.

    Returns:
        A :class:`ProcessResult`; a non-zero exit is not an error here.

    Raises:
        ToolError: the executable does not exist.
    """
    argv = tuple(str(a) for a in args)
    if _STOPPING.is_set():
        raise ToolsStopped(f"not started, mendflow is stopping: {argv[0]}")
    start = time.monotonic()
    proc = _spawn(argv, cwd, env, input_text is not None, keep_line_endings)
    if keep_line_endings and input_text is not None:
        input_text = input_text.encode("utf-8")  # type: ignore[assignment]
    timed_out = False
    # recorded in <state>/procs so that `mendflow doctor` finds it if mendflow is killed
    registration = register_process(proc.pid, argv)
    with _LIVE_LOCK:
        _LIVE.add(proc)
    try:
        stdout, stderr = proc.communicate(input_text, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        stdout, stderr = proc.communicate()
    except BaseException:  # KeyboardInterrupt and friends: never leave the group behind
        _kill_group(proc)
        proc.communicate()
        raise
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc)
        unregister_process(registration)
    if _STOPPING.is_set():  # killed by stop_all_processes: not a result of the tool
        raise ToolsStopped(f"stopped: {argv[0]}")
    if keep_line_endings:
        stdout, stderr = (b.decode("utf-8", "replace") for b in (stdout, stderr))
    end = time.monotonic()
    busy.record("tool", start, end)
    return ProcessResult(argv, None if timed_out else proc.returncode, stdout, stderr,
                         end - start, timed_out)


def _spawn(argv: tuple[str, ...], cwd: Path, env: Mapping[str, str] | None, has_input: bool,
           keep_line_endings: bool) -> subprocess.Popen:
    """Start ``argv`` in a new session with piped output (:func:`run_process`).

    Raises:
        ToolError: the executable does not exist.
    """
    try:
        return subprocess.Popen(
            argv, cwd=cwd, env=dict(env) if env is not None else None, start_new_session=True,
            stdin=subprocess.PIPE if has_input else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=not keep_line_endings,
            encoding=None if keep_line_endings else "utf-8",
            errors=None if keep_line_endings else "replace",
        )
    except FileNotFoundError:
        raise ToolError(f"executable not found: {argv[0]}", subject=argv[0],
                        hint="install it or put it on PATH (see `mendflow doctor`)") from None


def stop_all_processes(grace_s: float = 2.0) -> int:
    """Stop every tool process group this process runs, in every thread, for good.

    Used on an interruption (Ctrl-C) or when Prefect's API is gone: tool runs
    in Prefect's worker threads do not see the ``KeyboardInterrupt`` of the main
    thread, and their groups are in sessions of their own (a terminal's Ctrl-C
    does not reach them). Each group gets SIGTERM, then SIGKILL after
    ``grace_s`` seconds. From then on :func:`run_process` starts nothing and
    raises :class:`ToolsStopped` in the threads whose tool was stopped.

    Args:
        grace_s: seconds between SIGTERM and SIGKILL.

    Returns:
        How many process groups were running.
    """
    _STOPPING.set()
    with _LIVE_LOCK:
        live = list(_LIVE)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in live:
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        if sig == signal.SIGTERM:  # the leaders get grace_s seconds to exit on SIGTERM
            psutil.wait_procs(_processes(p.pid for p in live if p.poll() is None),
                              timeout=grace_s)
    return len(live)


class _Member(psutil.Process):
    """A process awaited by :func:`psutil.wait_procs` that counts as gone once it is a zombie.

    A killed grandchild is reaped by its new parent (init or a subreaper), not by
    mendflow; it no longer runs once it is a zombie, so there is no need to wait for
    that reaping.
    """

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            if self.status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.NoSuchProcess:
            return None
        return super().wait(timeout)


def _processes(pids: Iterable[int]) -> list[psutil.Process]:
    """The processes of ``pids`` that still exist (as :class:`_Member`)."""
    found = []
    for pid in pids:
        try:
            found.append(_Member(pid))
        except psutil.NoSuchProcess:
            pass
    return found


def _kill_group(proc: subprocess.Popen[str]) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            # the leader is gone; make sure no grandchild survives in the group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
        _wait_group_gone(proc.pid)
        return


def _wait_group_gone(pgid: int, timeout_s: float = 5.0) -> None:
    """Wait (``psutil.wait_procs``) until no live process (zombies aside) is left in the
    group: a SIGKILL lands when the kernel next schedules its target, which on a busy
    machine is later."""
    members = [m.pid for m in psutil.process_iter() if _alive_in(m, pgid)]
    psutil.wait_procs(_processes(members), timeout=timeout_s)


def _alive_in(member: psutil.Process, pgid: int) -> bool:
    """Is ``member`` a live (not zombie) process of group ``pgid``?"""
    try:
        return os.getpgid(member.pid) == pgid and member.status() != psutil.STATUS_ZOMBIE
    except (ProcessLookupError, psutil.Error):
        return False
