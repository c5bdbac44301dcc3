"""Helpers for the sandbox/vcs tests: real diffs made by git in a scratch clone."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from mendflow.core.models import Patch
from tests.helpers.git import git

FILES = {
    "pkg/__init__.py": "",
    "pkg/core.py": """
        def add(a, b):
            return a + b


        def sub(a, b):
            return a - b
    """,
    "tests/test_core.py": """
        from pkg.core import add


        def test_add():
            assert add(1, 2) == 3
    """,
    ".gitignore": "*.egg-info/\nbuild/\n",
}


def git_diff(repo: Path, changes: dict[str, str | bytes | None], *, binary: bool = False) -> str:
    """Return the ``git diff`` that turns the committed HEAD of ``repo`` into ``changes``.

    Args:
        repo: a repository (or worktree); its HEAD is the starting point.
        changes: path -> new text (str), new bytes, or None to delete the file.
        binary: pass ``--binary`` so binary files get a "GIT binary patch".
    """
    scratch = Path(tempfile.mkdtemp(prefix="mendflow-diff-"))
    try:
        clone = scratch / "clone"
        git(scratch, "clone", "-q", str(repo), str(clone))
        git(clone, "checkout", "-q", git(repo, "rev-parse", "HEAD"))
        for name, content in changes.items():
            path = clone / name
            if content is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        git(clone, "add", "-A")
        args = ["diff", "--cached"] + (["--binary"] if binary else [])
        return git(clone, *args) + "\n"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def make_patch(diff: str, files: tuple[str, ...], pid: str = "p-1", title: str = "Fix it") -> Patch:
    return Patch(id=pid, fixer="ruff", finding_ids=("f1", "f2"), diff=diff, files=files,
                 title=title, description="A description.")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
