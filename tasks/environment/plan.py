"""What to install into the target's venv, and the venv's cache key.

Detection reads the sandbox worktree only (pyproject.toml with :mod:`tomllib`,
setup.cfg with :mod:`configparser`); nothing of the target is executed here.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from mendflow.core.config import ManagedVenv
from mendflow.core.errors import EnvironmentSetupError
from mendflow.core.models import Sandbox

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

KEY_VERSION = "3"  # bump when the venv layout or install logic changes
DEPENDENCY_GLOBS = ("pyproject.toml", "setup.py", "setup.cfg", "*requirements*.txt",
                    "requirements/*.txt", "Pipfile", "Pipfile.lock", "poetry.lock", "uv.lock",
                    "pdm.lock", "*/pyproject.toml", "*/setup.py", "*/setup.cfg",
                    "*/*/pyproject.toml", "*/*/setup.py", "*/*/setup.cfg",  # project_dirs
                    ".coveragerc", "tox.ini")  # coverage_plugins
TEST_REQUIREMENT_GLOBS = ("requirements.txt", "requirements-test*.txt", "requirements_test*.txt",
                          "test-requirements*.txt", "test_requirements*.txt",
                          "requirements-dev*.txt", "requirements_dev*.txt",
                          "dev-requirements*.txt", "requirements/test*.txt",
                          "requirements/dev*.txt")
TEST_EXTRAS = ("test", "tests", "testing")
NOT_PROJECT_DIRS = frozenset({"docs", "doc", "tests", "test", "testing", "examples", "example",
                              "benchmarks", "bench", "scripts", "build", "dist", "site-packages",
                              "node_modules", "venv", "vendor", "vendored", "third_party",
                              "thirdparty", "external", "extern"})


# --- what to install ------------------------------------------------------------------


def install_plan(worktree: Path, config: ManagedVenv,
                 python_version: tuple[int, int] | None = None) -> list[str]:
    """Return the pip arguments that install the target (run in the worktree).

    Args:
        worktree: the sandbox worktree.
        config: the ``managed-venv`` environment; its ``install`` replaces detection.
        python_version: (major, minor) of the venv's Python (chooses among requirement
            files pinned per version, :func:`for_python`); None = this interpreter's.

    Returns:
        pip ``install`` arguments, e.g. ``["-e", ".[test]", "-r",
        "requirements-dev.txt"]``; empty when there is nothing to install.

    Raises:
        EnvironmentSetupError: pyproject.toml is not valid TOML.
    """
    if config.install is not None:
        return list(config.install)
    args: list[str] = []
    for project in project_dirs(worktree):
        extras = find_test_extras(worktree / project)
        args += ["-e", f"{project}[{','.join(extras)}]" if extras else project]
    for group in find_test_groups(worktree):
        args += ["--group", group]
    declared = len(args)
    for name in for_python(_matching(worktree, TEST_REQUIREMENT_GLOBS), python_version):
        args += ["-r", name]
    if len(args) == declared and not any("[" in arg for arg in args):  # no test dependencies
        args += tox_test_deps(worktree)
    return args + coverage_plugins(worktree)


def tox_test_deps(worktree: Path) -> list[str]:
    """The unconditional ``deps`` of tox.ini's ``[testenv]``, as pip arguments.

    For a project whose test dependencies are declared nowhere else (no test extra,
    dependency group or requirement file): natsort 8.4.0 lists hypothesis and
    pytest-mock only there, and its conftest.py imports hypothesis (the baseline
    failed to collect). Lines with a tox factor (``py38: x``) or substitution
    (``{env:X}``), and lines that are not a requirement, are left out; ``-r FILE``
    is kept when the file exists.

    Returns:
        e.g. ``["pytest", "pytest-mock", "hypothesis"]``; ``[]`` without tox.ini or deps.
    """
    parser = _ini(worktree / "tox.ini")
    if parser is None or not parser.has_section("testenv"):
        return []
    args: list[str] = []
    for line in parser.get("testenv", "deps", fallback="").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or "{" in line or re.match(r"^[\w,!-]+:\s", line):
            continue
        if line.startswith("-r"):
            name = line[2:].strip()
            if (worktree / name).is_file():
                args += ["-r", name]
            continue
        try:
            Requirement(line)
        except InvalidRequirement:
            continue
        args.append(line)
    return args


def coverage_plugins(worktree: Path) -> list[str]:
    """The coverage.py plugins the repository's coverage config loads, as pip requirements.

    ``coverage run`` imports each module of ``[run] plugins`` before any test runs,
    so one missing from the venv fails the whole baseline (pyflakes 4.1.0's setup.cfg:
    ``plugins = covdefaults``, ModuleNotFoundError, no mission). coverage.py reads the
    first of ``.coveragerc``, ``setup.cfg``, ``tox.ini`` (``[coverage:run]``) and
    ``pyproject.toml`` (``[tool.coverage.run]``) that has coverage settings; so does this.
    A plugin that is a module of the repository itself is not a requirement.

    Returns:
        Distribution names (the plugin's top-level module, ``_`` as ``-``), e.g.
        ``["covdefaults"]``; ``[]`` when none.
    """
    modules: list[str] = []
    rc = _ini(worktree / ".coveragerc")
    if rc is not None:
        modules = rc.get("run", "plugins", fallback="").split()
    else:
        for name in ("setup.cfg", "tox.ini"):
            parser = _ini(worktree / name)
            if parser is not None and any(s.startswith("coverage:") for s in parser.sections()):
                modules = parser.get("coverage:run", "plugins", fallback="").split()
                break
        else:
            try:
                run = ((_pyproject(worktree) or {}).get("tool", {}).get("coverage", {})
                       .get("run", {}))
            except (EnvironmentSetupError, AttributeError):
                run = {}
            value = run.get("plugins", []) if isinstance(run, dict) else []
            modules = [str(m) for m in value] if isinstance(value, list) else []
    requirements = []
    for module in modules:
        top = module.split(".")[0]
        local = (worktree / top).is_dir() or (worktree / f"{top}.py").is_file() \
            or (worktree / "src" / top).is_dir()
        if top and not local and top.replace("_", "-") not in requirements:
            requirements.append(top.replace("_", "-"))
    return requirements


def _ini(path: Path) -> configparser.ConfigParser | None:
    """An INI file's parser (no interpolation); None when missing or not valid INI."""
    if not path.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(path.read_text(encoding="utf-8", errors="replace"))
    except configparser.Error:
        return None
    return parser


_VERSIONED = re.compile(r"^(?P<stem>.*?)(?:py)?(?P<major>[23])(?P<minor>\d{1,2})\.txt$")


def for_python(names: Sequence[str], python_version: tuple[int, int] | None = None) -> list[str]:
    """Keep one of the requirement files pinned per Python version (pip-compile's
    ``requirements-tests36.txt``, ``-tests37.txt``, ``-tests39.txt``): the newest
    version not newer than the target's Python, else the oldest.

    Installed together they conflict (wcwidth 0.2.13: attrs==22.2.0 and
    attrs==23.1.0, ResolutionImpossible, no mission). Files without a version
    suffix, and a versioned file alone in its family, are kept.

    Args:
        names: requirement file paths (POSIX, relative), in install order.
        python_version: (major, minor) of the target's Python; None = this one.

    Returns:
        ``names`` without the other versions' files, order kept.
    """
    target = python_version or sys.version_info[:2]
    families: dict[str, list[tuple[tuple[int, int], str]]] = {}
    for name in names:
        match = _VERSIONED.match(name)
        if match:
            version = (int(match["major"]), int(match["minor"]))
            families.setdefault(match["stem"], []).append((version, name))
    dropped = set()
    for members in families.values():
        if len(members) > 1:
            fitting = [m for m in members if m[0] <= target]
            keep = max(fitting)[1] if fitting else min(members)[1]
            dropped |= {name for _, name in members if name != keep}
    return [name for name in names if name not in dropped]


def project_dirs(worktree: Path) -> list[str]:
    """The directories ``pip install -e`` installs the repository from.

    ``["."]`` when the root is installable. Otherwise the installable
    directories one or two levels down (a monorepo's ``python/``, or
    ``packages/a/``), outside hidden directories and the ones that by
    convention hold no library (docs, tests, examples ...): without them, the
    tests of a package in ``python/`` could not import it (parse 1.20.2 in
    ``python/``: 7 collection errors, 0 tests, and patches accepted untested).

    Returns:
        POSIX paths relative to the worktree, ``./`` prefixed so that pip reads
        them as paths (``["./python"]``); ``[]`` when nothing is installable.

    Raises:
        EnvironmentSetupError: the root's pyproject.toml is not valid TOML.
    """
    if is_installable(worktree):
        return ["."]
    found = []
    for pattern in ("*/", "*/*/"):
        for directory in sorted(worktree.glob(pattern)):
            parts = directory.relative_to(worktree).parts
            if (parts[0] in NOT_PROJECT_DIRS or parts[0] in found  # python/ and not python/src/
                    or any(part.startswith(".") for part in parts)):
                continue
            try:
                if is_installable(directory):
                    found.append("/".join(parts))
            except EnvironmentSetupError:  # a template's pyproject.toml, not the project's
                continue
    return [f"./{rel}" for rel in found]


def is_installable(worktree: Path) -> bool:
    """Whether ``pip install -e .`` can install the repository.

    True for a pyproject.toml with ``[build-system]`` or ``[project]``, a
    setup.py, or a setup.cfg with ``[metadata]`` next to a pyproject.toml.
    A pyproject.toml that only configures tools does not count.

    Raises:
        EnvironmentSetupError: pyproject.toml is not valid TOML.
    """
    if (worktree / "setup.py").is_file():
        return True
    pyproject = _pyproject(worktree)
    if pyproject is None:
        return False
    if "build-system" in pyproject or "project" in pyproject:
        return True
    return _setup_cfg(worktree).has_section("metadata")


def find_test_extras(worktree: Path) -> list[str]:
    """Return the test extras declared by the project: test/tests/testing, else dev.

    Looks at ``[project.optional-dependencies]`` in pyproject.toml and
    ``[options.extras_require]`` in setup.cfg.
    """
    declared: set[str] = set()
    project = (_pyproject(worktree) or {}).get("project", {})
    if isinstance(project, dict) and isinstance(project.get("optional-dependencies"), dict):
        declared |= set(project["optional-dependencies"])
    cfg = _setup_cfg(worktree)
    if cfg.has_section("options.extras_require"):
        declared |= set(cfg.options("options.extras_require"))
    return _test_names({name: name for name in declared})


def find_test_groups(worktree: Path) -> list[str]:
    """Return the test dependency groups of pyproject.toml: test/tests/testing, else dev.

    ``[dependency-groups]`` (PEP 735) are not extras: pip installs one with
    ``--group NAME`` (pip >= 25.1), whether or not the project is installable.
    Names compare normalized (``Test`` and ``test`` are one group); the
    declared spelling is returned.
    """
    groups = (_pyproject(worktree) or {}).get("dependency-groups", {})
    if not isinstance(groups, dict):
        return []
    return _test_names({re.sub(r"[-_.]+", "-", str(name)).lower(): str(name)
                        for name in groups})


def _test_names(declared: dict[str, str]) -> list[str]:
    """The declared spellings of test/tests/testing (:data:`TEST_EXTRAS`), else of dev.

    Args:
        declared: name as compared -> name as declared.
    """
    chosen = [declared[name] for name in TEST_EXTRAS if name in declared]
    return chosen or ([declared["dev"]] if "dev" in declared else [])


def venv_key(sandbox: Sandbox, base: Path, base_version: str, config: ManagedVenv) -> str:
    """Return the cache key of the venv (16 hex digits of a SHA-256).

    It covers the repository root, the base interpreter and its version, the
    contents of the dependency files in the worktree, and the configured
    ``install`` and ``extra_packages``.
    """
    files = {name: hashlib.sha256((sandbox.path / name).read_bytes()).hexdigest()
             for name in _matching(sandbox.path, DEPENDENCY_GLOBS)}
    payload = json.dumps([KEY_VERSION, str(sandbox.repo_root), str(base), base_version, files,
                          config.install, list(config.extra_packages)], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --- files ----------------------------------------------------------------------------


def _matching(root: Path, patterns: Sequence[str]) -> list[str]:
    found = {path.relative_to(root).as_posix() for pattern in patterns
             for path in root.glob(pattern) if path.is_file()}
    return sorted(found)


def _pyproject(worktree: Path) -> dict | None:
    path = worktree / "pyproject.toml"
    if not path.is_file():
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise EnvironmentSetupError(f"pyproject.toml is not valid TOML: {err}", subject=str(path),
                                    hint="fix the file, or set `environment.install` in the config"
                                    ) from None


def _setup_cfg(worktree: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    path = worktree / "setup.cfg"
    if path.is_file():
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            return configparser.ConfigParser(interpolation=None)
    return parser
