"""The oldest Python a repository says it supports, read from its packaging metadata.

ruff's pyupgrade-style fixes (``UP006`` ``List[int]`` → ``list[int]``, ``UP045``
``Optional[X]`` → ``X | None`` ...) depend on the target Python. ruff infers it
from ``[project].requires-python`` only when it reads the repository's config;
mendflow runs ruff with ``--isolated`` when the repository has no ruff config,
and then ruff targets the newest Python: a fix accepted under mendflow's own
interpreter would break the project on the older Pythons it declares.

Read without running anything of the target: ``pyproject.toml``
(``[project].requires-python``) with :mod:`tomllib`, ``setup.cfg``
(``[options] python_requires``) with :mod:`configparser`, and a literal
``python_requires=`` keyword in ``setup.py`` with :mod:`ast`. The specifier is
evaluated with :mod:`packaging.specifiers`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from mendflow.tasks.detect.common import load_pyproject, read_ini

RUFF_OLDEST = (3, 7)
"""The oldest ``--target-version`` ruff accepts (``py37``)."""
_CANDIDATES = [*((2, minor) for minor in range(8)), *((3, minor) for minor in range(20))]


def declared_requires_python(root: Path) -> str | None:
    """The repository's ``requires-python`` / ``python_requires`` text, or None.

    Args:
        root: the repository (worktree) root.

    Returns:
        The first declaration found, in the order pyproject.toml, setup.cfg,
        setup.py (e.g. ``">=2.7, !=3.0.*"``); None when none declares one.
    """
    project = load_pyproject(root).get("project")
    if isinstance(project, dict) and isinstance(project.get("requires-python"), str):
        return project["requires-python"]
    ini = read_ini(root / "setup.cfg")
    if ini is not None and ini.has_option("options", "python_requires"):
        return ini.get("options", "python_requires").strip() or None
    return _setup_py_requires(root / "setup.py")


def oldest_python(root: Path) -> tuple[int, int] | None:
    """The oldest Python (major, minor) the repository's declaration admits.

    Args:
        root: the repository (worktree) root.

    Returns:
        e.g. ``(2, 7)`` for ``">=2.7, !=3.0.*"``, ``(3, 8)`` for ``">=3.8"``;
        without a requires-python, the oldest ``Programming Language :: Python
        :: X.Y`` classifier; None when nothing is declared, the specifier is not
        valid, or it admits no Python from 2.0 to 3.19.
    """
    text = declared_requires_python(root)
    if text is None:
        return _oldest_classifier(root)
    try:
        spec = SpecifierSet(text)
    except InvalidSpecifier:
        return None
    for major, minor in _CANDIDATES:
        # a version admits the series when some release of it does: 3.8 or 3.8.x
        if any(spec.contains(f"{major}.{minor}.{patch}", prereleases=True)
               for patch in (0, 99)):
            return (major, minor)
    return None


def ruff_target_args(root: Path) -> list[str]:
    """``["--target-version", "pyXY"]`` for the declared oldest Python, else ``[]``.

    Python 2 and 3.0-3.6 map to ruff's oldest target, ``py37``.
    """
    oldest = oldest_python(root)
    if oldest is None:
        return []
    major, minor = max(oldest, RUFF_OLDEST)
    return ["--target-version", f"py{major}{minor}"]


_CLASSIFIER = re.compile(r"^Programming Language :: Python :: ([23])\.(\d{1,2})$")


def _oldest_classifier(root: Path) -> tuple[int, int] | None:
    """The oldest ``Programming Language :: Python :: X.Y`` trove classifier, when no
    requires-python is declared (wcwidth 0.2.13 lists 2.7 in setup.py's classifiers).
    Read from pyproject.toml ``[project]``, setup.cfg ``[metadata]`` and the string
    literals of setup.py."""
    texts: list[str] = []
    project = load_pyproject(root).get("project")
    if isinstance(project, dict) and isinstance(project.get("classifiers"), list):
        texts += [c for c in project["classifiers"] if isinstance(c, str)]
    ini = read_ini(root / "setup.cfg")
    if ini is not None and ini.has_option("metadata", "classifiers"):
        texts += [line.strip() for line in ini.get("metadata", "classifiers").splitlines()]
    try:
        tree = ast.parse((root / "setup.py").read_bytes())
        texts += [node.value for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    except (OSError, SyntaxError, ValueError):
        pass
    versions = [(int(m[1]), int(m[2])) for text in texts if (m := _CLASSIFIER.match(text))]
    return min(versions) if versions else None


def _setup_py_requires(path: Path) -> str | None:
    """The ``python_requires=`` of setup.py: a string literal, or a module-level name bound
    to one (simplejson 3.19.3: ``PYTHON_REQUIRES = '>=2.5, ...'``); else None."""
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None
    constants = {target.id: node.value.value for node in tree.body
                 if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                 and isinstance(node.value.value, str)
                 for target in node.targets if isinstance(target, ast.Name)}
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "python_requires":
            value = node.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                return value.value
            if isinstance(value, ast.Name):
                return constants.get(value.id)
    return None
