"""RuffFixer on real git repositories with the real ruff binary."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from mendflow.core.config import (
    RuffFixerConfig,
    ToolsConfig,
)
from mendflow.core.findings import SourceIndex, make_finding
from mendflow.core.models import Declined, Finding, Patched, Sandbox
from mendflow.tasks.detect.ruff_run import measure_ruff, ruff_executable
from mendflow.tasks.fix import plan_fixes, propose_patch
from mendflow.tasks.fix.ruff import RuffFixer


def ruff_findings(root: Path, select: str = "F401,F841,F821") -> list[Finding]:
    """Findings of a real ``ruff check --output-format json`` run (as a detector makes them)."""
    out = subprocess.run(
        [ruff_executable(), "check", "--output-format", "json", "--no-cache", "--exit-zero",
         "--select", select, "."], cwd=root, capture_output=True, text=True, check=True).stdout
    index = SourceIndex(root)
    findings = []
    for item in json.loads(out):
        rel = Path(item["filename"]).resolve().relative_to(root.resolve()).as_posix()
        fix = item.get("fix")
        findings.append(make_finding(
            index, source="ruff", rule=item["code"], path=rel, line=item["location"]["row"],
            column=item["location"]["column"], severity="low", category="lint",
            message=item["message"], url=item.get("url"),
            fixable=bool(fix) and fix.get("applicability") == "safe"))
    return findings


def sandbox_of(root: Path) -> Sandbox:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                          text=True, check=True).stdout.strip()
    return Sandbox(mission_id="m-test", path=root, branch="mendflow/m-test", base_commit=head,
                   repo_root=root)


def git_apply(root: Path, diff: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "apply", *extra, "-"], cwd=root, input=diff.encode("utf-8"),
                          capture_output=True, check=False)


TWO_FILES = {
    "pkg/__init__.py": "",
    "pkg/a.py": """
        import os
        import sys


        def f():
            return 1
        """,
    "pkg/b.py": """
        import json

        VALUE = 2
        """,
    "pkg/c.py": """
        def g():
            return undefined_name
        """,
}


def test_unused_imports_in_two_files_make_one_applicable_patch(make_repo):
    root = make_repo(TWO_FILES)
    findings = ruff_findings(root)
    fixer = RuffFixer(RuffFixerConfig())
    groups = fixer.plan(findings)
    assert [{f.rule for f in g} for g in groups] == [{"F401"}]
    (group,) = groups
    assert len(group) == 3

    proposal = fixer.propose(sandbox_of(root), group)

    assert isinstance(proposal, Patched), proposal
    patch = proposal.patch
    assert patch.fixer == "ruff" and patch.confidence == "high"
    assert patch.files == ("pkg/a.py", "pkg/b.py")
    assert set(patch.finding_ids) == {f.id for f in group} == set(proposal.finding_ids)
    assert patch.title == "ruff: fix F401 (unused-import) in 2 files"
    assert len(patch.id) == 12 and int(patch.id, 16) >= 0
    assert patch.diff.startswith(
        "diff --git a/pkg/a.py b/pkg/a.py\n--- a/pkg/a.py\n+++ b/pkg/a.py\n")
    assert "Would fix" not in patch.diff
    status = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                            text=True, check=True)
    assert status.stdout == ""  # ruff --diff wrote nothing

    check = git_apply(root, patch.diff, "--check")
    assert check.returncode == 0, check.stderr
    assert git_apply(root, patch.diff).returncode == 0
    remaining = ruff_findings(root)
    assert [f.rule for f in remaining] == ["F821"]
    assert (root / "pkg/a.py").read_text().startswith("\n\ndef f():")


def test_fixes_what_the_ruff_detector_reports(make_repo):
    root = make_repo({**TWO_FILES, "ruff.toml": "[lint]\nextend-select = [\"I\"]\n",
                      "pkg/d.py": "import sys\nimport os\n\nprint(os, sys)\n"})
    sandbox = sandbox_of(root)
    before = measure_ruff(sandbox, ToolsConfig())
    groups = RuffFixer().plan(before.findings)
    assert sorted(g[0].rule for g in groups) == ["F401", "I001"]

    for group in groups:
        proposal = RuffFixer().propose(sandbox, group)
        assert isinstance(proposal, Patched), proposal
        applied = git_apply(root, proposal.patch.diff)
        assert applied.returncode == 0, applied.stderr

    after = measure_ruff(sandbox, ToolsConfig())
    assert after.ok and sorted(f.rule for f in after.findings) == ["F821"]


def test_same_tree_gives_same_patch_id(make_repo):
    root = make_repo(TWO_FILES)
    group = RuffFixer().plan(ruff_findings(root))[0]
    first = RuffFixer().propose(sandbox_of(root), group).patch
    second = RuffFixer().propose(sandbox_of(root), tuple(reversed(group))).patch
    assert first is not None and second is not None
    assert first.id == second.id and first.diff == second.diff


def test_rule_without_a_fix_is_declined(make_repo):
    root = make_repo(TWO_FILES)
    undefined = tuple(f for f in ruff_findings(root) if f.rule == "F821")
    assert undefined and not any(f.fixable for f in undefined)

    proposal = RuffFixer().propose(sandbox_of(root), undefined)

    assert isinstance(proposal, Declined)
    assert proposal.reason == "ruff had nothing to fix for F821"
    assert proposal.finding_ids == tuple(f.id for f in undefined)


def test_unsafe_fix_only_with_unsafe_fixes(make_repo):
    root = make_repo({"mod.py": """
        def g():
            unused = 1
            return 2
        """})
    group = tuple(f for f in ruff_findings(root) if f.rule == "F841")
    assert len(group) == 1

    safe = RuffFixer(RuffFixerConfig()).propose(sandbox_of(root), group)
    unsafe = RuffFixer(RuffFixerConfig(unsafe_fixes=True)).propose(sandbox_of(root), group)

    assert isinstance(safe, Declined) and safe.reason == "ruff had nothing to fix for F841"
    assert isinstance(unsafe, Patched) and "-    unused = 1\n" in unsafe.patch.diff
    assert git_apply(root, unsafe.patch.diff, "--check").returncode == 0


def test_repository_per_file_ignores_are_respected(make_repo):
    root = make_repo({
        "pyproject.toml": """
            [tool.ruff.lint.per-file-ignores]
            "pkg/__init__.py" = ["F401"]
            """,
        "pkg/__init__.py": "import os\n",
        "pkg/a.py": "import sys\n\nX = 1\n",
    })
    index = SourceIndex(root)
    init_finding = make_finding(index, source="ruff", rule="F401", path="pkg/__init__.py",
                                line=1, severity="low", category="lint",
                                message="`os` imported but unused", fixable=True)
    a_finding = make_finding(index, source="ruff", rule="F401", path="pkg/a.py", line=1,
                             severity="low", category="lint",
                             message="`sys` imported but unused", fixable=True)

    proposal = RuffFixer().propose(sandbox_of(root), (init_finding, a_finding))

    assert isinstance(proposal, Patched)
    assert proposal.patch.files == ("pkg/a.py",)
    assert proposal.patch.finding_ids == (a_finding.id,)
    assert "pkg/__init__.py" not in proposal.patch.diff
    assert proposal.patch.title.endswith("in 1 file")


def test_crlf_file_and_path_with_space_apply_cleanly(make_repo):
    root = make_repo({"sub dir/b c.py": "X = 1\n"})
    (root / "crlf.py").write_bytes(b"import os\r\nX = 1\r\n")
    (root / "nonl.py").write_bytes(b"import re\nY = 2")
    (root / "sub dir/b c.py").write_text("import json\n\nX = 1\n")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "more"],
                   cwd=root, check=True)
    group = RuffFixer().plan(ruff_findings(root))[0]

    patch = RuffFixer().propose(sandbox_of(root), group).patch

    assert patch is not None
    assert patch.files == ("crlf.py", "nonl.py", "sub dir/b c.py")
    assert "-import os\r\n X = 1\r\n" in patch.diff
    assert "\\ No newline at end of file\n" in patch.diff
    check = git_apply(root, patch.diff, "--check")
    assert check.returncode == 0, check.stderr
    assert git_apply(root, patch.diff).returncode == 0
    assert (root / "crlf.py").read_bytes() == b"X = 1\r\n"
    assert (root / "nonl.py").read_bytes() == b"Y = 2"


def test_retry_with_feedback_is_declined_without_running_ruff(make_repo):
    root = make_repo(TWO_FILES)
    group = RuffFixer().plan(ruff_findings(root))[0]
    proposal = RuffFixer().propose(sandbox_of(root), group, feedback="Gate 'coverage' failed",
                                   attempt=2)
    assert isinstance(proposal, Declined) and proposal.attempt == 2
    assert "deterministic" in proposal.reason


def test_task_functions_delegate_to_the_fixer(make_repo):
    root = make_repo(TWO_FILES)
    groups = plan_fixes.fn(RuffFixerConfig(), ruff_findings(root))
    proposal = propose_patch.fn(RuffFixerConfig(), sandbox_of(root), groups[0])
    assert isinstance(proposal, Patched) and proposal.patch.files == ("pkg/a.py", "pkg/b.py")


MODERN = {  # a py311 project with pyupgrade: UP006's safe fix strands the typing import
    "pyproject.toml": """
        [project]
        name = "modern"
        version = "0"
        requires-python = ">=3.11"

        [tool.ruff]
        target-version = "py311"

        [tool.ruff.lint]
        select = ["F", "UP006", "I"]
        """,
    "pkg/__init__.py": "",
    "pkg/shapes.py": """
        from typing import List


        def widths(rows: List[str]) -> List[int]:
            return [len(row) for row in rows]
        """,
}


def test_fix_also_removes_the_import_it_made_unused(make_repo):
    root = make_repo(MODERN)
    sandbox = sandbox_of(root)
    before = measure_ruff(sandbox, ToolsConfig())
    assert sorted(f.rule for f in before.findings) == ["UP006", "UP006"]

    proposal = RuffFixer().propose(sandbox, RuffFixer().plan(before.findings)[0])

    assert isinstance(proposal, Patched), proposal
    patch = proposal.patch
    assert "F401" in patch.title and "--fixable UP006,F401" in patch.description
    assert "-from typing import List\n" in patch.diff
    assert set(patch.finding_ids) == {f.id for f in before.findings}
    assert git_apply(root, patch.diff).returncode == 0
    after = measure_ruff(sandbox, ToolsConfig())
    assert after.ok and after.findings == ()  # no new finding: the gate has nothing to refuse
    assert "def widths(rows: list[str]) -> list[int]:" in (root / "pkg/shapes.py").read_text()


def test_no_follow_on_fix_when_the_file_already_had_such_findings(make_repo):
    """An unused import that was there before is another finding's: the patch leaves it alone."""
    files = dict(MODERN)
    files["pkg/shapes.py"] = "\n        import os" + files["pkg/shapes.py"]  # same indent
    root = make_repo(files)
    sandbox = sandbox_of(root)
    findings = measure_ruff(sandbox, ToolsConfig()).findings
    up006 = next(g for g in RuffFixer().plan(findings) if g[0].rule == "UP006")

    patch = RuffFixer().propose(sandbox, up006).patch

    assert patch is not None and "F401" not in patch.title
    assert "-import os" not in patch.diff and "-from typing import List" not in patch.diff
    assert "+def widths(rows: list[str]) -> list[int]:" in patch.diff


def test_any_fixable_rule_the_fix_creates_is_fixed_with_it(make_repo):
    """UP032 writes f"{str(a)}", which RUF010 wants as f"{a!s}": both in one patch."""
    root = make_repo({
        "ruff.toml": 'target-version = "py311"\n[lint]\nselect = ["UP032", "RUF010"]\n',
        "fmt.py": """
            def pair(a, b):
                return "{} and {}".format(str(a), repr(b))
            """,
    })
    sandbox = sandbox_of(root)
    before = measure_ruff(sandbox, ToolsConfig())
    assert [f.rule for f in before.findings] == ["UP032"]

    patch = RuffFixer().propose(sandbox, RuffFixer().plan(before.findings)[0]).patch

    assert patch is not None and "RUF010" in patch.title
    assert '+    return f"{a!s} and {b!r}"\n' in patch.diff
    assert git_apply(root, patch.diff).returncode == 0
    assert measure_ruff(sandbox, ToolsConfig()).findings == ()


def test_patch_claims_only_the_findings_its_fix_removes(make_repo):
    """UP035 moves `Callable` to collections.abc; `ContextManager` has no such fix and stays."""
    root = make_repo({
        "ruff.toml": 'target-version = "py311"\n[lint]\nselect = ["UP035"]\n',
        "ctx.py": """
            from typing import Callable
            from typing import ContextManager


            def run(g: Callable[[], None], c: ContextManager[int]) -> None:
                pass
            """,
    })
    sandbox = sandbox_of(root)
    findings = measure_ruff(sandbox, ToolsConfig()).findings
    movable = next(f for f in findings if "Callable" in f.message)
    stays = next(f for f in findings if "ContextManager" in f.message)

    patch = RuffFixer().propose(sandbox, (movable, stays)).patch

    assert patch is not None
    assert patch.finding_ids == (movable.id,)
    assert "+from collections.abc import Callable\n" in patch.diff
    declined = RuffFixer().propose(sandbox, (stays,))
    assert isinstance(declined, Declined) and declined.reason


def test_unused_noqa_fix_keeps_the_noqa_of_the_repository_rules(make_repo):
    """Fixing RUF100 alone must not see the config's other rules as disabled (tabulate 0.10.0)."""
    root = make_repo({
        "ruff.toml": '[lint]\nselect = ["F401", "RUF100"]\n',
        "pkg/__init__.py": """
            try:
                from .version import version as __version__  # noqa: F401
            except ImportError:
                pass
            X = 1  # noqa: E731
            """,
    })
    sandbox = sandbox_of(root)
    before = measure_ruff(sandbox, ToolsConfig())
    assert [(f.rule, f.line) for f in before.findings] == [("RUF100", 5)]

    patch = RuffFixer().propose(sandbox, RuffFixer().plan(before.findings)[0]).patch

    assert patch is not None and "-    from .version import" not in patch.diff
    assert "-X = 1  # noqa: E731\n+X = 1\n" in patch.diff
    assert git_apply(root, patch.diff).returncode == 0
    assert measure_ruff(sandbox, ToolsConfig()).findings == ()


def test_repository_fix_and_unsafe_fixes_settings_change_nothing(make_repo):
    """`fix = true` must not rewrite the worktree while detecting; `unsafe-fixes = true`
    must not slip unsafe fixes into a safe-only patch (humanize sets `fix = true`)."""
    root = make_repo({
        "pyproject.toml": '[tool.ruff]\nfix = true\nunsafe-fixes = true\n'
                          '[tool.ruff.lint]\nselect = ["F401", "F841"]\n',
        "mod.py": """
            import os


            def g():
                unused = 1
                return 2
            """,
    })
    sandbox = sandbox_of(root)
    found = measure_ruff(sandbox, ToolsConfig())
    assert sorted(f.rule for f in found.findings) == ["F401", "F841"]
    assert subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                          text=True, check=True).stdout == ""

    groups = {g[0].rule: g for g in RuffFixer().plan(found.findings)}
    assert set(groups) == {"F401"}  # F841's fix is unsafe: not fixable for the safe fixer
    f841 = tuple(f for f in found.findings if f.rule == "F841")
    declined = RuffFixer().propose(sandbox, f841)
    assert isinstance(declined, Declined), declined
    patch = RuffFixer().propose(sandbox, groups["F401"]).patch
    assert patch is not None and "-import os\n" in patch.diff and "unused = 1" not in patch.diff
