"""Where a failing test's defect lives: the key that groups failing tests by root cause.

Many failing tests usually share one defect. Grouping them lets one candidate
patch (one model call) cover every test of that defect. The key is found from
pytest's failure text (the traceback in the JUnit XML) and the test's source,
in this order:

1. the innermost traceback frame in the repository's code under test (a
   library file, not a test, conftest or vendored file): ``path::function``;
2. else (the failure is an assertion in the test itself), when the run recorded
   per-test coverage, the definition holding the test's most suspicious line
   (spectrum-based fault localization, :mod:`mendflow.tasks.detect.fault_localization`):
   ``path::function``;
3. else the function the failing statement calls, resolved through the test
   module's imports to its definition in the repository: ``path::function``;
4. else what the whole test calls: the one definition it calls in the
   repository (``path::function``), or the module of the first of several
   (``path``): the module the test exercises.

None when none applies: the test is then its own group.
"""

from __future__ import annotations

import ast
from pathlib import Path

from mendflow.core.models import TestCase
from mendflow.tasks.detect.common import is_library_path
from mendflow.tasks.detect.fault_localization import Spectrum
from mendflow.tasks.fix import source_nav as nav


class RootCauses:
    """Finds root-cause keys for the failing tests of one tree (parsed files are cached).

    Args:
        root: the worktree root (pytest's rootdir).
        spectrum: the run's per-test coverage spectrum, when it recorded one.
    """

    def __init__(self, root: Path, spectrum: Spectrum | None = None) -> None:
        self.root = root.resolve()
        self.spectrum = spectrum
        self._trees: dict[str, ast.Module | None] = {}

    def key(self, case: TestCase) -> str | None:
        """The root-cause key of one failing test.

        Args:
            case: a failed or erroring test case with its failure text (``detail``).

        Returns:
            ``path::function`` (a definition in the code under test), ``path``
            (a module of it), or None when nothing in the repository is implicated.
        """
        frames = nav.traceback_frames(self.root, case.detail or "") if case.detail else []
        library = [loc for loc in frames if is_library_path(loc.path)]
        if library:
            return self._symbol_key(library[-1])
        suspect = self.spectrum.suspect(case.nodeid) if self.spectrum is not None else None
        if suspect is not None:
            return self._symbol_key(nav.Location(suspect.path, suspect.line))
        test_file, names = nav.split_nodeid(case.nodeid)
        tree = self._tree(test_file)
        func = nav.find_definition(tree, names) if tree is not None and names else None
        if tree is None or func is None:
            return None
        failing = [loc.line for loc in frames if loc.path == test_file]
        statement = _statement_at(func, failing[-1]) if failing else None
        if statement is not None:
            called = self._library_callees(test_file, tree, statement)
            if called:
                return self._symbol_key(called[0])
        called = self._library_callees(test_file, tree, func)
        keys = list(dict.fromkeys(self._symbol_key(loc) for loc in called))
        if len(keys) == 1:  # the test exercises one definition
            return keys[0]
        return called[0].path if called else None

    def _library_callees(self, test_file: str, tree: ast.Module, node: ast.AST) -> list[nav.Location]:
        return [loc for loc in nav.callees(self.root, test_file, tree, node, limit=8)
                if is_library_path(loc.path)]

    def _symbol_key(self, loc: nav.Location) -> str:
        tree = self._tree(loc.path)
        node = nav.enclosing(tree, loc.line) if tree is not None else None
        name = getattr(node, "name", None)
        return f"{loc.path}::{name}" if name else loc.path

    def _tree(self, rel: str) -> ast.Module | None:
        if rel not in self._trees:
            text = nav.read_text(self.root / rel) if nav.repo_relative(self.root, rel) else None
            self._trees[rel] = nav.parse_module(text) if text is not None else None
        return self._trees[rel]


def _statement_at(func: ast.AST, line: int) -> ast.stmt | None:
    """The innermost statement of ``func`` whose lines hold ``line``."""
    best: ast.stmt | None = None
    for node in ast.walk(func):
        if isinstance(node, ast.stmt) and node is not func:
            start, end = node.lineno, node.end_lineno or node.lineno
            if start <= line <= end and (best is None or start >= best.lineno):
                best = node
    return best
