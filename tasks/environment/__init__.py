"""The target's Python environment: an existing interpreter, or a cached managed venv.

With ``environment: {type: interpreter, python: ...}`` mendflow checks that the
interpreter runs and has the test tools (pytest, coverage, pytest-timeout).

With ``environment: {type: managed-venv}`` (the default) mendflow creates a
venv under ``<state>/envs/<key>``, where the key hashes the repository path,
the base interpreter, the dependency files (pyproject.toml, setup.py,
setup.cfg, requirements files, lock files) and the configured installs. It
installs the test tools, then the target itself, run in the sandbox worktree:

* ``environment.install`` (pip arguments) when set, else
* ``-e .`` when the repository is installable (``[build-system]`` or
  ``[project]`` in pyproject.toml, a setup.py, or a setup.cfg with
  ``[metadata]`` next to a pyproject.toml), with its test extras
  (``test``/``tests``/``testing``, else ``dev``), plus
* the same test dependency group of pyproject.toml (PEP 735
  ``[dependency-groups]``, ``pip install --group NAME``), plus
* requirements files found: ``requirements.txt`` and test/dev ones
  (``requirements-test*.txt``, ``test-requirements.txt``,
  ``requirements-dev.txt``, ``requirements/test*.txt`` ...).

A non-installable repository without requirements is tested as it is.
``ready.json`` marks a complete venv; it is written last, so a failed or
interrupted build is rebuilt from scratch. Because an editable install points
at a worktree path, a cached venv last used by another worktree is re-pointed
with a fast ``pip install --no-deps -e .``.

Installs run with pip's own configuration (index URLs, find-links, certificates
from ``PIP_*`` variables and the user's pip.conf, hence the user's HOME is
kept) but without secret-looking variables, PYTHONPATH, or ``PIP_USER``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from mendflow.core.config import EnvironmentConfig, Interpreter, ManagedVenv
from mendflow.core.errors import EnvironmentSetupError, ToolError
from mendflow.core.models import Sandbox, TargetEnv
from mendflow.infra.layout import StateLayout
from mendflow.infra.progress import report_progress
from mendflow.infra.runner import ProcessResult, run_process, sandbox_environ
from mendflow.tasks.environment.plan import (
    find_test_extras,
    for_python,
    install_plan,
    is_installable,
    project_dirs,
    venv_key,
)

__all__ = [
    "MARKER", "TEST_TOOLS", "find_test_extras", "for_python", "install_environ", "install_plan",
    "is_installable", "managed_venv", "prepare_environment", "prepare_target_env", "project_dirs",
    "read_marker", "use_interpreter", "venv_key", "venv_python",
]

TEST_TOOLS = ("pytest", "coverage", "pytest-timeout")
MARKER = "ready.json"
_PROBE_TIMEOUT_S = 120.0
# pip settings that the secret filter would drop although they hold no secret
_PIP_ALLOWED = ("PIP_KEYRING_PROVIDER",)
_PIP_DROPPED = ("PYTHONPATH", "PIP_USER", "PIP_TARGET", "PIP_PREFIX", "PIP_REQUIRE_VIRTUALENV")
_PROBE = (
    "import json, sys\n"
    "missing = []\n"
    "for module, package in (('pytest', 'pytest'), ('coverage', 'coverage'),"
    " ('pytest_timeout', 'pytest-timeout')):\n"
    "    try:\n"
    "        __import__(module)\n"
    "    except Exception:\n"
    "        missing.append(package)\n"
    "print(json.dumps({'version': sys.version, 'missing': missing}))\n"
)


def prepare_environment(sandbox: Sandbox, config: EnvironmentConfig,
                        layout: StateLayout) -> TargetEnv:
    """Return the Python environment in which the target's tests run.

    Args:
        sandbox: the mission's worktree (installs run there).
        config: ``environment`` section: :class:`ManagedVenv` or :class:`Interpreter`.
        layout: mendflow's state directory, resolved (venvs go in ``<state>/envs``).

    Returns:
        The :class:`TargetEnv`: the python executable, its kind, and a fingerprint.

    Raises:
        EnvironmentSetupError: the interpreter is missing, does not run or
            lacks the test tools; or a venv install failed (``output_tail``
            holds the last 30 lines of pip's output). A failed venv is removed.
    """
    if isinstance(config, Interpreter):
        return use_interpreter(config)
    return managed_venv(sandbox, config, layout)


def use_interpreter(config: Interpreter) -> TargetEnv:
    """Check an existing interpreter: it runs, and pytest, coverage, pytest_timeout import.

    Args:
        config: the ``interpreter`` environment (``python``: a path or a command on PATH).

    Returns:
        The :class:`TargetEnv`; the fingerprint hashes the path and ``sys.version``.

    Raises:
        EnvironmentSetupError: the file is missing or does not run, or test tools are missing.
    """
    python = _locate(config.python)
    version, missing = _probe(python)
    if missing:
        raise EnvironmentSetupError(
            f"the interpreter lacks the test tools: {', '.join(missing)}", subject=str(python),
            hint=f"run `{python} -m pip install {' '.join(TEST_TOOLS)}`, or use "
                 "`environment: {type: managed-venv}`")
    return TargetEnv(python=python, kind="interpreter", fingerprint=_digest(str(python), version))


def managed_venv(sandbox: Sandbox, config: ManagedVenv, layout: StateLayout) -> TargetEnv:
    """Create (or re-use from the cache) the target's venv and install it there.

    Args:
        sandbox: the mission's worktree; the target is installed from it.
        config: the ``managed-venv`` environment.
        layout: mendflow's state directory, resolved.

    Returns:
        The :class:`TargetEnv`; its fingerprint is the venv's cache key.

    Raises:
        EnvironmentSetupError: the base interpreter does not run, or an install
            failed or ran out of ``install_timeout_s`` seconds.
    """
    deadline = time.monotonic() + config.install_timeout_s
    base = _locate(config.base_python)
    base_version = _python_version(base)
    plan = install_plan(sandbox.path, config, _major_minor(base_version))
    key = venv_key(sandbox, base, base_version, config)
    layout.envs.mkdir(parents=True, exist_ok=True)
    venv = layout.envs / key
    python = venv_python(venv)
    marker = read_marker(venv)
    if marker is not None and _is_healthy(python):
        if marker.get("worktree") != str(sandbox.path):
            _repoint(python, sandbox, config, deadline)
            _write_marker(venv, {**marker, "worktree": str(sandbox.path)})
        return TargetEnv(python=python, kind="managed-venv", fingerprint=key)
    _logger().info("creating the target venv %s (installing: %s)", venv, " ".join(plan) or "-")
    # minutes on a first run (a C extension, a big dependency tree): say so, not a silent setup
    report_progress("setup", f"creating the target's venv (pip install {' '.join(plan) or '-'}); "
                             "a first build for these dependency files can take minutes")
    _build(venv, base, plan, sandbox, config, deadline)
    _write_marker(venv, {"key": key, "python": str(python), "base_python": str(base),
                         "base_version": base_version, "worktree": str(sandbox.path),
                         "install": plan, "extra_packages": list(config.extra_packages),
                         "created_at": datetime.now(timezone.utc).isoformat()})
    return TargetEnv(python=python, kind="managed-venv", fingerprint=key)


def _major_minor(version: str) -> tuple[int, int] | None:
    """(3, 11) of ``"3.11.7"``; None when the text is not a version."""
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def venv_python(venv: Path) -> Path:
    """Return the python executable inside a venv directory."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def read_marker(venv: Path) -> dict | None:
    """Return the ``ready.json`` of a complete venv, or None if absent or unreadable."""
    try:
        data = json.loads((venv / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def install_environ() -> dict[str, str]:
    """The environment of pip runs: secrets dropped, pip's index configuration kept.

    Returns:
        :func:`sandbox_environ` (HOME kept, so pip finds the user's pip.conf and
        cache) plus the non-secret ``PIP_*`` names it would drop, minus
        PYTHONPATH and ``PIP_USER``/``PIP_TARGET``/``PIP_PREFIX``.
    """
    env = sandbox_environ(extra={name: os.environ[name] for name in _PIP_ALLOWED
                                 if name in os.environ})
    for name in _PIP_DROPPED:
        env.pop(name, None)
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONNOUSERSITE="1")
    return env


# --- building -------------------------------------------------------------------------


def _build(venv: Path, base: Path, plan: list[str], sandbox: Sandbox, config: ManagedVenv,
           deadline: float) -> None:
    if venv.exists():
        shutil.rmtree(venv)
    try:
        _run_step([base, "-m", "venv", venv], venv.parent, deadline, "create the venv")
        python = venv_python(venv)
        upgrade = _run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
                       venv.parent, deadline)
        if upgrade.returncode != 0:
            _logger().warning("could not upgrade pip in %s (continuing): %s", venv,
                              upgrade.tail(3))
        _run_step([python, "-m", "pip", "install", "--progress-bar", "off", *TEST_TOOLS,
                   *config.extra_packages], venv.parent, deadline, "install the test tools")
        if plan:
            _run_step([python, "-m", "pip", "install", "--progress-bar", "off", *plan],
                      sandbox.path, deadline, "install the target")
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)  # the next try starts clean
        raise


def _repoint(python: Path, sandbox: Sandbox, config: ManagedVenv, deadline: float) -> None:
    """Point a cached venv's editable install at this sandbox's worktree."""
    if config.install is not None:
        args = list(config.install)
    else:
        args = [arg for project in project_dirs(sandbox.path) for arg in ("-e", project)]
    if args:
        _logger().info("re-pointing the cached venv's install at %s", sandbox.path)
        _run_step([python, "-m", "pip", "install", "--progress-bar", "off", "--no-deps", *args],
                  sandbox.path, deadline, "re-install the target (--no-deps)")


def _run_step(args: Sequence[str | os.PathLike[str]], cwd: Path, deadline: float,
              step: str) -> None:
    result = _run(args, cwd, deadline)
    if result.timed_out:
        raise EnvironmentSetupError(f"could not {step}: timed out", output_tail=result.tail(30),
                                    subject=str(cwd), hint="raise environment.install_timeout_s, "
                                    "or use `environment: {type: interpreter}`")
    if result.returncode != 0:
        raise EnvironmentSetupError(
            f"could not {step} (exit {result.returncode}): `{' '.join(result.args[2:])}`",
            output_tail=result.tail(30), subject=str(cwd),
            hint="set `environment.install` (pip arguments) in the config, or use "
                 "`environment: {type: interpreter, python: ...}` with an environment you prepared")


def _run(args: Sequence[str | os.PathLike[str]], cwd: Path, deadline: float) -> ProcessResult:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise EnvironmentSetupError("the environment install ran out of time",
                                    subject=str(cwd), hint="raise environment.install_timeout_s")
    cwd.mkdir(parents=True, exist_ok=True)
    return run_process(args, cwd=cwd, timeout_s=remaining, env=install_environ())


def _write_marker(venv: Path, data: dict) -> None:
    partial = venv / (MARKER + ".tmp")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    partial.replace(venv / MARKER)


# --- interpreters ---------------------------------------------------------------------


def _locate(python: str) -> Path:
    """Return the absolute path of an interpreter (a path, or a command found on PATH).

    The path is made absolute but symlinks are *not* resolved: a venv's
    ``bin/python`` is a symlink to the base interpreter and must stay itself.
    """
    candidate = Path(python).expanduser()
    if os.sep not in python and "/" not in python:
        found = shutil.which(python)
        candidate = Path(found) if found else candidate
    if not candidate.is_file() or not os.access(candidate, os.X_OK):
        raise EnvironmentSetupError("python interpreter not found (or not executable)",
                                    subject=python,
                                    hint="set environment.python (or environment.base_python) "
                                         "to an existing interpreter")
    return candidate.absolute()


def _probe(python: Path) -> tuple[str, list[str]]:
    """Run the interpreter once: return ``sys.version`` and the test tools it cannot import."""
    result = _run_probe([python, "-c", _PROBE], python)
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
        return str(data["version"]), [str(name) for name in data["missing"]]
    except (IndexError, ValueError, KeyError, TypeError):
        raise EnvironmentSetupError("the interpreter's answer cannot be read", subject=str(python),
                                    output_tail=result.tail(30),
                                    hint="check that it is a CPython 3 interpreter") from None


def _python_version(python: Path) -> str:
    result = _run_probe([python, "-c", "import sys; print(sys.version)"], python)
    return result.stdout.strip()


def _is_healthy(python: Path) -> bool:
    if not python.is_file():
        return False
    try:
        _, missing = _probe(python)
    except EnvironmentSetupError:
        return False
    return not missing


def _run_probe(args: Sequence[str | os.PathLike[str]], python: Path) -> ProcessResult:
    with tempfile.TemporaryDirectory(prefix="mendflow-probe-") as neutral:  # nothing to shadow
        try:
            result = run_process(args, cwd=Path(neutral), timeout_s=_PROBE_TIMEOUT_S,
                                 env=sandbox_environ())
        except (ToolError, OSError) as err:
            raise EnvironmentSetupError(f"the interpreter does not run: {err}",
                                        subject=str(python),
                                        hint="point the config at a working python") from None
    if result.returncode != 0 or result.timed_out:
        raise EnvironmentSetupError("the interpreter does not run", subject=str(python),
                                    output_tail=result.tail(30),
                                    hint="point the config at a working python")
    return result


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


@task(name="prepare-target-env", retries=0, retry_delay_seconds=10, timeout_seconds=3600,
      cache_policy=NO_CACHE)
def prepare_target_env(sandbox: Sandbox, config: EnvironmentConfig,
                       layout: StateLayout | Path | None) -> TargetEnv:
    """Prefect task around :func:`prepare_environment`.

    No task-level retries: pip already retries network errors itself, and a
    failed install (a missing dependency ...) fails the same way again.

    Args:
        sandbox: the mission's worktree.
        config: the ``environment`` section.
        layout: the resolved state layout; a resolved root (``config.mission.state_dir``
            after :func:`mendflow.tasks.bookkeeping.load_mission_config`) is accepted
            for the callers that still pass the config's value (see :meth:`StateLayout.of`).
    """
    return prepare_environment(sandbox, config, StateLayout.of(layout))
