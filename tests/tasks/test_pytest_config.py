"""The pytest config of a project in a subdirectory (subproject_pytest) and its use."""

from __future__ import annotations

import pytest

from mendflow.tasks.detect import measure_tests
from mendflow.tasks.detect.pytest_config import SubprojectPytest, subproject_pytest
from tests.helpers.detect import TARGET_ENV, sandbox_for, tools_config
from tests.helpers.git import write_files

SETUP = "from setuptools import setup\nsetup(name='p')\n"


@pytest.mark.parametrize(("files", "expected"), [
    ({"python/setup.py": SETUP, "python/pytest.ini": "[pytest]\ntestpaths = tests\n",
      "python/tests/test_a.py": ""},
     SubprojectPytest("python/pytest.ini", ("python/tests",))),
    ({"python/setup.py": SETUP, "python/pytest.ini": ""},  # empty pytest.ini still counts
     SubprojectPytest("python/pytest.ini", ("python",))),
    ({"python/setup.py": SETUP, "python/tox.ini": "[tox]\nenvlist = py\n",
      "python/setup.cfg": "[tool:pytest]\ntestpaths = t[0-9]\n", "python/t1/x.py": "",
      "python/t2/y.py": ""},  # tox.ini without [pytest] is not pytest's
     SubprojectPytest("python/setup.cfg", ("python/t1", "python/t2"))),
    ({"python/pyproject.toml": '[project]\nname = "p"\n[tool.pytest.ini_options]\n'
                               'testpaths = ["missing"]\n'},
     SubprojectPytest("python/pyproject.toml", ("python",))),
    ({"python/pyproject.toml": '[project]\nname = "p"\n[tool.pytest]\ntestpaths = ["t"]\n',
      "python/t/a.py": ""},
     SubprojectPytest("python/pyproject.toml", ("python/t",))),
    ({"setup.py": SETUP, "pytest.ini": "[pytest]\n"}, None),  # a root project
    ({"tox.ini": "[pytest]\naddopts = -q\n", "python/setup.py": SETUP,
      "python/pytest.ini": "[pytest]\n"}, None),  # the root's config is the one pytest finds
    ({"python/setup.py": SETUP}, None),  # no config in the project
    ({"a/setup.py": SETUP, "a/pytest.ini": "", "b/setup.py": SETUP}, None),  # two projects
])
def test_subproject_pytest_finds_the_config_pytest_would_read_there(tmp_path, files, expected):
    write_files(tmp_path, files)
    assert subproject_pytest(tmp_path) == expected


def test_a_subdirectory_projects_pytest_config_applies(make_repo):
    repo = make_repo({
        "README.md": "monorepo\n",
        "python/setup.py": SETUP,
        "python/pytest.ini": "[pytest]\ntestpaths = checks\npython_files = check_*.py\n"
                             "pythonpath = .\naddopts = --strict-markers\nmarkers =\n    fast\n",
        "python/lib.py": "def f():\n    return 1\n",
        "python/checks/check_lib.py": "import pytest\nfrom lib import f\n\n\n@pytest.mark.fast\n"
                                      "def test_f():\n    assert f() == 1\n",
        "python/scratch/test_scratch.py": "def test_no():\n    assert False\n",
    })
    result = measure_tests(sandbox_for(repo), TARGET_ENV, tools_config())
    assert result.ok, result.error
    assert [(c.nodeid, c.outcome) for c in result.test_run.cases] == [
        ("python/checks/check_lib.py::test_f", "passed")]
    selected = measure_tests(sandbox_for(repo), TARGET_ENV, tools_config(),
                             select=("python/checks/check_lib.py::test_f",))
    assert [c.outcome for c in selected.test_run.cases] == ["passed"]
