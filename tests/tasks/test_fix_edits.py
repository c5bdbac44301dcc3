"""edits_to_patch: model edits become a git-format patch in memory, or a typed refusal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from unidiff import PatchSet

from mendflow.core.config import LLMPolicy
from mendflow.core.errors import PatchRejected
from mendflow.core.models import Sandbox
from mendflow.tasks.fix.edits import edits_to_patch
from mendflow.tasks.fix.llm_protocol import FixReply
from tests.helpers.git import git
from tests.helpers.llm import (
    CALC_FILES,
    GOOD_EDIT,
    git_worktree_sandbox,
    lint_finding,
    porcelain,
)

POLICY = LLMPolicy()


def reply(*edits: dict[str, str], confidence: str = "high") -> FixReply:
    return FixReply.model_validate({
        "analysis": {"fixable": True, "category": "logic", "root_cause": "add subtracts",
                     "affected_files": [e["path"] for e in edits], "confidence": confidence},
        "edits": list(edits), "explanation": "use +"})


@pytest.fixture
def sandbox(make_repo) -> Sandbox:
    repo = make_repo(CALC_FILES)
    return git_worktree_sandbox(repo)


def check_applies(sandbox: Sandbox, diff: str, tmp_path: Path) -> None:
    patch_file = tmp_path / "candidate.diff"
    patch_file.write_text(diff, encoding="utf-8")
    git(sandbox.path, "apply", "--check", str(patch_file))


def rejected(sandbox: Sandbox, the_reply: FixReply, policy: LLMPolicy = POLICY) -> PatchRejected:
    finding = lint_finding(sandbox.path, "calc.py", 2)
    before = porcelain(sandbox.path)
    with pytest.raises(PatchRejected) as info:
        edits_to_patch(sandbox, the_reply, [finding], "anthropic", policy)
    assert porcelain(sandbox.path) == before == ""
    return info.value


def test_a_good_edit_becomes_a_git_patch_that_applies(sandbox, tmp_path):
    finding = lint_finding(sandbox.path, "calc.py", 2)
    patch = edits_to_patch(sandbox, reply(GOOD_EDIT, confidence="medium"), [finding],
                           "anthropic", POLICY)
    assert patch.files == ("calc.py",)
    assert patch.fixer == "anthropic" and patch.finding_ids == (finding.id,)
    assert patch.confidence == "medium"
    assert patch.diff.startswith("diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n")
    assert "-    return a - b\n+    return a + b\n" in patch.diff
    assert [p.path for p in PatchSet(patch.diff)] == ["calc.py"]
    assert "add subtracts" in patch.description and "use +" in patch.description
    check_applies(sandbox, patch.diff, tmp_path)
    assert porcelain(sandbox.path) == ""


def test_the_title_names_the_changed_file_not_the_failing_tests_file(sandbox):
    """cachetools 8.0.2: a fix of src/cachetools/__init__.py for 6 failing tests was committed
    as "Fix test-failure in tests/__init__.py: ..." (the file of the first failing assertion)."""
    failing = [lint_finding(sandbox.path, "tests/test_calc.py", line, source="pytest",
                            rule="test-failure") for line in (4, 5)]
    patch = edits_to_patch(sandbox, reply(GOOD_EDIT), failing, "anthropic", POLICY)
    assert patch.title == "Fix test-failure (2 findings) in calc.py: add subtracts"
    one = edits_to_patch(sandbox, reply(GOOD_EDIT), failing[:1], "anthropic", POLICY)
    assert one.title == "Fix test-failure in calc.py: add subtracts"
    test_first = {"path": "tests/test_new.py", "search": "", "replace": "def test_x():\n    pass\n"}
    healed = edits_to_patch(sandbox, reply(test_first, GOOD_EDIT), failing[:1], "anthropic", POLICY)
    assert healed.title == "Fix test-failure in calc.py and 1 more: add subtracts"


def test_several_edits_of_one_file_apply_in_sequence_and_two_files_in_one_patch(sandbox, tmp_path):
    edits = [GOOD_EDIT,
             {"path": "calc.py", "search": "    return a + b\n", "replace": "    return b + a\n"},
             {"path": "tests/test_calc.py", "search": "mul(2, 3) == 6", "replace": "mul(3, 2) == 6"}]
    patch = edits_to_patch(sandbox, reply(*edits), [], "anthropic", POLICY)
    assert patch.files == ("calc.py", "tests/test_calc.py")
    assert "+    return b + a\n" in patch.diff and "return a + b" not in patch.diff
    check_applies(sandbox, patch.diff, tmp_path)


def test_a_new_file_needs_an_empty_search_and_a_free_path(sandbox, tmp_path):
    new = {"path": "pkg/util.py", "search": "", "replace": "def one():\n    return 1\n"}
    patch = edits_to_patch(sandbox, reply(new), [], "anthropic", POLICY)
    assert "new file mode 100644\n--- /dev/null\n+++ b/pkg/util.py\n" in patch.diff
    check_applies(sandbox, patch.diff, tmp_path)
    err = rejected(sandbox, reply({"path": "calc.py", "search": "", "replace": "x = 1\n"}))
    assert err.reason == "search-ambiguous"
    err = rejected(sandbox, reply({"path": "nope.py", "search": "x", "replace": "y"}))
    assert err.reason == "search-not-found"


def test_a_file_without_final_newline_and_a_crlf_file_still_give_applicable_diffs(make_repo,
                                                                                   tmp_path):
    repo = make_repo({"a.py": "x = 1\n"})
    (repo / "noeol.py").write_bytes(b"def f():\n    return 1")
    (repo / "crlf.py").write_bytes(b"def g():\r\n    return 2\r\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "more")
    sandbox = git_worktree_sandbox(repo)
    edits = [{"path": "noeol.py", "search": "return 1", "replace": "return 10"},
             {"path": "crlf.py", "search": "def g():\n    return 2\n",
              "replace": "def g():\n    return 20\n"}]
    patch = edits_to_patch(sandbox, reply(*edits), [], "anthropic", POLICY)
    assert "\\ No newline at end of file" in patch.diff
    assert "+    return 20\r\n" in patch.diff
    check_applies(sandbox, patch.diff, tmp_path)


def test_line_number_prefixes_copied_from_the_context_are_dropped(sandbox, tmp_path):
    numbered = {"path": "calc.py", "search": "    1 | def add(a, b):\n    2 |     return a - b\n",
                "replace": "    1 | def add(a, b):\n    2 |     return a + b\n"}
    patch = edits_to_patch(sandbox, reply(numbered), [], "anthropic", POLICY)
    assert "+    return a + b\n" in patch.diff and " | " not in patch.diff
    check_applies(sandbox, patch.diff, tmp_path)


def test_no_edits_and_edits_that_change_nothing_are_refused(sandbox):
    assert rejected(sandbox, reply()).reason == "no-edits"
    same = {"path": "calc.py", "search": "return a - b", "replace": "return a - b"}
    assert rejected(sandbox, reply(same)).reason == "no-edits"


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.py", "pkg/../../outside.py",
                                  ".git/config", "sub/.git/hooks/pre-commit", ".GIT/HEAD",
                                  "C:/x.py",
                                  "a\nb.py", ""])
def test_paths_that_escape_the_worktree_are_refused(sandbox, path):
    err = rejected(sandbox, reply({"path": path or " ", "search": "", "replace": "x = 1\n"}))
    assert err.reason == "path-escape"


def test_symlinks_are_refused_even_when_they_point_outside(make_repo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.py").write_text("secret = 1\n")
    repo = make_repo({"a.py": "x = 1\n"})
    os.symlink(outside / "victim.py", repo / "link.py")
    os.symlink(outside, repo / "linkdir")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "links")
    sandbox = git_worktree_sandbox(repo)
    for path in ("link.py", "linkdir/victim.py"):
        err = rejected(sandbox, reply({"path": path, "search": "secret = 1",
                                       "replace": "secret = 2"}))
        assert err.reason == "path-escape"
    assert (outside / "victim.py").read_text() == "secret = 1\n"


@pytest.mark.parametrize("path", [".env", "config/.env.local", ".github/workflows/ci.yml",
                                  "secrets/token.txt", ".gitlab-ci.yml", "Jenkinsfile"])
def test_denylisted_paths_are_refused(sandbox, path):
    err = rejected(sandbox, reply({"path": path, "search": "", "replace": "x\n"}))
    assert err.reason == "denylisted"


@pytest.mark.parametrize("path", ["ext/_speedups.c", "src/core.PYX", "native/lib.rs"])
def test_native_extension_sources_are_refused(sandbox, path):
    err = rejected(sandbox, reply({"path": path, "search": "", "replace": "int x;\n"}))
    assert err.reason == "native-source" and err.subject == path
    assert "Python files only" in (err.hint or "")


def test_a_custom_denylist_is_honored(sandbox):
    policy = LLMPolicy(denylist=["calc.py"])
    assert rejected(sandbox, reply(GOOD_EDIT), policy).reason == "denylisted"


def test_search_text_missing_or_ambiguous(sandbox):
    missing = {"path": "calc.py", "search": "return a / b", "replace": "return a + b"}
    assert rejected(sandbox, reply(missing)).reason == "search-not-found"
    ambiguous = {"path": "calc.py", "search": "(a, b):", "replace": "(a, b, c=0):"}
    err = rejected(sandbox, reply(ambiguous))
    assert err.reason == "search-ambiguous" and "2 times" in err.message


def test_binary_and_non_utf8_files_are_refused(make_repo):
    repo = make_repo({"a.py": "x = 1\n"})
    (repo / "blob.py").write_bytes(b"x = 1\0\n")
    (repo / "latin.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "binary")
    sandbox = git_worktree_sandbox(repo)
    for path in ("blob.py", "latin.py"):
        assert rejected(sandbox, reply({"path": path, "search": "s", "replace": "t"})).reason \
            == "binary"
    nul = {"path": "a.py", "search": "x = 1", "replace": "x = '\0'"}
    assert rejected(sandbox, reply(nul)).reason == "binary"


def test_edits_larger_than_max_edit_bytes_are_refused(sandbox):
    err = rejected(sandbox, reply(GOOD_EDIT), LLMPolicy(max_edit_bytes=10))
    assert err.reason == "too-large" and "max_edit_bytes=10" in err.message


def test_a_python_file_that_no_longer_compiles_is_refused(sandbox):
    broken = {"path": "calc.py", "search": "    return a - b\n", "replace": "    return a +\n"}
    err = rejected(sandbox, reply(broken))
    assert err.reason == "syntax" and "line 2" in err.message


def test_a_file_this_interpreter_cannot_compile_before_is_left_to_validation(make_repo, tmp_path):
    repo = make_repo({"new_syntax.py": "x = (\n"})  # broken already: cannot judge the edit
    sandbox = git_worktree_sandbox(repo)
    edit = {"path": "new_syntax.py", "search": "x = (\n", "replace": "x = (1,\n"}
    patch = edits_to_patch(sandbox, reply(edit), [], "anthropic", POLICY)
    check_applies(sandbox, patch.diff, tmp_path)


# --- static guards on model-written code (tasks/fix/code_guards.py) ----------------------


@pytest.mark.parametrize("code", [
    "import os\nos.system('id')\n", "import subprocess\nsubprocess.run(['id'])\n",
    "from subprocess import run\n", "import socket\n", "import urllib.request as u\nu.urlopen(1)\n",
    "eval('1')\n", "__import__('os')\n", "import requests\n", "from os import system\n",
    "import asyncio.subprocess\n", "import os\nos.fork()\n",
])
def test_dangerous_code_added_by_a_patch_is_found(code):
    from mendflow.tasks.fix.code_guards import added_dangerous_uses

    assert added_dangerous_uses("x = 1\n", "x = 1\n" + code)
    assert added_dangerous_uses(code, code) == []  # already there: a fix may touch it


def test_bidi_controls_are_named():
    from mendflow.tasks.fix.code_guards import bidi_characters

    assert bidi_characters("a = 'x\u202e' # \u2066") == ["U+202E", "U+2066"]
    assert bidi_characters("plain ascii and é") == []
