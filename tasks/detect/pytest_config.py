"""Which pytest config file applies to a project in a subdirectory of the repository.

pytest looks for its config from the directory it runs in (or its arguments)
upwards. mendflow runs pytest from the worktree root (node ids and coverage
paths are relative to it), so the config of a project that lives in a
subdirectory (a monorepo's ``python/pytest.ini``) would never be read: its
``addopts``, ``python_files``, ``markers``, ``testpaths`` ... were ignored.
:func:`subproject_pytest` finds that file, to be passed with ``-c``, and the
test paths a user running ``pytest`` in that directory would collect.
"""

from __future__ import annotations

import glob
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mendflow.core.errors import EnvironmentSetupError
from mendflow.tasks.detect.common import load_pyproject, read_ini, tool_table
from mendflow.tasks.environment.plan import project_dirs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_FILES = ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml",
                "tox.ini", "setup.cfg")
"""The files pytest (9) reads its config from, in the order it looks at them in a directory."""


@dataclass(frozen=True)
class SubprojectPytest:
    """The pytest config of the repository's one project in a subdirectory.

    Attributes:
        config: the config file, relative to the worktree root (``python/pytest.ini``),
            for pytest's ``-c``.
        paths: what to collect when no test is selected, relative to the worktree root:
            the config's ``testpaths`` found in the project's directory, else the directory.
    """

    config: str
    paths: tuple[str, ...]


def subproject_pytest(root: Path) -> SubprojectPytest | None:
    """The pytest config of a project that is not at the worktree root, if pytest would miss it.

    Args:
        root: the worktree root.

    Returns:
        None when the root has a pytest config of its own (pytest finds it from the
        root), when the repository is not one project in a subdirectory
        (:func:`mendflow.tasks.environment.plan.project_dirs`), or when that
        directory has no pytest config.
    """
    if _config_file(root) is not None:
        return None
    try:
        projects = [p.removeprefix("./") for p in project_dirs(root)]
    except EnvironmentSetupError:
        return None
    if len(projects) != 1 or projects[0] == ".":
        return None
    project = projects[0]
    found = _config_file(root / project)
    if found is None:
        return None
    name, testpaths = found
    paths = [str(Path(match).relative_to(root).as_posix())
             for pattern in testpaths
             for match in sorted(glob.glob(str(root / project / pattern), recursive=True))]
    return SubprojectPytest(config=f"{project}/{name}", paths=tuple(paths) or (project,))


def _config_file(directory: Path) -> tuple[str, list[str]] | None:
    """The first file of :data:`CONFIG_FILES` in ``directory`` that pytest takes as its
    config, with its ``testpaths``; None when there is none."""
    for name in CONFIG_FILES:
        path = directory / name
        if not path.is_file():
            continue
        if name.endswith(".toml"):
            testpaths = _toml_testpaths(directory, name)
        else:
            testpaths = _ini_testpaths(path, name)
        if testpaths is not None:
            return name, testpaths
    return None


def _toml_testpaths(directory: Path, name: str) -> list[str] | None:
    """``testpaths`` of a TOML config (``[tool.pytest]`` / ``[tool.pytest.ini_options]`` in
    pyproject.toml, ``[pytest]`` in pytest.toml); None if it configures no pytest."""
    data = load_pyproject(directory) if name == "pyproject.toml" else \
        _read_toml_file(directory / name)
    if name == "pyproject.toml":
        table = tool_table(data, "pytest")
        if table is None:
            return None
        options = table.get("ini_options") if isinstance(table.get("ini_options"), dict) \
            else table
    else:
        options = data.get("pytest") if isinstance(data.get("pytest"), dict) else {}
    value = options.get("testpaths", [])
    return list(map(str, value)) if isinstance(value, list) else shlex.split(str(value))


def _read_toml_file(path: Path) -> dict[str, Any]:
    """Parse ``path`` as TOML ({} if unreadable)."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _ini_testpaths(path: Path, name: str) -> list[str] | None:
    """``testpaths`` of an INI config; None if the file configures no pytest (pytest.ini
    counts even when empty; tox.ini needs ``[pytest]``, setup.cfg ``[tool:pytest]``)."""
    section = {"tox.ini": "pytest", "setup.cfg": "tool:pytest"}.get(name, "pytest")
    parser = read_ini(path)
    if parser is None or not parser.has_section(section):
        return [] if name in ("pytest.ini", ".pytest.ini") else None
    return parser.get(section, "testpaths", fallback="").split()
