"""The layers point one way (core <- infra <- blocks <- tasks <- flows <- deployments <- cli).

import-linter checks the contracts of ``pyproject.toml`` against the installed
namespace. grimp discovers a package's modules below its folder, and the
design card's folders (``flows/``, ``tasks/`` ...) live beside ``mendflow/`` in
the repository, so the namespace is assembled once in a temporary directory,
exactly as a regular install lays it out.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def installed_tree(target: Path) -> Path:
    """Copy the package folders into ``target`` the way ``package-dir`` maps them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    shutil.copytree(ROOT / "mendflow", target / "mendflow",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for package, folder in config["package-dir"].items():
        shutil.copytree(ROOT / folder, target / package.replace(".", "/"),
                        ignore=shutil.ignore_patterns("__pycache__"))
    return target


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).parent / "lint-imports"
    return subprocess.run([str(lint), "--no-cache", str(ROOT / "pyproject.toml")],
                          cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)


def test_layer_contracts_are_kept(tmp_path):
    done = lint_imports(installed_tree(tmp_path))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    tree = installed_tree(tmp_path)
    errors = tree / "mendflow" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nimport mendflow.tasks.vcs  # noqa\n")
    done = lint_imports(tree)
    assert done.returncode != 0
    assert "mendflow.core.errors -> mendflow.tasks.vcs" in done.stdout
