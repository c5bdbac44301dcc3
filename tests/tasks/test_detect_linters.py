"""The ruff, mypy and bandit detectors on real repositories, with the real tools."""

from __future__ import annotations

from pathlib import Path

from mendflow.infra.tool_cache import shared_cache_dir
from mendflow.tasks.detect import measure_bandit, measure_mypy, measure_ruff
from mendflow.tasks.detect.bandit_run import bandit_config_args
from mendflow.tasks.detect.mypy_run import discover_mypy_targets, mypy_config_sets_targets
from mendflow.tasks.detect.ruff_run import ruff_config_args
from tests.helpers.detect import (
    TARGET_ENV,
    sandbox_for,
    sandbox_for_missing,
    tools_config,
    worktree_status,
)
from tests.helpers.git import git, write_files

LINTY = {
    "pkg/__init__.py": "",
    "pkg/mod.py": """
        import os


        def compare(x):
            if x == None:
                return undefined_name
            return x
        """,
}


def rules(result):
    return sorted(f.rule for f in result.findings)


# --- ruff -------------------------------------------------------------------------


def test_ruff_findings_severity_and_fixable(make_repo):
    repo = make_repo({**LINTY, "pkg/broken.py": "def f(:\n    pass\n"})
    tools = tools_config(ruff={"args": ["--extend-select", "E711"]})
    result = measure_ruff(sandbox_for(repo), tools)
    assert result.ok and result.tool == "ruff" and "--isolated" in result.command
    found = {f.rule: f for f in result.findings}
    unused = found["F401"]
    assert (unused.path, unused.line, unused.column) == ("pkg/mod.py", 1, 8)
    assert unused.fixable and unused.severity == "medium" and unused.category == "lint"
    assert unused.url and unused.url.startswith("https://docs.astral.sh/ruff/rules/")
    undefined = found["F821"]
    assert undefined.severity == "high" and not undefined.fixable
    assert undefined.symbol == "compare"
    assert found["E711"].severity == "low"
    syntax = [f for f in result.findings if f.path == "pkg/broken.py"]
    assert syntax and all(f.category == "syntax" and f.severity == "high" for f in syntax)
    assert len({f.id for f in result.findings}) == len(result.findings)
    assert worktree_status(repo) == ""


def test_ruff_respects_the_repository_config(make_repo):
    repo = make_repo({
        **LINTY,
        "pyproject.toml": """
            [tool.ruff.lint]
            select = ["E", "F"]
            ignore = ["F401"]

            [tool.ruff.lint.per-file-ignores]
            "pkg/mod.py" = ["E711"]
            """,
        "pkg/other.py": "import sys\nx = 1 if sys else 2\nif x == None:\n    pass\n",
    })
    assert ruff_config_args(repo) == []
    result = measure_ruff(sandbox_for(repo), tools_config())
    assert result.ok and "--isolated" not in result.command
    assert [(f.path, f.rule) for f in sorted(result.findings, key=lambda f: f.path)] == [
        ("pkg/mod.py", "F821"), ("pkg/other.py", "E711")]


def test_ruff_toml_in_a_subdirectory_counts_as_config(make_repo):
    repo = make_repo({**LINTY, "pkg/ruff.toml": 'lint.select = ["F821"]\n'})
    assert ruff_config_args(repo) == []
    assert rules(measure_ruff(sandbox_for(repo), tools_config())) == ["F821"]


def test_ruff_ignores_config_outside_the_repository(make_repo, tmp_path):
    (tmp_path / "ruff.toml").write_text('lint.select = ["E711"]\n')
    repo = make_repo(LINTY)
    assert "F401" in rules(measure_ruff(sandbox_for(repo), tools_config()))


def test_ruff_broken_config_is_a_failed_result(make_repo):
    repo = make_repo({**LINTY, "ruff.toml": "lint.select = 12\n"})
    result = measure_ruff(sandbox_for(repo), tools_config())
    assert not result.ok and result.exit_code == 2 and result.error
    assert result.findings == ()


# --- mypy -------------------------------------------------------------------------

TYPED = {
    "pkg/__init__.py": "",
    "pkg/typed.py": """
        import not_a_real_module_xyz


        def double(x: int) -> int:
            return str(x * 2)


        def total(values: list[float]) -> float:
            return sum(values)


        ints: list[int] = [1, 2]
        total(ints)
        """,
    "tests/test_typed.py": "x: int = 'not checked, tests are not targets'\n",
    "setup.py": "y: int = 'not checked either'\n",
}


def test_mypy_errors_notes_and_severities(make_repo):
    repo = make_repo(TYPED)
    result = measure_mypy(sandbox_for(repo), TARGET_ENV, tools_config())
    assert result.ok and result.exit_code == 1 and result.command[-1] == "pkg"
    found = {f.rule: f for f in result.findings}
    assert set(found) == {"return-value", "arg-type", "import-not-found"}
    wrong = found["return-value"]
    assert (wrong.path, wrong.line, wrong.column) == ("pkg/typed.py", 5, 12)
    assert wrong.severity == "medium" and wrong.category == "type" and wrong.symbol == "double"
    assert found["import-not-found"].severity == "low"
    assert "invariant" in found["arg-type"].detail  # the notes after the error
    assert worktree_status(repo) == ""


def test_mypy_config_files_is_respected(make_repo):
    repo = make_repo({
        **TYPED,
        "mypy.ini": "[mypy]\nfiles = lib/checked.py\n",
        "lib/__init__.py": "",
        "lib/checked.py": "def f() -> int:\n    return 'no'\n",
    })
    assert mypy_config_sets_targets(repo)
    result = measure_mypy(sandbox_for(repo), TARGET_ENV, tools_config())
    assert result.ok and result.command[-2] == "--python-executable"  # no targets passed
    assert [(f.path, f.rule) for f in result.findings] == [("lib/checked.py", "return-value")]


def test_mypy_src_layout_and_pyproject_config(make_repo):
    repo = make_repo({
        "pyproject.toml": "[tool.mypy]\ndisallow_untyped_defs = true\n",
        "src/pkg/__init__.py": "",
        "src/pkg/core.py": "def untyped(x):\n    return x\n",
        "tests/test_core.py": "def test_x():\n    pass\n",
    })
    assert not mypy_config_sets_targets(repo)
    assert discover_mypy_targets(repo) == ["src/pkg"]
    result = measure_mypy(sandbox_for(repo), TARGET_ENV, tools_config())
    assert [(f.path, f.rule) for f in result.findings] == [("src/pkg/core.py", "no-untyped-def")]


def test_mypy_target_discovery_flat_layout(tmp_path):
    write_files(tmp_path, {
        "alpha/__init__.py": "", "beta/__init__.py": "", "notapkg/script.py": "",
        "tests/__init__.py": "", "docs/conf.py": "", ".hidden/__init__.py": "",
        "venv/pyvenv.cfg": "", "venv/__init__.py": "",
        "tool.py": "", "setup.py": "", "conftest.py": "", "test_top.py": "",
    })
    assert discover_mypy_targets(tmp_path) == ["alpha", "beta", "tool.py"]


def test_mypy_with_nothing_to_check_is_ok(make_repo):
    repo = make_repo({"tests/test_a.py": "def test_a():\n    pass\n"})
    result = measure_mypy(sandbox_for(repo), TARGET_ENV, tools_config())
    assert result.ok and result.findings == () and result.command == ()


def test_mypy_syntax_error_is_a_finding(make_repo):
    repo = make_repo({"mod.py": "def f(:\n    pass\n"})
    result = measure_mypy(sandbox_for(repo), TARGET_ENV, tools_config())
    assert result.ok and result.exit_code == 2
    assert result.findings and all(
        (f.rule, f.category, f.severity, f.path) == ("syntax", "syntax", "high", "mod.py")
        for f in result.findings)


def test_mypy_crash_is_a_failed_result(make_repo):
    repo = make_repo({"mod.py": "x = 1\n"})
    result = measure_mypy(sandbox_for(repo), TARGET_ENV,
                          tools_config(mypy={"args": ["--no-such-option"]}))
    assert not result.ok and result.exit_code == 2
    assert "unrecognized arguments" in result.error


# --- bandit -----------------------------------------------------------------------

RISKY = {
    "app/__init__.py": "",
    "app/run.py": """
        import subprocess

        import yaml


        def run(cmd):
            return subprocess.call(cmd, shell=True)


        def load(text):
            return yaml.load(text)
        """,
    "tests/test_run.py": "import subprocess\n\nsubprocess.call('ls', shell=True)\n",
}


def test_bandit_findings_and_default_excludes(make_repo):
    repo = make_repo(RISKY)
    result = measure_bandit(sandbox_for(repo), tools_config())
    assert result.ok and result.exit_code == 1
    found = {f.rule: f for f in result.findings}
    assert set(found) == {"B404", "B602", "B506"}  # nothing from tests/
    shell = found["B602"]
    assert (shell.path, shell.line, shell.severity, shell.category) == (
        "app/run.py", 7, "high", "security")
    assert shell.symbol == "run" and shell.url and "b602" in shell.url
    assert found["B506"].severity == "medium" and found["B404"].severity == "low"
    assert worktree_status(repo) == ""


def test_bandit_min_severity(make_repo):
    repo = make_repo(RISKY)
    result = measure_bandit(sandbox_for(repo), tools_config(bandit={"min_severity": "medium"}))
    assert rules(result) == ["B506", "B602"]


def test_bandit_pyproject_config_is_respected(make_repo):
    repo = make_repo({**RISKY, "pyproject.toml": (
        '[tool.bandit]\nskips = ["B404"]\nexclude_dirs = ["vendor"]\n'),
        "vendor/lib.py": "import pickle\n"})
    args = bandit_config_args(repo)
    assert args == ["-c", "pyproject.toml"]
    result = measure_bandit(sandbox_for(repo), tools_config())
    assert {(f.path, f.rule) for f in result.findings} == {
        ("app/run.py", "B602"), ("app/run.py", "B506"), ("tests/test_run.py", "B602"),
        ("tests/test_run.py", "B607")}


def test_bandit_ini_file_is_respected(make_repo):
    repo = make_repo({**RISKY, ".bandit": "[bandit]\nskips = B506\n"})
    assert bandit_config_args(repo)[:2] == ["--ini", ".bandit"]
    assert rules(measure_bandit(sandbox_for(repo), tools_config())) == ["B404", "B602"]


def test_bandit_failure_is_a_failed_result(make_repo):
    repo = make_repo(RISKY)
    result = measure_bandit(sandbox_for(repo), tools_config(bandit={"args": ["--no-such"]}))
    assert not result.ok and result.error and result.findings == ()


def test_disabled_linters_run_nothing(tmp_path: Path):
    sandbox = sandbox_for_missing(tmp_path)
    tools = tools_config(ruff={"enabled": False}, mypy={"enabled": False},
                         bandit={"enabled": False})
    for result in (measure_ruff(sandbox, tools), measure_mypy(sandbox, TARGET_ENV, tools),
                   measure_bandit(sandbox, tools)):
        assert result.ok and result.findings == () and result.command == ()


def test_a_baseline_mypy_cache_seeds_the_next_mission_and_stays_right(make_repo, tmp_path):
    """The next mission's baseline starts from the last one's mypy cache, in a worktree at
    another path, and still reports its own tree: a fixed error is gone, a new one found.
    Only a baseline updates the shared cache; a validation leaves it as it was."""
    repo = make_repo({**TYPED, "pkg/other.py": "def name() -> str:\n    return 'x'\n"})
    worktrees = tmp_path / "state" / "worktrees"
    first, second = worktrees / "m-1", worktrees / "m-2"
    for tree in (first, second):
        git(repo, "worktree", "add", "-q", "--detach", str(tree))
    sandbox = sandbox_for(repo)
    one = sandbox.model_copy(update={"mission_id": "m-1", "path": first})
    two = sandbox.model_copy(update={"mission_id": "m-2", "path": second})
    shared = shared_cache_dir(first, repo, "mypy")

    baseline = measure_mypy(one, TARGET_ENV, tools_config(), share_cache=True)
    assert rules(baseline) == ["arg-type", "import-not-found", "return-value"]
    assert shared.is_dir() and sorted(p.name for p in shared.iterdir())

    # the next mission's tree: double() fixed, other.py broken
    write_files(second, {"pkg/typed.py": (repo / "pkg/typed.py").read_text().replace(
        "return str(x * 2)", "return x * 2"),
        "pkg/other.py": "def name() -> str:\n    return 1\n"})
    seeded = measure_mypy(two, TARGET_ENV, tools_config(), share_cache=True)
    assert sorted((f.path, f.rule) for f in seeded.findings) == [
        ("pkg/other.py", "return-value"), ("pkg/typed.py", "arg-type"),
        ("pkg/typed.py", "import-not-found")]
    saved = {p.name: p.stat().st_mtime_ns for p in shared.rglob("*")}

    write_files(second, {"pkg/other.py": "def name() -> str:\n    return None\n"})
    validation = measure_mypy(two, TARGET_ENV, tools_config())  # a patch's run
    assert ("pkg/other.py", "return-value") in {(f.path, f.rule) for f in validation.findings}
    assert {p.name: p.stat().st_mtime_ns for p in shared.rglob("*")} == saved
    # a sandbox that already holds a cache (a resumed mission's) does not replace it either
    again = measure_mypy(two, TARGET_ENV, tools_config(), share_cache=True)
    assert rules(again) == rules(validation)
    assert {p.name: p.stat().st_mtime_ns for p in shared.rglob("*")} == saved


def test_mypy_runs_serially_whatever_num_workers_the_config_sets(make_repo):
    """humanize 4.17.0 sets `num_workers = 4`: mypy's worker processes crashed (exit 2)."""
    repo = make_repo({
        "pyproject.toml": "[tool.mypy]\nstrict = true\nnum_workers = 2\n",
        "src/pkg/__init__.py": "",
        "src/pkg/core.py": "def untyped(x):\n    return x\n",
    })
    result = measure_mypy(sandbox_for(repo), TARGET_ENV, tools_config())
    assert result.ok, result.error
    assert [(f.path, f.rule) for f in result.findings] == [("src/pkg/core.py", "no-untyped-def")]


def test_without_a_ruff_config_the_noqa_comments_of_another_linter_are_not_unused(make_repo):
    """tabulate 0.10.0 lints with flake8: RUF100 removed its `# noqa: E731` comments."""
    repo = make_repo({"tox.ini": "[flake8]\nmax-line-length = 99\n",
                      "pkg/__init__.py": "", "pkg/mod.py": "f = lambda s: s  # noqa: E731\n"})
    result = measure_ruff(sandbox_for(repo), tools_config())
    assert result.ok and "--isolated" in result.command
    assert "RUF100" not in {f.rule for f in result.findings}


def test_without_a_ruff_config_the_flake8_line_length_applies(make_repo):
    """tabulate 0.10.0 (`max-line-length = 99` in tox.ini's [flake8]): a fix joining lines
    into one longer than that passed every gate and broke the project's flake8."""
    long_line = "x = " + repr("a" * 94) + "\n"  # 100 characters
    repo = make_repo({"tox.ini": "[flake8]\nmax-line-length = 99\nignore = W503\n",
                      "pkg/__init__.py": "", "pkg/mod.py": long_line + "y = 1\n"})
    assert ruff_config_args(repo)[-4:] == ["--line-length", "99", "--extend-select", "E501"]
    result = measure_ruff(sandbox_for(repo), tools_config())
    assert [(f.rule, f.line) for f in result.findings if f.rule == "E501"] == [("E501", 1)]
    write_files(repo, {"setup.cfg": "[flake8]\nextend-ignore = E5\n", "tox.ini": ""})
    assert "E501" not in ruff_config_args(repo)
