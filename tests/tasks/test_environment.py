"""Tests of tasks.environment: real interpreters, real venvs, real pip (slow ones marked)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from mendflow.core.config import Interpreter, ManagedVenv
from mendflow.core.errors import EnvironmentSetupError
from mendflow.infra.layout import StateLayout
from mendflow.infra.progress import PROGRESS_LOGGER
from mendflow.tasks.environment import (
    MARKER,
    find_test_extras,
    for_python,
    install_environ,
    install_plan,
    is_installable,
    prepare_environment,
    prepare_target_env,
    project_dirs,
    read_marker,
    venv_key,
)
from mendflow.tasks.sandbox import WorktreeSandbox
from mendflow.tasks.vcs import resolve_repository
from tests.helpers.git import write_files

TINY_PACKAGE = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "tinypkg"
        version = "0.1.0"
        dependencies = []

        [tool.setuptools.packages.find]
        where = ["src"]
    """,
    "src/tinypkg/__init__.py": "def answer():\n    return 42\n",
    "tests/test_tiny.py": "from tinypkg import answer\n\n\ndef test_answer():\n"
                          "    assert answer() == 42\n",
}

home = StateLayout.resolve  # the $MENDFLOW_HOME layout (isolated per test by conftest)


def _sandbox(make_repo, files, name="repo", mission="m-env-1"):
    root = make_repo(files, name=name)
    return WorktreeSandbox().create(resolve_repository(root), mission, home())


# --- interpreter ------------------------------------------------------------------------


def test_interpreter_with_test_tools(make_repo):
    box = _sandbox(make_repo, {"a.py": "x = 1\n"})
    env = prepare_environment(box, Interpreter(python=sys.executable), home())
    assert env.kind == "interpreter"
    assert env.python == Path(sys.executable).absolute()  # a venv's python is not resolved away
    assert prepare_target_env.fn(box, Interpreter(python=sys.executable), home()).fingerprint == \
        env.fingerprint


def test_bogus_interpreter(make_repo, tmp_path):
    box = _sandbox(make_repo, {"a.py": "x = 1\n"})
    with pytest.raises(EnvironmentSetupError, match="not found") as info:
        prepare_environment(box, Interpreter(python=str(tmp_path / "no" / "python")), home())
    assert "environment.python" in info.value.hint
    not_python = tmp_path / "fake-python"
    not_python.write_text("#!/bin/sh\nexit 3\n")
    not_python.chmod(0o755)
    with pytest.raises(EnvironmentSetupError, match="does not run"):
        prepare_environment(box, Interpreter(python=str(not_python)), home())


def test_interpreter_without_test_tools(make_repo, tmp_path):
    box = _sandbox(make_repo, {"a.py": "x = 1\n"})
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    with pytest.raises(EnvironmentSetupError) as info:
        prepare_environment(box, Interpreter(python=str(bare / "bin" / "python")), home())
    assert "pytest, coverage, pytest-timeout" in info.value.message
    assert "pip install pytest coverage pytest-timeout" in info.value.hint
    assert "managed-venv" in info.value.hint


# --- what gets installed ----------------------------------------------------------------


def test_install_plan_detection(tmp_path):
    flat = tmp_path / "flat"
    write_files(flat, {"pyproject.toml": "[tool.ruff]\nline-length = 90\n", "mod.py": ""})
    assert not is_installable(flat)
    assert install_plan(flat, ManagedVenv()) == []

    scripts = tmp_path / "scripts"
    write_files(scripts, {"requirements.txt": "requests\n", "requirements-dev.txt": "pytest\n",
                          "requirements/test-extra.txt": "hypothesis\n", "run.py": ""})
    assert install_plan(scripts, ManagedVenv()) == [
        "-r", "requirements-dev.txt", "-r", "requirements.txt",
        "-r", "requirements/test-extra.txt"]

    project = tmp_path / "project"
    write_files(project, {"pyproject.toml": """
        [project]
        name = "p"
        version = "1"
        [project.optional-dependencies]
        dev = ["black"]
        tests = ["hypothesis"]
    """})
    assert find_test_extras(project) == ["tests"]
    assert install_plan(project, ManagedVenv()) == ["-e", ".[tests]"]
    assert install_plan(project, ManagedVenv(install=["-e", ".", "-c", "constraints.txt"])) == \
        ["-e", ".", "-c", "constraints.txt"]

    legacy = tmp_path / "legacy"
    write_files(legacy, {"setup.py": "from setuptools import setup\nsetup()\n",
                         "setup.cfg": "[metadata]\nname = legacy\n[options.extras_require]\n"
                                      "dev = black\n"})
    assert is_installable(legacy) and find_test_extras(legacy) == ["dev"]
    assert install_plan(legacy, ManagedVenv()) == ["-e", ".[dev]"]

    # requirement files pinned per Python version (wcwidth 0.2.13): one of them, never all
    pinned = tmp_path / "pinned"
    write_files(pinned, {"setup.py": "", "requirements-develop.txt": "docopt\n",
                         "requirements-tests36.txt": "attrs==22.2.0\n",
                         "requirements-tests37.txt": "attrs==23.1.0\n",
                         "requirements-tests39.txt": "attrs==23.1.0\n"})
    assert install_plan(pinned, ManagedVenv(), (3, 11)) == [
        "-e", ".", "-r", "requirements-develop.txt", "-r", "requirements-tests39.txt"]
    assert for_python(["requirements-tests36.txt", "requirements-tests39.txt"], (3, 8)) == [
        "requirements-tests36.txt"]
    assert for_python(["requirements-py310.txt", "requirements-py38.txt"], (3, 7)) == [
        "requirements-py38.txt"]  # none fits: the oldest
    assert for_python(["requirements-py38.txt", "requirements.txt"], (3, 11)) == [
        "requirements-py38.txt", "requirements.txt"]

    # a monorepo: the package in python/ (parse 1.20.2), a broken template and docs beside it
    mono = tmp_path / "mono"
    write_files(mono, {"README.md": "", "web/package.json": "{}",
                       "python/pyproject.toml": '[project]\nname = "p"\nversion = "1"\n'
                                                '[project.optional-dependencies]\ntest = ["x"]\n',
                       "python/src/pyproject.toml": '[project]\nname = "inner"\n',
                       "templates/new/pyproject.toml": "[project\n",
                       "docs/setup.py": "", ".hidden/setup.py": ""})
    assert project_dirs(mono) == ["./python"]
    assert install_plan(mono, ManagedVenv()) == ["-e", "./python[test]"]
    assert project_dirs(project) == ["."]

    cfg_only = tmp_path / "cfg_only"
    write_files(cfg_only, {"setup.cfg": "[flake8]\nmax-line-length = 100\n"})
    assert not is_installable(cfg_only)

    broken = tmp_path / "broken"
    write_files(broken, {"pyproject.toml": "[project\nname = 'x'\n"})
    with pytest.raises(EnvironmentSetupError, match="not valid TOML"):
        is_installable(broken)


def test_venv_key_follows_dependency_files(make_repo):
    box = _sandbox(make_repo, TINY_PACKAGE)
    base, version = Path(sys.executable), sys.version
    key = venv_key(box, base, version, ManagedVenv())
    (box.path / "src/tinypkg/__init__.py").write_text("# code is not a dependency file\n")
    assert venv_key(box, base, version, ManagedVenv()) == key
    (box.path / "requirements-test.txt").write_text("hypothesis\n")
    assert venv_key(box, base, version, ManagedVenv()) != key
    assert venv_key(box, base, version, ManagedVenv(extra_packages=["x"])) != \
        venv_key(box, base, version, ManagedVenv())


def test_install_environ_keeps_pip_index_and_drops_secrets(monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "https://extra.example/simple")
    monkeypatch.setenv("PIP_KEYRING_PROVIDER", "subprocess")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    monkeypatch.setenv("PIP_USER", "1")
    env = install_environ()
    assert env["PIP_INDEX_URL"] == "https://mirror.example/simple"
    assert env["PIP_EXTRA_INDEX_URL"] == "https://extra.example/simple"
    assert env["PIP_KEYRING_PROVIDER"] == "subprocess"
    assert "ANTHROPIC_API_KEY" not in env and "PYTHONPATH" not in env and "PIP_USER" not in env
    assert env["PIP_NO_INPUT"] == "1"


# --- managed venvs (real pip, the package registry) -------------------------------------


@pytest.mark.slow
def test_managed_venv_installs_caches_and_repoints(make_repo):
    box = _sandbox(make_repo, TINY_PACKAGE)
    config = ManagedVenv(base_python=sys.executable)
    env = prepare_environment(box, config, home())
    assert env.kind == "managed-venv"
    assert env.python.is_relative_to(home().envs)
    code = "import tinypkg, pytest_timeout, coverage; print(tinypkg.__file__)"
    where = subprocess.run([str(env.python), "-c", code], capture_output=True, text=True,
                           check=True)
    assert Path(where.stdout.strip()).is_relative_to(box.path)
    venv = env.python.parent.parent
    marker = read_marker(venv)
    assert marker["worktree"] == str(box.path) and marker["install"] == ["-e", "."]

    sentinel = venv / "sentinel"
    sentinel.write_text("a rebuild would delete me\n")
    assert prepare_environment(box, config, home()) == env
    assert sentinel.exists() and read_marker(venv) == marker  # cache hit: nothing reinstalled

    other = WorktreeSandbox().create(resolve_repository(box.repo_root), "m-env-2", home())
    assert prepare_environment(other, config, home()) == env  # same deps: same venv
    assert sentinel.exists()
    assert read_marker(venv)["worktree"] == str(other.path)
    where = subprocess.run([str(env.python), "-c", "import tinypkg; print(tinypkg.__file__)"],
                           capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(other.path)  # re-pointed


@pytest.mark.slow
def test_managed_venv_install_failure(make_repo):
    broken = dict(TINY_PACKAGE)
    broken["pyproject.toml"] = TINY_PACKAGE["pyproject.toml"].replace(
        "dependencies = []", 'dependencies = ["this-package-does-not-exist-mendflow==0.0.0"]')
    box = _sandbox(make_repo, broken)
    config = ManagedVenv(base_python=sys.executable)
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger(PROGRESS_LOGGER).addHandler(handler)
    try:
        with pytest.raises(EnvironmentSetupError) as info:
            prepare_environment(box, config, home())
    finally:
        logging.getLogger(PROGRESS_LOGGER).removeHandler(handler)
    # the minutes of a first build are announced (the setup stage was silent)
    assert lines == ["creating the target's venv (pip install -e .); a first build for these "
                     "dependency files can take minutes"]
    assert "this-package-does-not-exist-mendflow" in info.value.output_tail
    assert "environment.install" in info.value.hint
    assert "install the target" in info.value.message
    assert list(home().envs.iterdir()) == []  # the failed venv is gone
    assert not any((path / MARKER).exists() for path in home().envs.iterdir())


def test_install_plan_installs_the_test_dependency_group(tmp_path):
    """PEP 735 groups are not extras: `--group tests` (boltons 26.2.0 declares a `dev` group)."""
    grouped = tmp_path / "grouped"
    write_files(grouped, {"pyproject.toml": """
        [project]
        name = "g"
        version = "1"
        [project.optional-dependencies]
        tests = ["freezegun"]
        [dependency-groups]
        lint = ["ruff"]
        Tests = ["hypothesis"]
    """})
    assert install_plan(grouped, ManagedVenv()) == ["-e", ".[tests]", "--group", "Tests"]

    scripts = tmp_path / "scripts"  # not installable: the group alone
    write_files(scripts, {"pyproject.toml": "[dependency-groups]\ndev = ['pytest']\n",
                          "run.py": ""})
    assert install_plan(scripts, ManagedVenv()) == ["--group", "dev"]



@pytest.mark.parametrize(("files", "expected"), [
    ({"setup.cfg": "[metadata]\nname = p\n[coverage:run]\nplugins = covdefaults\n"},
     ["covdefaults"]),  # pyflakes 4.1.0: coverage failed to start without it
    ({".coveragerc": "[run]\nplugins =\n    coverage_conditional_plugin\n    covdefaults\n",
      "setup.cfg": "[coverage:run]\nplugins = other\n"},  # .coveragerc comes first
     ["coverage-conditional-plugin", "covdefaults"]),
    ({"tox.ini": "[coverage:run]\nbranch = true\n",
      "pyproject.toml": '[tool.coverage.run]\nplugins = ["ignored"]\n'}, []),
    ({"pyproject.toml": '[tool.coverage.run]\nplugins = ["django_coverage_plugin.x", '
                        '"localplug"]\n', "localplug.py": ""},  # a module of the repository
     ["django-coverage-plugin"]),
])
def test_install_plan_installs_the_coverage_plugins_of_the_coverage_config(tmp_path, files,
                                                                            expected):
    write_files(tmp_path, {"setup.py": "from setuptools import setup\nsetup()\n", **files})
    assert install_plan(tmp_path, ManagedVenv()) == ["-e", ".", *expected]


def test_install_plan_falls_back_to_the_tox_testenv_deps(tmp_path):
    """natsort 8.4.0 declares hypothesis (imported by its conftest.py) only in tox.ini."""
    tox = ("[testenv]\ndeps =\n    pytest-mock\n    hypothesis>=6 # property tests\n"
           "    py38: typing-extensions\n    {env:EXTRA:}\n    -r reqs/test.txt\n"
           "    -r missing.txt\n    not a requirement !\n")
    write_files(tmp_path / "plain", {"setup.py": "", "tox.ini": tox, "reqs/test.txt": "x\n"})
    assert install_plan(tmp_path / "plain", ManagedVenv()) == [
        "-e", ".", "pytest-mock", "hypothesis>=6", "-r", "reqs/test.txt"]
    # declared test dependencies win: tox's deps are not added to them
    write_files(tmp_path / "extra", {"setup.py": "", "tox.ini": tox, "setup.cfg":
                                     "[metadata]\nname = p\n[options.extras_require]\ntest = x\n"})
    assert install_plan(tmp_path / "extra", ManagedVenv()) == ["-e", ".[test]"]
