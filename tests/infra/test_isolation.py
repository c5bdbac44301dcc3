"""bubblewrap isolation of the target's code: each escape attempt, run for real, is contained.

Every test runs a real ``python -c`` under the real ``bwrap`` and ``prlimit``
(the Debian packages ``bubblewrap`` and ``util-linux``) through
:func:`mendflow.infra.isolation.run_isolated`, as the detect stage does.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path

import psutil
import pytest

from mendflow.core.config import AnthropicFixerConfig, ChainFixerConfig, RuffFixerConfig
from mendflow.core.config_sandbox import SandboxConfig, SandboxLimits
from mendflow.core.errors import SandboxError
from mendflow.core.models import Isolation, TargetEnv
from mendflow.infra.isolation import (
    bwrap_argv,
    prlimit_args,
    probe_bwrap,
    resolve_isolation,
    run_isolated,
)
from mendflow.tasks.sandbox.isolation import decide_isolation, runs_model_code

LIMITS = SandboxLimits(address_space_mb=1024, max_processes=48, file_size_mb=4, cpu_time_s=2)


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    """A fake home with a canary, a state dir holding the worktree, a checkout."""
    home, state, checkout = tmp_path / "home", tmp_path / "state", tmp_path / "checkout"
    worktree = state / "worktrees" / "m1"
    for path in (home / ".ssh", worktree, checkout):
        path.mkdir(parents=True)
    (home / ".ssh" / "id_canary").write_text("CANARY-Zt5qWm", encoding="utf-8")
    (state / "canary").write_text("CANARY-Zt5qWm", encoding="utf-8")
    return {"home": home, "state": state, "checkout": checkout, "worktree": worktree}


def run(code: str, places: dict[str, Path], timeout_s: float = 60):
    isolation = resolve_isolation(SandboxConfig(isolation="bwrap", limits=LIMITS),
                                  hidden=[places["home"], places["state"], places["checkout"]])
    env = TargetEnv(python=Path(sys.executable), kind="interpreter", fingerprint="t",
                    isolation=isolation)
    return run_isolated([sys.executable, "-c", code], target_env=env, worktree=places["worktree"],
                        timeout_s=timeout_s, env={"PATH": os.environ["PATH"]})


def test_bubblewrap_works_here():
    works, why = probe_bwrap()
    assert works, why
    assert why.startswith("bubblewrap")


def test_the_command_line_isolates_and_limits(tmp_path):
    isolation = Isolation(backend="bwrap", limits=LIMITS, hidden=(tmp_path,))
    argv = bwrap_argv(["python", "-m", "pytest"], isolation, worktree=tmp_path / "wt")
    for flag in ("--unshare-net", "--die-with-parent", "--unshare-pid", "--new-session"):
        assert flag in argv
    assert argv[argv.index("--ro-bind"):argv.index("--ro-bind") + 3] == ["--ro-bind", "/", "/"]
    assert ["--tmpfs", "/tmp"] == argv[argv.index("/tmp") - 1:argv.index("/tmp") + 1]
    assert argv[-3:] == ["python", "-m", "pytest"]
    assert prlimit_args(LIMITS) == ["prlimit", f"--as={1024 << 20}", "--nproc=48",
                                    f"--fsize={4 << 20}", "--cpu=2:7", "--"]


def test_a_connection_to_a_local_server_is_refused(places):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[object] = []
    server.settimeout(5)
    thread = threading.Thread(target=lambda: accepted.append(_accept(server)), daemon=True)
    thread.start()
    result = run(f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)",
                 places)
    thread.join()
    server.close()
    assert result.returncode != 0
    assert "Connection refused" in result.stderr
    assert accepted == [None]  # the host's server saw no connection


def _accept(server: socket.socket):
    try:
        return server.accept()
    except OSError:
        return None


def test_home_state_and_machine_are_read_only_and_hidden(places):
    target = Path("/var/tmp") / f"mendflow-escape-{os.getpid()}"
    code = (
        "import pathlib, sys\n"
        "out = []\n"
        f"for p in [{str(places['home'] / 'pwned')!r}, {str(target)!r},"
        f" {str(places['checkout'] / 'pwned')!r}]:\n"
        "    try: pathlib.Path(p).write_text('x'); out.append('WROTE ' + p)\n"
        "    except OSError as e: out.append(type(e).__name__ + ' ' + str(e.errno))\n"
        f"for p in [{str(places['home'] / '.ssh' / 'id_canary')!r},"
        f" {str(places['state'] / 'canary')!r}]:\n"
        "    try: out.append('READ ' + pathlib.Path(p).read_text())\n"
        "    except OSError as e: out.append(type(e).__name__)\n"
        "pathlib.Path('inside.txt').write_text('ok')\n"
        "print('|'.join(out))\n")
    result = run(code, places)
    assert result.returncode == 0, result.tail()
    assert result.stdout.strip().split("|") == ["OSError 30"] * 3 + ["FileNotFoundError"] * 2
    assert not target.exists() and not (places["home"] / "pwned").exists()
    assert (places["worktree"] / "inside.txt").read_text() == "ok"  # the worktree is writable


def test_a_fork_bomb_stops_at_the_process_limit(places):
    before = len(psutil.pids())
    code = ("import os, time\nn = 0\ntry:\n    for _ in range(10000):\n"
            "        if os.fork() == 0:\n            time.sleep(60); os._exit(0)\n"
            "        n += 1\nexcept OSError as e:\n    print(n, e.errno)\n")
    result = run(code, places)
    forked, errno = result.stdout.split()
    assert int(forked) < LIMITS.max_processes and errno == "11"
    assert len(psutil.pids()) < before + 10  # every child went with the sandbox


def test_memory_file_size_and_cpu_limits(places):
    memory = run("bytearray(20 * 1024 ** 3)", places)
    assert "MemoryError" in memory.stderr
    big = run("open('big', 'wb').write(b'0' * (8 << 20))", places)
    assert "File too large" in big.stderr
    cpu = run("while True: pass", places, timeout_s=60)
    assert cpu.returncode == 128 + 24, cpu.returncode  # SIGXCPU, named by the sandbox gate


def test_a_model_fixer_refuses_to_run_unisolated(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on PATH
    fixer = AnthropicFixerConfig()
    with pytest.raises(SandboxError) as err:
        decide_isolation(SandboxConfig(), fixer, hidden=[])
    assert err.value.subject == "sandbox.isolation" and "bubblewrap" in err.value.hint
    with pytest.raises(SandboxError):
        decide_isolation(SandboxConfig(isolation="bwrap"), RuffFixerConfig(), hidden=[])
    # explicit none runs anything unisolated; auto with an offline fixer warns and goes on
    assert decide_isolation(SandboxConfig(isolation="none"), fixer, hidden=[]).backend == "none"
    assert decide_isolation(SandboxConfig(), RuffFixerConfig(), hidden=[]).backend == "none"


def test_chains_holding_a_model_count_as_model_fixers():
    assert runs_model_code(ChainFixerConfig(fixers=[RuffFixerConfig(), AnthropicFixerConfig()]))
    assert not runs_model_code(RuffFixerConfig())


def test_doctor_reports_whether_isolation_works(tmp_path, monkeypatch):
    from mendflow.core.config import MendflowConfig, validate_config
    from mendflow.infra.layout import StateLayout
    from mendflow.infra.system_checks import check_isolation, run_checks

    check = check_isolation(MendflowConfig())
    assert check.status == "ok" and check.found.startswith("bubblewrap ")
    checks = run_checks(MendflowConfig(), StateLayout.resolve(), repos=[])
    assert "isolation" in [c.name for c in checks]
    none = check_isolation(validate_config({"sandbox": {"isolation": "none"}}))
    assert none.status == "warn" and "unisolated" in none.found
    monkeypatch.setenv("PATH", str(tmp_path))  # bubblewrap missing
    missing = check_isolation(validate_config({"sandbox": {"isolation": "bwrap"}}))
    assert missing.status == "fail" and "apt-get install bubblewrap" in (missing.action or "")
    assert check_isolation(MendflowConfig()).status == "warn"


def test_the_repository_cannot_switch_the_sandbox_off(make_repo, tmp_path):
    from mendflow.core.errors import ConfigError
    from mendflow.tasks.bookkeeping import load_mission_config

    repo = make_repo({".mendflow.yaml": "sandbox: {isolation: none}\n", "a.py": "x = 1\n"})
    with pytest.raises(ConfigError) as err:
        load_mission_config.fn(None, None, str(repo))
    assert err.value.subject == "sandbox.isolation" and ".mendflow.yaml" in err.value.message
    mine = tmp_path / "mine.yaml"
    mine.write_text("sandbox: {isolation: none}\n", encoding="utf-8")
    assert load_mission_config.fn(str(mine), None, str(repo)).sandbox.isolation == "none"


def test_a_mypy_plugin_from_the_repository_runs_isolated(make_repo, tmp_path):
    """mypy imports the plugins the repository's config names: that is the target's code."""
    from mendflow.tasks.detect import measure_mypy
    from tests.helpers.detect import sandbox_for, tools_config

    marker = Path("/var/tmp") / f"mendflow-mypy-plugin-{os.getpid()}"
    plugin = (f"import pathlib\npathlib.Path({str(marker)!r}).write_text('escaped')\n"
              "def plugin(version):\n    from mypy.plugin import Plugin\n    return Plugin\n")
    repo = make_repo({"mypy.ini": "[mypy]\nplugins = evil_plugin.py\nfiles = lib.py\n",
                      "evil_plugin.py": plugin, "lib.py": "x: int = 'a'\n"})
    isolation = resolve_isolation(SandboxConfig(isolation="bwrap"), hidden=[])
    env = TargetEnv(python=Path(sys.executable), kind="interpreter", fingerprint="t",
                    isolation=isolation)
    result = measure_mypy(sandbox_for(repo), env, tools_config(mypy={"enabled": True}))
    assert not marker.exists()  # the plugin ran, read-only outside the worktree
    assert "Read-only file system" in (result.error or "")
