"""The oldest Python a repository declares, and what ruff is told of it (six 1.16.0 and
setup.py-only projects: fixes for the newest Python were accepted under mendflow's own)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mendflow.core.models import Declined, Patched
from mendflow.tasks.detect.python_floor import oldest_python, ruff_target_args
from mendflow.tasks.detect.ruff_run import measure_ruff, ruff_config_args
from mendflow.tasks.fix.ruff import RuffFixer
from tests.helpers.detect import sandbox_for, tools_config
from tests.helpers.git import write_files

OPTIONAL = """
    from typing import Optional


    def first(items) -> Optional[int]:
        return items[0] if items else None
    """


@pytest.mark.parametrize(("files", "oldest"), [
    ({"pyproject.toml": '[project]\nname = "p"\nrequires-python = ">=3.8"\n'}, (3, 8)),
    ({"setup.cfg": "[options]\npython_requires = >=3.7, <4\n"}, (3, 7)),
    ({"setup.py": 'from setuptools import setup\nsetup(name="s", '
                  'python_requires=">=2.7, !=3.0.*, !=3.1.*, !=3.2.*")\n'}, (2, 7)),
    ({"setup.py": "from setuptools import setup\nsetup(name='s', python_requires=REQ)\n"}, None),
    ({"setup.py": "PYTHON_REQUIRES = '>=2.5, !=3.0.*'\nsetup(python_requires=PYTHON_REQUIRES)\n"},
     (2, 5)),
    ({"pyproject.toml": '[project]\nname = "p"\nrequires-python = "not a specifier"\n'}, None),
    ({"setup.py": "setup(classifiers=['Programming Language :: Python :: 3.9',\n"
                  "    'Programming Language :: Python :: 2.7'])\n"}, (2, 7)),  # wcwidth
    ({"setup.cfg": "[metadata]\nclassifiers =\n    Programming Language :: Python :: 3.6\n"},
     (3, 6)),
    ({}, None),
])
def test_oldest_python_from_the_packaging_metadata(tmp_path: Path, files, oldest):
    write_files(tmp_path, files)
    assert oldest_python(tmp_path) == oldest


def test_ruff_target_args_clamp_to_ruffs_oldest(tmp_path: Path):
    write_files(tmp_path, {"setup.cfg": "[options]\npython_requires = >=3.5\n"})
    assert ruff_target_args(tmp_path) == ["--target-version", "py37"]
    write_files(tmp_path, {"pyproject.toml": '[project]\nrequires-python = ">=3.10"\n'})
    assert ruff_target_args(tmp_path) == ["--target-version", "py310"]


def test_isolated_ruff_keeps_the_declared_python(make_repo):
    """Without a ruff config ruff runs --isolated, which ignores requires-python: without the
    target, ruff reported (and safely fixed) Optional[int] -> int | None for a >=3.8 project."""
    repo = make_repo({"pkg/__init__.py": "", "pkg/mod.py": OPTIONAL,
                      "setup.py": 'from setuptools import setup\n\n'
                                  'setup(name="p", python_requires=">=3.8")\n'})
    assert ruff_config_args(repo) == ["--isolated", "--target-version", "py38",
                                      "--extend-ignore", "RUF100"]
    rules = {f.rule for f in measure_ruff(sandbox_for(repo), tools_config()).findings}
    assert "UP045" not in rules and "FA100" in rules


def test_ruff_fixer_declines_for_a_python_2_project(make_repo):
    repo = make_repo({"pkg/__init__.py": "", "pkg/mod.py": "import os\n",
                      "setup.py": 'from setuptools import setup\n\n'
                                  'setup(name="p", python_requires=">=2.7")\n'})
    sandbox = sandbox_for(repo)
    unused = [f for f in measure_ruff(sandbox, tools_config()).findings if f.rule == "F401"]
    proposal = RuffFixer().propose(sandbox, unused)
    assert isinstance(proposal, Declined)
    assert "supports Python 2.7" in proposal.reason and "'>=2.7'" in proposal.reason


def test_ruff_fixer_leaves_syntax_upgrades_alone_below_python_3_7(make_repo):
    """inflection 0.5.1 declares >=3.5: UP032's f-strings were accepted; F401 still fixed."""
    repo = make_repo({"pkg/__init__.py": "", "pkg/mod.py": 'import os\n\nX = "{}".format(1)\n',
                      "setup.cfg": "[options]\npython_requires = >=3.5\n"})
    sandbox = sandbox_for(repo)
    found = {f.rule: f for f in measure_ruff(sandbox, tools_config()).findings}
    upgrade = RuffFixer().propose(sandbox, [found["UP032"]])
    assert isinstance(upgrade, Declined) and "UP032 fix may need Python 3.7+" in upgrade.reason
    assert isinstance(RuffFixer().propose(sandbox, [found["F401"]]), Patched)


def test_a_subdirectory_project_is_first_party_for_ruff(make_repo):
    """parse 1.20.2 in python/: run from the root, isort took `parse` for third-party."""
    repo = make_repo({"README.md": "", "python/pyproject.toml": '[project]\nname = "pkg"\n',
                      "python/pkg/__init__.py": "",
                      "python/tests/test_pkg.py": "import os\n\nimport requests\n\nimport pkg\n"})
    assert ruff_config_args(repo)[-4:-2] == [
        "--config", 'src = [".", "src", "python", "python/src"]']
    result = measure_ruff(sandbox_for(repo), tools_config())
    assert result.ok and "I001" not in {f.rule for f in result.findings}
