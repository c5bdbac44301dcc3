"""Run the target's code under bubblewrap: no network, a read-only machine, resource limits.

Every run of code from the repository under test (pytest, coverage, whatever a
conftest starts) goes through :func:`run_isolated`. With the ``bwrap`` backend
the command line is::

    bwrap --die-with-parent --new-session --unshare-net --unshare-pid --unshare-ipc
          --unshare-uts --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp --tmpfs /run
          --tmpfs <hidden>...  --ro-bind <interpreter dirs>...
          --bind <worktree> --bind <tool home> --bind <extra writable>...
          --remount-ro <hidden>...  --chdir <worktree>
          -- prlimit --as=... --nproc=... --fsize=... --cpu=... -- <argv>

so the code sees the machine read-only, writes only to the worktree, the
sandbox's tool home (its private HOME and caches) and a private /tmp, cannot
see the user's home, mendflow's state dir or the user's checkout (each an
empty read-only directory), has only a loopback of its own, and dies with
mendflow. ``RLIMIT_NPROC`` does not bind root, so as root the process count is
also capped with a ``pids`` cgroup when one can be created.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path

from mendflow.core.config_sandbox import SandboxConfig, SandboxLimits
from mendflow.core.errors import SandboxError
from mendflow.core.models import Isolation, TargetEnv
from mendflow.infra.layout import tool_home_path
from mendflow.infra.runner import ProcessResult, run_process

PROBE_TIMEOUT_S = 30.0
_MB = 1024 * 1024
_CGROUP_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))
INSTALL_HINT = ("install bubblewrap (`apt-get install bubblewrap`), or set sandbox.isolation: "
                "none to run the target's code unisolated")


def bwrap_executable() -> str | None:
    """The ``bwrap`` executable on PATH, or None."""
    return shutil.which("bwrap")


def prlimit_args(limits: SandboxLimits) -> list[str]:
    """``prlimit`` options for the configured limits (util-linux ``prlimit``).

    Args:
        limits: the ``sandbox.limits`` section.

    Returns:
        ``["prlimit", "--as=BYTES", "--nproc=N", "--fsize=BYTES", "--cpu=S", "--"]``
        with only the limits that are set; ``[]`` when none is.
    """
    options = []
    if limits.address_space_mb is not None:
        options.append(f"--as={limits.address_space_mb * _MB}")
    if limits.max_processes is not None:
        options.append(f"--nproc={limits.max_processes}")
    if limits.file_size_mb is not None:
        options.append(f"--fsize={limits.file_size_mb * _MB}")
    if limits.cpu_time_s is not None:
        # SIGXCPU at the soft limit (a signal that names the limit), SIGKILL 5 s later
        options.append(f"--cpu={limits.cpu_time_s}:{limits.cpu_time_s + 5}")
    return ["prlimit", *options, "--"] if options else []


def interpreter_dirs(python: Path) -> tuple[Path, ...]:
    """Directories the target interpreter needs to read: its venv and its base installation.

    Args:
        python: the target's ``python`` (a venv's ``bin/python`` or an interpreter).

    Returns:
        The venv root (``bin/..``), the resolved interpreter's prefix and, for a venv,
        the ``home`` of its ``pyvenv.cfg``'s prefix; absolute, existing, de-duplicated.
    """
    candidates = [python.absolute().parent.parent, python.resolve().parent.parent]
    cfg = python.absolute().parent.parent / "pyvenv.cfg"
    if cfg.is_file():
        for line in cfg.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                candidates.append(Path(value.strip()).parent)
    seen: list[Path] = []
    for path in candidates:
        if path.is_dir() and path not in seen and path != Path("/"):
            seen.append(path)
    return tuple(seen)


def bwrap_argv(argv: Sequence[str], isolation: Isolation, *, worktree: Path,
               writable: Sequence[Path] = (), readable: Sequence[Path] = ()) -> list[str]:
    """Build the full command line that runs ``argv`` isolated (see the module docstring).

    Args:
        argv: the command to run inside.
        isolation: the resolved isolation (backend ``bwrap``; its limits and hidden dirs).
        worktree: the sandbox worktree: writable, and the working directory.
        writable: more directories the command may write (a report directory ...).
        readable: directories to show again, read-only, when under a hidden one
            (the target's venv under mendflow's state dir ...).

    Returns:
        ``bwrap ... -- prlimit ... -- argv``.
    """
    worktree = worktree.resolve()
    args = [bwrap_executable() or "bwrap", "--die-with-parent", "--new-session",
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/tmp", "--tmpfs", "/dev/shm"]
    if Path("/run").is_dir() and not Path("/run").is_symlink():
        args += ["--tmpfs", "/run"]  # host daemons' unix sockets (docker, dbus ...)
    hidden = sorted({h.resolve() for h in isolation.hidden if h.is_dir() and h.resolve()
                     != Path("/")}, key=lambda p: len(p.parts))
    for path in hidden:
        args += ["--tmpfs", str(path)]
    for path in readable:
        if path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for path in (worktree, *writable):
        path = path.resolve()
        path.mkdir(parents=True, exist_ok=True)
        args += ["--bind", str(path), str(path)]
    for path in hidden:
        args += ["--remount-ro", str(path)]
    args += ["--setenv", "TMPDIR", "/tmp", "--chdir", str(worktree), "--"]
    return [*args, *prlimit_args(isolation.limits), *argv]


@contextlib.contextmanager
def pids_cgroup(max_processes: int | None, enabled: bool) -> Iterator[Path | None]:
    """A fresh ``pids`` cgroup capped at ``max_processes``, removed afterwards (root only).

    Yields:
        The cgroup directory (write a pid to its ``cgroup.procs`` to join), or None
        when disabled, unlimited or not possible here.
    """
    root = cgroup_root() if enabled and max_processes is not None else None
    if root is None:
        yield None
        return
    group = root / f"mendflow-{uuid.uuid4().hex[:12]}"
    try:
        group.mkdir()
        (group / "pids.max").write_text(str(max_processes), encoding="ascii")
    except OSError:
        with contextlib.suppress(OSError):
            group.rmdir()
        yield None
        return
    try:
        yield group
    finally:
        for _ in range(50):  # the members are gone once the run's group was killed
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


@lru_cache(maxsize=1)
def cgroup_root() -> Path | None:
    """A cgroup directory with the pids controller where this process may create children."""
    if os.geteuid() != 0:
        return None
    for root in _CGROUP_ROOTS:
        if not (root / "cgroup.procs").exists():
            continue
        probe = root / f"mendflow-probe-{os.getpid()}"
        try:
            probe.mkdir()
            ok = (probe / "pids.max").exists()
            probe.rmdir()
        except OSError:
            continue
        if ok:
            return root
    return None


def run_isolated(argv: Sequence[str | os.PathLike[str]], *, target_env: TargetEnv,
                 worktree: Path, timeout_s: float, env: Mapping[str, str] | None = None,
                 writable: Sequence[Path] = ()) -> ProcessResult:
    """Run the target's code (in the worktree) under the target env's isolation.

    Args:
        argv: the command (``<python> -m pytest ...``).
        target_env: the target environment; its ``isolation`` decides how to run.
        worktree: the sandbox worktree (the working directory; writable).
        timeout_s: seconds before the whole process group is killed.
        env: the environment (see :func:`mendflow.infra.runner.sandbox_environ`).
        writable: more directories the command writes (reports, a temp dir).

    Returns:
        The :class:`ProcessResult` (``args`` is the command as given, without the wrapper).

    Raises:
        ToolError: an executable is missing.
    """
    command = [str(a) for a in argv]
    isolation = target_env.isolation
    if isolation.backend == "none":
        return run_process(command, cwd=worktree, timeout_s=timeout_s, env=env)
    tool_home = tool_home_path(worktree)
    tool_home.mkdir(parents=True, exist_ok=True)
    # the target's interpreter, and mendflow's own (its mypy runs the repository's plugins)
    readable = tuple(dict.fromkeys((*interpreter_dirs(target_env.python),
                                    *interpreter_dirs(Path(sys.executable)))))
    wrapped = bwrap_argv(command, isolation, worktree=worktree, writable=(tool_home, *writable),
                         readable=readable)
    with pids_cgroup(isolation.limits.max_processes, isolation.process_cgroup) as group:
        if group is not None:  # join the cgroup, then become bwrap: every child stays in it
            wrapped = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(group / "cgroup.procs"),
                       *wrapped]
        result = run_process(wrapped, cwd=worktree, timeout_s=timeout_s, env=env)
    return ProcessResult(tuple(command), result.returncode, result.stdout, result.stderr,
                         result.duration_s, result.timed_out)


def probe_bwrap(limits: SandboxLimits = SandboxLimits()) -> tuple[bool, str]:
    """Does bubblewrap work here, with the flags mendflow uses?

    Runs ``bwrap ... -- prlimit ... -- true`` once per executable and limits (cached).

    Returns:
        ``(True, "bubblewrap 0.8.0")``, or ``(False, why)``.
    """
    executable = bwrap_executable()
    if executable is None:
        return False, "bwrap is not installed (not found on PATH)"
    return _probe(executable, limits)


@lru_cache(maxsize=8)
def _probe(executable: str, limits: SandboxLimits) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="mendflow-bwrap-probe-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        argv = bwrap_argv(["true"], Isolation(backend="bwrap", limits=limits), worktree=work)
        argv[0] = executable
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            return False, f"bwrap did not run: {err}"
    if proc.returncode != 0:
        return False, f"bwrap failed (exit {proc.returncode}): {proc.stderr.strip()[:300]}"
    version = subprocess.run([executable, "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    return True, version or "bubblewrap"


def resolve_isolation(config: SandboxConfig, *, hidden: Sequence[Path]) -> Isolation:
    """Turn the ``sandbox`` config into the isolation every run of the target's code uses.

    Args:
        config: the ``sandbox`` section.
        hidden: directories always hidden (the user's home, mendflow's state dir,
            the repository checkout); ``config.hide`` is added.

    Returns:
        ``Isolation(backend="bwrap")`` when asked for (or ``auto``) and bubblewrap works;
        ``Isolation(backend="none")`` for ``none``, or for ``auto`` without bubblewrap
        (the caller must say so loudly: see :func:`isolation_problem`).

    Raises:
        SandboxError: ``isolation: bwrap`` and bubblewrap does not work here.
    """
    if config.isolation == "none":
        return Isolation(backend="none", limits=config.limits)
    works, why = probe_bwrap(config.limits)
    if not works:
        if config.isolation == "bwrap":
            raise SandboxError(f"bubblewrap does not work on this machine: {why}",
                               subject="sandbox.isolation", hint=INSTALL_HINT)
        return Isolation(backend="none", limits=config.limits)
    paths = tuple(dict.fromkeys(Path(p).expanduser().absolute() for p in (*hidden, *config.hide)))
    return Isolation(backend="bwrap", limits=config.limits, hidden=paths,
                     process_cgroup=cgroup_root() is not None)


def isolation_problem(config: SandboxConfig) -> str | None:
    """Why ``auto`` fell back to no isolation (None when bubblewrap works or ``none`` is set)."""
    if config.isolation == "none":
        return None
    works, why = probe_bwrap(config.limits)
    return None if works else why


__all__ = ["INSTALL_HINT", "bwrap_argv", "bwrap_executable", "interpreter_dirs",
           "cgroup_root", "isolation_problem", "pids_cgroup", "prlimit_args", "probe_bwrap",
           "resolve_isolation", "run_isolated"]
