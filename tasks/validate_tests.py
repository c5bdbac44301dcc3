"""The ``test-files`` gate: a patch may not touch the tests, or, when allowed, weaken them.

A file counts as a test file when any of these holds:

- pytest collected a test from it at baseline (the JUnit XML's file of a test case),
  doctests aside: with ``--doctest-modules`` every module with an example in a
  docstring is collected, and it stays code under test;
- it is a ``conftest.py``;
- it matches ``gates.test_globs`` (gitignore-style patterns, :class:`pathspec.GitIgnoreSpec`);
- it is test configuration: ``pytest.ini``, ``tox.ini``, ``noxfile.py``, ``.coveragerc``,
  ``pyproject.toml`` with ``[tool.pytest.ini_options]`` or ``[tool.coverage.*]``,
  ``setup.cfg`` with ``[tool:pytest]`` or ``[coverage:*]``, or a CI file
  (``.github/workflows/**``, ``.gitlab-ci.yml`` ...); and mendflow's own configuration
  (``.mendflow.yaml``, ``[tool.mendflow]``), so that a patch cannot loosen the gates or
  the sandbox of the next mission.

A patch from any fixer touching one is rejected unless ``gates.allow_test_changes``.
When allowed, each changed Python test file is compared before/after with
:mod:`ast`: removing or changing an assert, deleting a test, adding a skip, an
xfail or a return, catching ``AssertionError`` (or everything), or adding a
pytest hook to a conftest is rejected.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath

from prefect import task
from prefect.cache_policies import NO_CACHE

from mendflow.core.config import GatesConfig
from mendflow.core.models import GateResult, Patch, Sandbox, TestRun
from mendflow.core.paths import matches_any
from mendflow.infra.gitops import run_git

ALWAYS_TEST_CONFIG = frozenset({"pytest.ini", "tox.ini", "noxfile.py", ".coveragerc",
                                "conftest.py"})
CI_PATTERNS = (".github/workflows/**", ".github/actions/**", ".gitlab-ci.yml", ".gitlab-ci/**",
               ".travis.yml", ".circleci/**", "azure-pipelines.yml", "Jenkinsfile",
               ".buildkite/**", "appveyor.yml", ".ci/**")
_PYPROJECT_TEST = re.compile(r"^\s*\[\s*tool\.(pytest|coverage|mendflow)[\].]", re.MULTILINE)
MENDFLOW_CONFIG = frozenset({".mendflow.yaml", ".mendflow.yml"})
_SETUP_CFG_TEST = re.compile(r"^\s*\[\s*(tool:pytest|coverage:[a-z]+)\s*\]", re.MULTILINE)
_SKIPS = re.compile(r"\b(skip|skipif|skipTest|xfail|importorskip)\b")
_BROAD = frozenset({"AssertionError", "Exception", "BaseException"})


def collected_test_files(run: TestRun | None) -> frozenset[str]:
    """The files pytest collected a test from (``TestCase.path``, else the node id's file).

    Doctest items (:func:`is_doctest`) do not count: a module whose docstrings
    hold examples is still code under test (humanize runs ``--doctest-modules``).
    """
    if run is None:
        return frozenset()
    return frozenset(c.path or c.nodeid.split("::", 1)[0] for c in run.cases
                     if not is_doctest(c.nodeid))


def is_doctest(nodeid: str) -> bool:
    """Whether a node id is a doctest item of a Python module.

    pytest names those by the dotted name of the documented object
    (``src/pkg/mod.py::pkg.mod.func``); a test function or class name has no dot
    outside its parameters (``tests/test_a.py::TestC::test_m[1.5]``).
    """
    path, _, name = nodeid.rpartition("::")
    return path.endswith(".py") and "." in name.split("[", 1)[0]


def why_test_file(path: str, *, collected: Iterable[str], globs: Sequence[str],
                     before: str | None = None, after: str | None = None) -> str | None:
    """Why ``path`` counts as a test file, or None if it does not.

    Args:
        path: a repository-relative POSIX path.
        collected: files pytest collected a test from at baseline.
        globs: ``gates.test_globs`` (gitwildmatch).
        before: the file's text before the patch (None: it did not exist).
        after: its text after the patch (None: deleted).

    Returns:
        ``"pytest collected tests from it"``, ``"a conftest.py"``, ``"matches tests/**"``,
        ``"test configuration (...)"`` or ``"a CI file"``.
    """
    name = PurePosixPath(path).name
    if path in set(collected):
        return "pytest collected tests from it at baseline"
    if name == "conftest.py":
        return "a conftest.py"
    for glob in globs:
        if matches_any(path, (glob,)):
            return f"matches {glob}"
    if name in ALWAYS_TEST_CONFIG:
        return f"test configuration ({name})"
    if path in MENDFLOW_CONFIG:  # a patch may not loosen the gates or the sandbox
        return f"mendflow's configuration ({name})"
    texts = "\n".join(t for t in (before, after) if t)
    if name == "pyproject.toml" and _PYPROJECT_TEST.search(texts):
        return "test configuration (pyproject.toml [tool.pytest]/[tool.coverage]/[tool.mendflow])"
    if name == "setup.cfg" and _SETUP_CFG_TEST.search(texts):
        return "test configuration (setup.cfg [tool:pytest]/[coverage:*])"
    if matches_any(path, CI_PATTERNS):
        return "a CI file"
    return None


def _tests(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """Test functions by qualified name: module-level ``test*`` and ``Test*`` class methods."""
    found: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                        and item.name.startswith("test"):
                    found[f"{node.name}.{item.name}"] = item
    return found


def _assertions(node: ast.AST) -> Counter[str]:
    """Every assertion in ``node``: assert statements, ``self.assert*`` and ``pytest.raises``."""
    found: Counter[str] = Counter()
    for child in ast.walk(node):
        if isinstance(child, ast.Assert):
            found[ast.unparse(child)] += 1
        elif isinstance(child, ast.Call):
            func = ast.unparse(child.func)
            if func.rsplit(".", 1)[-1].startswith(("assert", "raises", "warns")):
                found[ast.unparse(child)] += 1
    return found


def _features(node: ast.AST) -> dict[str, int]:
    """Counts of what weakens a test: skips/xfails, returns, broad or AssertionError handlers."""
    skips = returns = catches = 0
    for child in ast.walk(node):
        if isinstance(child, ast.Call) and _SKIPS.search(ast.unparse(child.func)):
            skips += 1
        elif isinstance(child, ast.Attribute) and _SKIPS.fullmatch(child.attr):
            skips += 1
        elif isinstance(child, ast.Return):
            returns += 1
        elif isinstance(child, ast.ExceptHandler):
            names = set() if child.type is None else {
                ast.unparse(t).rsplit(".", 1)[-1] for t in
                (child.type.elts if isinstance(child.type, ast.Tuple) else [child.type])}
            if child.type is None or names & _BROAD:
                catches += 1
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        skips += sum(bool(_SKIPS.search(ast.unparse(d))) for d in node.decorator_list)
    return {"skip": skips, "return": returns, "catch": catches}


def weakening_problems(path: str, before: str, after: str) -> list[str]:
    """Compare a Python test file before and after a patch (:mod:`ast`).

    Args:
        path: the file (for the messages).
        before: its text before the patch.
        after: its text after.

    Returns:
        One line per problem: a deleted test, a removed or changed assertion, an
        added skip/xfail, return or broad/AssertionError handler, a module-level skip,
        a new pytest hook (conftest); ``[]`` when the tests are only added to.
    """
    try:
        old, new = ast.parse(before), ast.parse(after)
    except SyntaxError as err:
        return [f"{path}: does not parse after the patch ({err.msg})"]
    problems: list[str] = []
    old_tests, new_tests = _tests(old), _tests(new)
    for name, node in old_tests.items():
        if name not in new_tests:
            problems.append(f"{path}: deletes the test {name}")
            continue
        lost = _assertions(node) - _assertions(new_tests[name])
        problems += [f"{path}::{name}: removes or weakens `{a}`" for a in lost]
        was, now = _features(node), _features(new_tests[name])
        labels = {"skip": "adds a skip or xfail", "return": "adds a return (an early exit)",
                  "catch": "catches AssertionError (or every exception)"}
        problems += [f"{path}::{name}: {labels[k]}" for k in labels if now[k] > was[k]]
    module_was = _features(ast.Module(body=[n for n in old.body if not _is_def(n)], type_ignores=[]))
    module_now = _features(ast.Module(body=[n for n in new.body if not _is_def(n)], type_ignores=[]))
    if module_now["skip"] > module_was["skip"]:
        problems.append(f"{path}: adds a module-level skip or xfail")
    hooks = _hooks(new) - _hooks(old)
    problems += [f"{path}: adds the pytest hook {h}" for h in sorted(hooks)]
    lost_helpers = _assertions(old) - _assertions(new)
    if not problems and lost_helpers:
        problems += [f"{path}: removes or weakens `{a}`" for a in lost_helpers]
    return problems


def _is_def(node: ast.stmt) -> bool:
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))


def _hooks(tree: ast.Module) -> set[str]:
    return {n.name for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.name.startswith("pytest_")}


def gate_test_files(patch: Patch, gates: GatesConfig, *, collected: Iterable[str] = (),
                    before: Mapping[str, str | None] | None = None,
                    after: Mapping[str, str | None] | None = None) -> GateResult:
    """``test-files``: the patch touches no test file, or (when allowed) weakens none.

    Args:
        patch: the candidate (``patch.files``).
        gates: ``allow_test_changes`` and ``test_globs``.
        collected: files pytest collected a test from at baseline.
        before: each changed file's text before the patch (None: new file).
        after: each changed file's text after the patch (None: deleted).

    Returns:
        The gate; its detail names each test file and why it is one, and, when
        test changes are allowed, each weakening found.
    """
    before, after = before or {}, after or {}
    collected = frozenset(collected)
    touched = [(p, reason) for p in patch.files
               if (reason := why_test_file(p, collected=collected, globs=gates.test_globs,
                                              before=before.get(p), after=after.get(p)))]
    if not touched:
        return GateResult(gate="test-files", passed=True, detail="no test file touched")
    listing = [f"touches test file {p} ({reason})" for p, reason in touched]
    if not gates.allow_test_changes:
        return GateResult(gate="test-files", passed=False, detail="\n".join(listing[:15])
                          + "\n(set gates.allow_test_changes to allow this)")
    problems: list[str] = []
    for path, _ in touched:
        old, new = before.get(path), after.get(path)
        if old is not None and new is None and path.endswith(".py"):
            problems.append(f"{path}: deletes a test file")
        elif old is not None and new is not None and path.endswith(".py"):
            problems += weakening_problems(path, old, new)
        elif old is None and new is not None and path.endswith(".py"):
            problems += [f"{path}: adds the pytest hook {h}"
                         for h in sorted(_hooks_of(new)) if PurePosixPath(path).name == "conftest.py"]
    if problems:
        return GateResult(gate="test-files", passed=False, detail="\n".join(problems[:15]))
    return GateResult(gate="test-files", passed=True,
                      detail=f"touches {len(touched)} test file(s); allowed by config, "
                             "and no test is weakened")


def _hooks_of(text: str) -> set[str]:
    try:
        return _hooks(ast.parse(text))
    except SyntaxError:
        return set()


def file_texts(sandbox: Sandbox, files: Sequence[str]) -> tuple[dict[str, str | None],
                                                                  dict[str, str | None]]:
    """The texts of ``files`` at the sandbox's HEAD (before) and in its working tree (after)."""
    before: dict[str, str | None] = {}
    after: dict[str, str | None] = {}
    for rel in files:
        before[rel] = (run_git(sandbox.path, "show", f"HEAD:{rel}") if _git_has(sandbox, rel)
                       else None)
        path = sandbox.path / rel
        after[rel] = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None
    return before, after


def _git_has(sandbox: Sandbox, rel: str) -> bool:
    return bool(run_git(sandbox.path, "ls-tree", "--name-only", "HEAD", "--", rel,
                        check=False).strip())


@task(name="check-test-files", cache_policy=NO_CACHE, timeout_seconds=300)
def check_test_files(sandbox: Sandbox, patch: Patch, baseline: TestRun | None,
                     gates: GatesConfig) -> GateResult:
    """Run the ``test-files`` gate on the applied patch (see :func:`gate_test_files`).

    Args:
        sandbox: the worktree with the patch applied (not committed: HEAD is the before).
        patch: the applied candidate.
        baseline: the baseline test run (which files pytest collected tests from).
        gates: the ``gates`` config.

    Returns:
        The ``test-files`` :class:`GateResult`.
    """
    before, after = file_texts(sandbox, patch.files)
    return gate_test_files(patch, gates, collected=collected_test_files(baseline),
                           before=before, after=after)
