"""mendflow installs as one namespace that a user's own ``tasks.py`` or ``flows/`` cannot shadow.

Prefect starts flow runs with ``python -m``, which puts the working directory
first on ``sys.path``; a Celery or invoke project has a ``tasks.py``. Before
the namespace, ``import flows.mission`` from such a directory failed with
``'tasks' is not a package``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib

from tests.helpers.e2e import USER_PROJECT
from tests.helpers.git import write_files

ROOT = Path(__file__).resolve().parents[2]

MODULES = ["mendflow.flows.mission", "mendflow.flows.cycle", "mendflow.flows.approval",
           "mendflow.deployments.serve", "mendflow.cli", "mendflow.blocks.notify"]


IMPORT_ALL = ("import importlib, sys\n"
              f"for name in {MODULES!r}:\n"
              "    importlib.import_module(name)\n"
              "import mendflow.flows.mission as m\n"
              "print(m.__file__)\n"
              "print(m.maintenance_mission.name)\n")


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    """A new venv with a regular (non-editable) install of this checkout.

    Its dependencies come from the test environment through a ``.pth`` file, so
    the install itself is what is tested (pip builds the wheel in an isolated
    build environment with the ``build-system`` requirements).
    """
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    # no pip of its own (ensurepip: ~5 CPU-seconds): this pip installs into it (`--python`)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    source = tmp_path_factory.mktemp("source") / "mendflow"  # setuptools builds in the tree
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    build = tmp_path_factory.mktemp("build")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                           "--no-deps", str(source)],
                          capture_output=True, text=True, cwd=build, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return python


def user_project(tmp_path: Path) -> Path:
    work = tmp_path / "acme"
    write_files(work, USER_PROJECT)
    return work


def test_every_package_folder_is_listed_for_setuptools():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"mendflow": ROOT / "mendflow", **{k: ROOT / v for k, v in setuptools["package-dir"].items()}}
    found = set()
    for package, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            found.add(".".join((package, *rel)))
    assert found == set(setuptools["packages"])


@pytest.mark.slow
def test_regular_install_imports_every_flow_beside_a_user_tasks_py(fresh_venv, tmp_path):
    work = user_project(tmp_path)
    done = subprocess.run([str(fresh_venv), "-c", IMPORT_ALL], cwd=work, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    module_file, flow_name = done.stdout.split()[-2:]
    assert "site-packages/mendflow/flows/mission.py" in module_file
    assert flow_name == "maintenance-mission"
    # the deployment metadata ships with the package
    assert Path(module_file).parents[1].joinpath("deployments", "prefect.yaml").is_file()


def test_editable_install_imports_every_flow_beside_a_user_tasks_py(tmp_path):
    work = user_project(tmp_path)
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=work, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split()[-2] == str(ROOT / "flows" / "mission.py")


def test_cli_runs_as_a_module_beside_a_user_tasks_py(tmp_path):
    work = user_project(tmp_path)
    done = subprocess.run([sys.executable, "-m", "mendflow.cli", "--help"], cwd=work,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mission" in done.stdout
