"""The interpreter the suite's target repositories are tested with: a lean venv.

A mission runs the target's tests with the configured interpreter (``environment:
{type: interpreter, python: ...}``) several times: the baseline, each candidate, the
confirmation. With mendflow's own venv as that interpreter, each pytest start also loads
every pytest plugin installed there for Prefect's sake (anyio's, whose start imports its
asyncio backend, and xdist): ~0.3-0.45 CPU-seconds of a ~0.6-0.9 s start, in every one
of the suite's hundreds of target test runs. A target project's own venv has pytest,
coverage and pytest-timeout, not Prefect: this venv holds exactly those distributions
(and what they require), copied from mendflow's venv (no network, no pip), made once per
test run under a file lock in the run's shared temp dir (the xdist workers share it).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from filelock import FileLock
from packaging.requirements import Requirement

TOOLS = ("pytest", "coverage", "pytest-timeout")
"""The distributions a target's test runs need (``tasks/detect/pytest_run.py``)."""


def _closure(names: tuple[str, ...]) -> list[metadata.Distribution]:
    """The distributions ``names`` and everything they require here (markers evaluated)."""
    found: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        dist = metadata.distribution(name)
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in found:
            continue
        found[key] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return list(found.values())


def _build(venv: Path) -> None:
    """Make ``venv``: a pip-less venv of this Python holding copies of the tools' files."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True,
                   capture_output=True, timeout=120)
    [site] = venv.glob("lib/python*/site-packages")
    for dist in _closure(TOOLS):
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in sorted(t for t in tops if t not in ("..", "__pycache__")):
            source = Path(str(dist.locate_file(top)))
            if source.is_dir():
                shutil.copytree(source, site / top, dirs_exist_ok=True)
            elif source.is_file():
                shutil.copy2(source, site / top)


@functools.cache
def target_python() -> str:
    """The lean venv's interpreter (made on first use in this test run).

    Returns:
        The absolute path of its ``bin/python``.
    """
    root = Path(os.environ.get("MENDFLOW_TESTS_TMPDIR") or tempfile.gettempdir())
    venv = root / "target-venv"
    python = venv / "bin" / "python"
    with FileLock(str(root / "target-venv.lock")):
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            _build(venv)
            (venv / ".complete").touch()
    return str(python)
