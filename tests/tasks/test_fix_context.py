"""build_context: what a model is shown about a finding (and what it is never shown)."""

from __future__ import annotations

import re

import pytest

from mendflow.core.config import DEFAULT_LLM_DENYLIST
from mendflow.tasks.fix.context import build_context, matches_denylist
from tests.helpers.llm import (
    CALC_FILES,
    failing_tests,
    git_worktree_sandbox,
    lint_finding,
    pytest_finding,
)


def filler(n: int, prefix: str = "helper") -> str:
    """n small functions: makes a module too long to be sent whole."""
    return "".join(f"def {prefix}_{i}():\n    return {i}\n\n\n" for i in range(n))


BIG_PKG = {
    "pkg/__init__.py": "from .impl import divide\n",
    "pkg/impl.py": "import math\nimport os\n\n\n" + filler(30) + (
        "def divide(a, b):\n"
        "    total = a\n"
        "    return total / b\n\n\n") + filler(30, "tail"),
    "pkg/unrelated.py": "UNRELATED_MARKER = 1\n",
    "tests/test_div.py": """
        import pytest
        from pkg import divide


        class TestDivide:
            @pytest.mark.parametrize("b", [0])
            def test_by_zero_is_none(self, b):
                assert divide(1, b) is None
    """,
}


def only_numbered(text: str, path: str) -> list[int]:
    """Line numbers shown for one file's snippet(s)."""
    numbers: list[int] = []
    for block in re.findall(rf"### {re.escape(path)} \(.*?\n```python\n(.*?)\n```", text, re.DOTALL):
        numbers += [int(m) for m in re.findall(r"^ *(\d+) \| ", block, re.MULTILINE)]
    return numbers


def test_a_failing_test_shows_its_source_its_failure_and_the_function_it_calls(make_repo,
                                                                                 tmp_path):
    repo = make_repo(CALC_FILES)
    nodeid, detail = next(iter(failing_tests(repo, tmp_path / "junit").items()))
    sandbox = git_worktree_sandbox(repo)
    finding = pytest_finding(sandbox.path, nodeid, detail, line=4)
    text = build_context(sandbox, [finding], None)
    assert "- tool: pytest, rule: test-failure, severity: high" in text
    assert "- failing test: tests/test_calc.py::test_add" in text
    assert "E       assert -1 == 3" in text  # the assertion message from the traceback
    assert "    2 |     return a - b" in text  # add(), found through `from calc import add`
    assert "    5 |     assert add(1, 2) == 3" in text
    assert "previous attempt" not in text
    assert len(text) < 2500


def test_feedback_is_included(make_repo):
    repo = make_repo(CALC_FILES)
    sandbox = git_worktree_sandbox(repo)
    finding = lint_finding(sandbox.path, "calc.py", 2)
    text = build_context(sandbox, [finding], "gate tests: tests/test_calc.py::test_mul now fails")
    assert "## Your previous attempt was rejected\ngate tests: tests/test_calc.py::test_mul" in text


def test_a_long_module_is_cut_to_the_enclosing_function_and_its_imports(make_repo, tmp_path):
    repo = make_repo(BIG_PKG)
    failures = failing_tests(repo, tmp_path / "junit")
    nodeid = "tests/test_div.py::TestDivide::test_by_zero_is_none[0]"
    assert nodeid in failures and "pkg/impl.py:" in failures[nodeid]
    sandbox = git_worktree_sandbox(repo)
    finding = pytest_finding(sandbox.path, nodeid, failures[nodeid], line=8)
    text = build_context(sandbox, [finding], None)
    divide_line = BIG_PKG["pkg/impl.py"].splitlines().index("def divide(a, b):") + 1
    shown = only_numbered(text, "pkg/impl.py")
    assert set(range(divide_line, divide_line + 3)) <= set(shown)  # the whole of divide()
    assert {1, 2} <= set(shown)  # its imports
    assert len(shown) < 12  # not the 200-line module
    assert "def test_by_zero_is_none(self, b):" in text  # the test method inside its class
    assert "UNRELATED_MARKER" not in text and "helper_0" not in text
    assert len(shown) == len(set(shown))  # frame and callee snippets are merged


def test_the_definition_the_root_cause_names_is_shown(make_repo, tmp_path):
    repo = make_repo(BIG_PKG)
    failures = failing_tests(repo, tmp_path / "junit")
    nodeid = "tests/test_div.py::TestDivide::test_by_zero_is_none[0]"
    sandbox = git_worktree_sandbox(repo)
    finding = pytest_finding(sandbox.path, nodeid, failures[nodeid], line=8).model_copy(
        update={"root_cause": "pkg/impl.py::tail_7"})  # as the per-test coverage suspects
    text = build_context(sandbox, [finding], None)
    tail = BIG_PKG["pkg/impl.py"].splitlines().index("def tail_7():") + 1
    assert {tail, tail + 1} <= set(only_numbered(text, "pkg/impl.py"))
    assert "the suspected root cause, in tail_7" in text
    assert "helper_0" not in text  # still not the whole module


def test_traceback_frames_outside_the_repository_or_in_a_venv_are_ignored(make_repo):
    repo = make_repo({**CALC_FILES, ".venv/lib/site.py": "def vendored():\n    pass\n"})
    sandbox = git_worktree_sandbox(repo)
    detail = (
        "Traceback (most recent call last):\n"
        f'  File "{sandbox.path}/calc.py", line 2, in add\n'
        '  File "/usr/lib/python3.11/json/decoder.py", line 337, in decode\n'
        f'  File "{sandbox.path}/.venv/lib/site.py", line 2, in vendored\n'
        "ValueError: boom\n")
    finding = lint_finding(sandbox.path, "tests/test_calc.py", 1, source="runtime", rule="ValueError")
    finding = finding.model_copy(update={"detail": detail})
    text = build_context(sandbox, [finding], None)
    assert "### calc.py (whole file; traceback frame)" in text
    assert "def vendored" not in text and "decoder.py (" not in text


def test_findings_in_the_same_place_are_shown_once(make_repo):
    repo = make_repo(CALC_FILES)
    sandbox = git_worktree_sandbox(repo)
    group = [lint_finding(sandbox.path, "calc.py", 2, rule="a"),
             lint_finding(sandbox.path, "calc.py", 6, rule="b")]
    text = build_context(sandbox, group, None)
    assert "## Finding 2 of 2" in text
    assert text.count("### calc.py") == 1


def test_denylisted_files_are_never_quoted(make_repo):
    repo = make_repo({"secrets/settings.py": "TOKEN_VALUE = 'hunter2-hunter2'\n",
                      "app.py": "x = 1\n"})
    sandbox = git_worktree_sandbox(repo)
    finding = lint_finding(sandbox.path, "secrets/settings.py", 1, source="bandit", rule="B105")
    text = build_context(sandbox, [finding], None)
    assert "- location: secrets/settings.py:1" in text
    assert "hunter2" not in text
    assert matches_denylist(".env", DEFAULT_LLM_DENYLIST)
    assert matches_denylist("deploy/.env.prod", DEFAULT_LLM_DENYLIST)
    assert not matches_denylist("src/environment.py", DEFAULT_LLM_DENYLIST)


def test_secret_values_of_the_environment_are_redacted(make_repo, monkeypatch):
    monkeypatch.setenv("SERVICE_API_TOKEN", "tok-9f8e7d6c5b4a")
    repo = make_repo(CALC_FILES)
    sandbox = git_worktree_sandbox(repo)
    finding = lint_finding(sandbox.path, "calc.py", 2).model_copy(update={
        "detail": "KeyError: request failed with token tok-9f8e7d6c5b4a and sk-abcdefghijklmnopqrstuv"})
    text = build_context(sandbox, [finding], None)
    assert "tok-9f8e7d6c5b4a" not in text and "sk-abcdefghijklmnop" not in text
    assert text.count("[redacted]") == 2
    assert "SERVICE_API_TOKEN" not in text


def long_functions(n: int, prefix: str) -> str:
    body = "".join(f"    value_{j} = {j} * 2\n" for j in range(25))
    return "".join(f"def {prefix}_{i}():\n{body}    return {i}\n\n\n" for i in range(n))


@pytest.mark.parametrize("max_chars", [1500, 4000])
def test_the_context_is_bounded(make_repo, max_chars):
    files = {f"mod{i}.py": long_functions(4, f"f{i}") for i in range(6)}
    repo = make_repo(files)
    sandbox = git_worktree_sandbox(repo)
    group = [lint_finding(sandbox.path, f"mod{i}.py", 50) for i in range(6)]
    text = build_context(sandbox, group, "x" * 10000, max_chars=max_chars)
    assert len(text) <= max_chars
    assert "## Finding 6 of 6" in text
    assert "more snippet(s) left out" in text


def test_secrets_kept_in_the_repository_never_reach_a_prompt(make_repo, tmp_path):
    """.env values, *.pem and id_* keys: neither quoted as files nor leaked through a failure."""
    token, pem_line = "tok-Vb83kQz1Lw0p", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
    ssh_line = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU"
    files = {
        **CALC_FILES,
        ".env": f"# local settings\nSERVICE_TOKEN={token}\nDEBUG=1\n",
        "certs/server.pem": f"-----BEGIN PRIVATE KEY-----\n{pem_line}\n-----END PRIVATE KEY-----\n",
        "deploy/id_ed25519": f"-----BEGIN OPENSSH PRIVATE KEY-----\n{ssh_line}\n-----END\n",
        "tests/test_settings.py": """
            from pathlib import Path


            def test_token_is_set():
                text = Path(__file__).parents[1].joinpath(".env").read_text()
                pem = Path(__file__).parents[1].joinpath("certs/server.pem").read_text()
                assert text + pem == ""
        """,
    }
    repo = make_repo(files)
    failures = failing_tests(repo, tmp_path / "junit")
    nodeid = "tests/test_settings.py::test_token_is_set"
    assert token in failures[nodeid] and pem_line in failures[nodeid]  # the test printed them
    sandbox = git_worktree_sandbox(repo)
    finding = pytest_finding(sandbox.path, nodeid, failures[nodeid], line=5)
    feedback = f"gate no-test-regression: {token} {ssh_line}"
    text = build_context(sandbox, [finding], feedback)
    assert "test_token_is_set" in text and "[redacted]" in text
    for secret in (token, pem_line, ssh_line):
        assert secret not in text
    for path in (".env", "certs/server.pem", "deploy/id_ed25519"):
        assert matches_denylist(path, DEFAULT_LLM_DENYLIST), path


MIXIN_PKG = {
    "pkg/__init__.py": "",
    "pkg/keys.py": filler(30) + "def typedkey(*args):\n    return args + tuple(map(type, ()))\n\n\n"
                   + filler(30, "tail"),
    "pkg/func.py": filler(30) + "def lru(maxsize):\n    return maxsize - 1\n\n\n" + filler(30, "tail"),
    "tests/__init__.py": "",
    "tests/mixins.py": """
        class DecoratorMixin:
            def test_decorator(self):
                self.assertEqual(self.DECORATOR(2), 2)
    """,
    "tests/test_func.py": """
        import unittest

        import pkg.func

        from .mixins import DecoratorMixin


        class LRUTest(unittest.TestCase, DecoratorMixin):
            DECORATOR = staticmethod(pkg.func.lru)
    """,
    "tests/test_keys.py": """
        import unittest

        import pkg.keys


        class KeysTest(unittest.TestCase):
            def test_typedkey(self, key=pkg.keys.typedkey):
                self.assertEqual(key(1), (1, int))
    """,
}


def test_unittest_mixins_dotted_names_and_referenced_functions_are_followed(make_repo):
    """cachetools 8.0.2: a test inherited from a mixin module and configured by its class
    (``DECORATOR = staticmethod(cachetools.func.lru_cache)``), and one that takes
    ``key=cachetools.keys.typedkey`` as a default: the model saw neither function."""
    repo = make_repo(MIXIN_PKG)
    sandbox = git_worktree_sandbox(repo)
    detail = "tests/mixins.py:3: in test_decorator\nE   AssertionError: 1 != 2\n"
    finding = pytest_finding(sandbox.path, "tests/test_func.py::LRUTest::test_decorator",
                             detail, line=3).model_copy(update={"path": "tests/mixins.py"})
    text = build_context(sandbox, [finding], None)
    assert "### tests/mixins.py (whole file;" in text
    assert "def lru(maxsize):" in text and "return maxsize - 1" in text
    assert "def typedkey" not in text and "helper_0" not in text

    detail = "tests/test_keys.py:8: in test_typedkey\nE   AssertionError: (1,) != (1, int)\n"
    finding = pytest_finding(sandbox.path, "tests/test_keys.py::KeysTest::test_typedkey", detail,
                             line=8)
    text = build_context(sandbox, [finding], None)
    assert "def typedkey(*args):" in text and "def lru" not in text
