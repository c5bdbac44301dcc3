"""Helpers for the LLM-fixer tests: a repo with a real bug, a real sandbox, a real failure."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from mendflow.core.findings import SourceIndex, make_finding
from mendflow.core.models import Finding, Sandbox
from mendflow.infra.runner import run_process, sandbox_environ
from tests.fakes import fake_messages_api as api
from tests.fakes.server import RecordedRequest, ScriptedReply
from tests.fixtures.bugs import load_bug
from tests.helpers.git import git

FAKE_KEY = "sk-ant-test-Zq8vK2mN4pL6rT0x"
"""A distinctive fake API key: tests assert where it appears on the wire."""

CALC_FILES = {
    "calc.py": """
        def add(a, b):
            return a - b


        def mul(a, b):
            return a * b
    """,
    "tests/test_calc.py": """
        from calc import add, mul


        def test_add():
            assert add(1, 2) == 3


        def test_mul():
            assert mul(2, 3) == 6
    """,
}
GOOD_EDIT = {"path": "calc.py", "search": "    return a - b\n", "replace": "    return a + b\n"}


def git_worktree_sandbox(repo: Path, mission_id: str = "m1") -> Sandbox:
    """A real git worktree of the repo on branch mendflow/<mission_id>, as the mission makes."""
    path = repo.parent / f"{repo.name}-wt-{mission_id}"
    git(repo, "worktree", "add", "-q", "-b", f"mendflow/{mission_id}", str(path))
    head = git(repo, "rev-parse", "HEAD")
    return Sandbox(mission_id=mission_id, path=path, branch=f"mendflow/{mission_id}",
                   base_commit=head, repo_root=repo)


def failing_tests(repo: Path, out_dir: Path) -> dict[str, str]:
    """Run the repo's tests with real pytest; return {nodeid: failure text} from its JUnit XML."""
    out_dir.mkdir(parents=True, exist_ok=True)
    xml_path = out_dir / "junit.xml"
    env = sandbox_environ(extra={"PYTHONDONTWRITEBYTECODE": "1"})
    run_process([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                 f"--junit-xml={xml_path}", "-o", "junit_family=xunit1"],
                cwd=repo, timeout_s=120, env=env)
    failures = {}
    for case in ET.parse(xml_path).iter("testcase"):
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        if failure is not None:
            path = case.get("file", "")
            module = path.removesuffix(".py").replace("/", ".")
            classes = case.get("classname", "").removeprefix(module).strip(".")
            parts = [path, *classes.split(".")] if classes else [path]
            failures["::".join([*parts, case.get("name", "")])] = (failure.text or "").strip()
    return failures


def pytest_finding(root: Path, nodeid: str, detail: str, line: int | None = None) -> Finding:
    """A failing-test finding as the detect stage builds it (rule test-failure)."""
    path = nodeid.split("::", 1)[0]
    return make_finding(SourceIndex(root), source="pytest", rule="test-failure", path=path,
                        line=line, key=nodeid, test_id=nodeid, severity="high",
                        category="test-failure", message=f"{nodeid} fails: assert -1 == 3",
                        detail=detail)


def lint_finding(root: Path, path: str, line: int, *, source: str = "mypy", rule: str = "misc",
                 fixable: bool = False, severity: str = "medium",
                 message: str = "a problem") -> Finding:
    """A linter finding at path:line."""
    category = {"mypy": "type", "bandit": "security", "ruff": "lint"}.get(source, "lint")
    return make_finding(SourceIndex(root), source=source, rule=rule, path=path, line=line,
                        severity=severity, category=category, message=message, fixable=fixable)


def porcelain(path: Path) -> str:
    """``git status --porcelain --ignored`` of a worktree (empty: untouched)."""
    return git(path, "status", "--porcelain", "--ignored")


def user_text(request: RecordedRequest) -> str:
    """The text of the one user message of a Messages API request."""
    content = request.json["messages"][0]["content"]
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


def reply(fix: dict[str, Any]) -> ScriptedReply:
    return api.tool_input_reply(fix)


def route_by_test(fixes: dict[str, dict[str, Any]]):
    """A responder serving the fix whose bug's test id appears in the request's user message."""
    def respond(request: RecordedRequest) -> ScriptedReply | None:
        text = user_text(request)
        for name, fix in fixes.items():
            if load_bug(name).finding.get("test_id", "\0") in text:
                return reply(fix)
        return None
    return respond
