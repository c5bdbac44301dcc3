"""The mission flow end to end: real git repos, real tools, real Prefect (test harness)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mendflow.core.errors import ConfigError, RepositoryError
from mendflow.flows.mission import maintenance_mission
from mendflow.tasks.vcs import snapshot_checkout
from tests.helpers.git import git
from tests.helpers.target import target_python

pytestmark = pytest.mark.usefixtures("prefect_harness")

LIB = '''
import os
import sys


def add(a, b):
    return a + b
'''
TESTS = '''
from pkg.lib import add


def test_add():
    assert add(2, 3) == 5
'''


def write_config(tmp_path: Path, **sections) -> Path:
    data = {"environment": {"type": "interpreter", "python": target_python()},
            "tools": {"mypy": {"enabled": False}}}
    data.update(sections)
    path = tmp_path / "mendflow.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def branch_log(repo: Path, branch: str) -> list[str]:
    return git(repo, "log", "--format=%H %s", branch).splitlines()


def test_mission_commits_accepted_fix_and_leaves_checkout_alone(make_repo, tmp_path):
    repo = make_repo({"pkg/__init__.py": "", "pkg/lib.py": LIB, "tests/test_lib.py": TESTS})
    (repo / "scratch.txt").write_text("user's uncommitted work\n")  # untracked, must survive
    (repo / "pkg/lib.py").write_text(LIB + "\n# local edit\n")       # modified, must survive
    before = snapshot_checkout(repo)
    config = write_config(tmp_path, mission={"target_score": 100, "max_iterations": 2})

    result = maintenance_mission(path=str(repo), config_file=str(config), mission_id="t-accept")

    assert snapshot_checkout(repo) == before
    accepted = [p for p in result.patches if p.status == "accepted"]
    assert accepted and all(p.commit for p in accepted)
    assert any(f.rule == "F401" for f in result.findings)
    assert not any(f.rule == "F401" for f in result.final_findings)
    assert result.quality_score.after >= result.quality_score.before
    log = branch_log(repo, "mendflow/t-accept")
    assert len(log) == 1 + len(accepted)  # the base commit plus one commit per accepted patch
    message = git(repo, "log", "-1", "--format=%B", "mendflow/t-accept")
    assert "Mendflow-Patch: " in message and "Mendflow-Mission: t-accept" in message
    assert "import os" not in git(repo, "show", "mendflow/t-accept:pkg/lib.py")
    assert "import os" in (repo / "pkg/lib.py").read_text()  # the user's file is untouched

    report = Path(result.report_dir)
    for name in ("final_maintenance_report.md", "session_data.json", "validation_results.json",
                 "backup_history.json", "findings.sarif"):
        assert (report / name).is_file(), name
    session = json.loads((report / "session_data.json").read_text())
    assert session["mission_id"] == "t-accept" and session["status"] == "completed"
    assert {p["status"] for p in session["patches"]} <= {"accepted", "rejected"}
    backups = json.loads((report / "backup_history.json").read_text())
    assert {b["path"] for b in backups} >= {"pkg/lib.py"}
    assert all(b["sha256_before"] != b["sha256_after"] for b in backups)


@pytest.mark.slow
def test_fixer_leaves_collected_test_modules_alone_and_doctest_modules_are_code(
        make_repo, tmp_path):
    """python-dateutil 4.0.0 collects tests from `*_solution.py`; humanize 4.17.0 runs
    --doctest-modules. The F401 patch took the solution file too and was refused whole by
    `test-files`; with doctests, every documented module counted as a test file."""
    repo = make_repo({
        "pyproject.toml": '[tool.pytest.ini_options]\npython_files = ["test_*.py", "*_solution.py"]'
                          '\naddopts = "--doctest-modules"\n',
        "pkg/__init__.py": "",
        "pkg/lib.py": 'import os\n\n\ndef add(a, b):\n    """>>> add(1, 2)\n    3\n    """\n'
                      "    return a + b\n",
        "docs/ex_solution.py": "import sys\n\nfrom pkg.lib import add\n\n\n"
                               "def test_add():\n    assert add(2, 3) == 5\n",
    })
    config = write_config(tmp_path, tools={"mypy": {"enabled": False}, "bandit": {"enabled": False}},
                          mission={"max_iterations": 1})

    result = maintenance_mission(path=str(repo), config_file=str(config), mission_id="t-solution")

    [f401] = [p for p in result.patches if "F401" in p.title]
    assert f401.status == "accepted", f401.reason
    assert f401.files == ("pkg/lib.py",)
    assert "import sys" in git(repo, "show", "mendflow/t-solution:docs/ex_solution.py")


def test_patch_that_breaks_a_test_is_rejected_and_rolled_back(make_repo, tmp_path):
    # `os` looks unused in pkg/lib.py, but a test imports it from there: removing it
    # (ruff's safe F401 fix) breaks that test, so the no-test-regression gate must refuse.
    tests = TESTS + "\n\ndef test_reexport():\n    from pkg.lib import os\n    assert os.sep\n"
    repo = make_repo({"pkg/__init__.py": "", "pkg/lib.py": LIB, "tests/test_lib.py": tests})
    config = write_config(tmp_path, mission={"target_score": 100, "max_iterations": 1})

    result = maintenance_mission(path=str(repo), config_file=str(config), mission_id="t-reject")

    rejected = [p for p in result.patches if p.status == "rejected"]
    assert rejected, result.patches
    assert "no-test-regression" in (rejected[0].reason or "")
    assert rejected[0].commit is None
    assert result.exit_code == 2
    tip = git(repo, "rev-parse", "mendflow/t-reject")
    assert "import os" in git(repo, "show", f"{tip}:pkg/lib.py")
    worktree = Path(result.worktree)
    assert git(worktree, "status", "--porcelain", "--untracked-files=no") == ""


def test_dry_run_commits_nothing(make_repo, tmp_path):
    repo = make_repo({"pkg/__init__.py": "", "pkg/lib.py": LIB, "tests/test_lib.py": TESTS})
    config = write_config(tmp_path, mission={"target_score": 100, "max_iterations": 1})

    result = maintenance_mission(path=str(repo), config_file=str(config), mission_id="t-dry",
                                 dry_run=True)

    assert result.dry_run
    assert [p for p in result.patches if p.status == "accepted"]
    assert all(p.commit is None for p in result.patches)
    assert git(repo, "rev-parse", "mendflow/t-dry") == result.base_commit


def test_file_scope_limits_findings(make_repo, tmp_path):
    repo = make_repo({"pkg/__init__.py": "", "pkg/lib.py": LIB, "pkg/other.py": "import json\n",
                      "tests/test_lib.py": TESTS})
    config = write_config(tmp_path, mission={"max_iterations": 1})

    result = maintenance_mission(path=str(repo / "pkg" / "other.py"), config_file=str(config),
                                 mission_id="t-scope", dry_run=True)

    assert result.findings and {f.path for f in result.findings} == {"pkg/other.py"}
    assert all(set(p.files) == {"pkg/other.py"} for p in result.patches)


def test_backup_only_records_hashes_and_changes_nothing(make_repo, tmp_path):
    repo = make_repo({"pkg/__init__.py": "", "pkg/lib.py": LIB, "tests/test_lib.py": TESTS})
    config = write_config(tmp_path)

    result = maintenance_mission(path=str(repo), config_file=str(config), mission_id="t-backup",
                                 backup_only=True)

    assert result.patches == ()
    backups = json.loads((Path(result.report_dir) / "backup_history.json").read_text())
    assert {b["path"] for b in backups} == {"pkg/__init__.py", "pkg/lib.py", "tests/test_lib.py"}
    assert all(b["sha256_before"] == b["sha256_after"] for b in backups)
    assert git(repo, "rev-parse", "mendflow/t-backup") == result.base_commit


def test_not_a_repository_is_a_typed_error(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(RepositoryError, match="git"):
        maintenance_mission(path=str(tmp_path / "plain"), mission_id="t-norepo")


def test_misspelled_config_field_names_the_field(make_repo, tmp_path):
    repo = make_repo({"a.py": "x = 1\n"})
    config = tmp_path / "bad.yaml"
    config.write_text("mission:\n  max_iteratons: 2\n")
    with pytest.raises(ConfigError, match="max_iteratons"):
        maintenance_mission(path=str(repo), config_file=str(config), mission_id="t-badcfg")


def test_mission_reads_the_repository_config_and_names_its_flow_run(make_repo, tmp_path):
    """``.mendflow.yaml`` and ``[tool.mendflow]`` configure the mission; ``--config`` wins."""
    from prefect.client.orchestration import get_client

    repo = make_repo({"pkg/__init__.py": "", "pkg/lib.py": LIB, "tests/test_lib.py": TESTS,
                      ".mendflow.yaml": "tools: {ruff: {enabled: false}}\n",
                      "pyproject.toml": "[tool.mendflow]\ntools = {bandit = {enabled = false}}\n"
                                        "mission = {dry_run = true}\n"})
    config = write_config(tmp_path)  # the interpreter environment, mypy off

    result = maintenance_mission(path=str(repo), config_file=str(config), mission_id="t-cfg")

    assert {f.source for f in result.findings} <= {"pytest", "coverage", "todo"}  # no ruff, bandit
    assert result.dry_run is True
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(result.flow_run_id)
    assert run.name == f"t-cfg: {repo.name}"
