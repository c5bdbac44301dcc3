"""Finding one's way around Python source with ``ast``: what a reviewer would open.

Helpers of :mod:`mendflow.tasks.fix.context`: the function a pytest node id names,
the enclosing function or class of a line, the definitions a test calls
(resolved through the test module's imports), and the repository frames of
a pytest or Python traceback.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mendflow.core.findings import parse_python

# Frames in these directories are third-party code, even inside the worktree.
_VENDOR_PARTS = {".venv", "venv", "env", ".tox", ".nox", "site-packages", "dist-packages",
                 "node_modules", "__pypackages__", ".eggs", "build"}
# `File "/x/y.py", line 12, in f` (Python, pytest --tb=native) and
# `pkg/y.py:12: in f` / `pkg/y.py:12: AssertionError` (pytest long and short styles).
_NATIVE_FRAME = re.compile(r'File "(?P<path>[^"\n]+\.py)", line (?P<line>\d+)')
_PYTEST_FRAME = re.compile(r"^(?P<path>[^\s:\"'<>|][^:\n\"'<>|]*\.py):(?P<line>\d+):", re.MULTILINE)


@dataclass(frozen=True)
class Location:
    """A line in a repository file (path relative to the root, POSIX)."""

    path: str
    line: int


def read_text(path: Path) -> str | None:
    """Return a UTF-8 text file's content, or None if missing, binary or not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_module(text: str) -> ast.Module | None:
    """Parse Python source; None when it does not parse."""
    try:
        return parse_python(text)  # the detectors' threads parse at once
    except (SyntaxError, ValueError):
        return None


def repo_relative(root: Path, raw: str) -> str | None:
    """Map a path from a traceback to a repository-relative POSIX path.

    Args:
        root: the resolved worktree root.
        raw: an absolute path, or a path relative to the root.

    Returns:
        The relative path of an existing file under the root that is not
        third-party code, or None.
    """
    candidate = Path(raw)
    if not candidate.is_absolute():
        candidate = root / candidate
    try:
        resolved = candidate.resolve()
        rel = resolved.relative_to(root)
    except (OSError, ValueError):
        return None
    if not resolved.is_file() or _VENDOR_PARTS.intersection(rel.parts):
        return None
    return rel.as_posix()


def traceback_frames(root: Path, text: str) -> list[Location]:
    """Return the traceback frames that point inside the repository, in order.

    Args:
        root: the resolved worktree root.
        text: a pytest failure text or a Python traceback.

    Returns:
        Unique locations, outermost first (the last one is where it failed).
    """
    found: list[tuple[int, Location]] = []
    for pattern in (_NATIVE_FRAME, _PYTEST_FRAME):
        for match in pattern.finditer(text):
            rel = repo_relative(root, match["path"].strip())
            if rel is not None:
                found.append((match.start(), Location(rel, int(match["line"]))))
    seen: set[Location] = set()
    frames = []
    for _, loc in sorted(found, key=lambda item: item[0]):
        if loc not in seen:
            seen.add(loc)
            frames.append(loc)
    return frames


def split_nodeid(nodeid: str) -> tuple[str, list[str]]:
    """Split a pytest node id into its file and its names (parameters dropped).

    ``tests/test_a.py::TestX::test_y[1-2]`` -> ``("tests/test_a.py", ["TestX", "test_y"])``.
    """
    file_part, _, rest = nodeid.partition("::")
    names = [re.sub(r"\[.*\]$", "", name) for name in rest.split("::") if name]
    return file_part, names


def find_definition(tree: ast.Module, names: list[str]) -> ast.AST | None:
    """Find the class or function that a dotted list of names designates."""
    scope: list[ast.stmt] = tree.body
    node: ast.AST | None = None
    for name in names:
        node = next((n for n in scope if isinstance(
            n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == name), None)
        if node is None:
            return None
        scope = node.body  # type: ignore[attr-defined]
    return node


def span(node: ast.AST) -> tuple[int, int]:
    """First and last line of a node, decorators included."""
    decorators = getattr(node, "decorator_list", [])
    start = min([node.lineno, *(d.lineno for d in decorators)])  # type: ignore[attr-defined]
    return start, node.end_lineno or node.lineno  # type: ignore[attr-defined]


def enclosing(tree: ast.Module, line: int) -> ast.AST | None:
    """The innermost function, or else class, whose lines contain ``line``."""
    best: ast.AST | None = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            start, end = span(node)
            if start <= line <= end and (best is None or start >= span(best)[0]):
                best = node
    return best


def import_block(tree: ast.Module) -> tuple[int, int] | None:
    """Lines of the module's top-level imports (first to last), if any."""
    lines = [span_ for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
             for span_ in (node.lineno, node.end_lineno or node.lineno)]
    return (min(lines), max(lines)) if lines else None


def _module_files(root: Path, module: str, level: int, from_file: str) -> list[str]:
    parts = [p for p in module.split(".") if p]
    if level:
        base = PurePosixPath(from_file).parent
        for _ in range(level - 1):
            base = base.parent
        bases = [base]
    else:
        bases = [PurePosixPath(""), PurePosixPath("src"), PurePosixPath(from_file).parent]
    out = []
    for base in bases:
        stem = base.joinpath(*parts) if parts else base
        for rel in (f"{stem}.py", f"{stem}/__init__.py"):
            rel = rel.lstrip("/").removeprefix("./")
            if rel != ".py" and repo_relative(root, rel) == rel:
                out.append(rel)
    return out


def _imported(tree: ast.AST) -> dict[str, tuple[str, str | None, int]]:
    """name -> (module, attribute or None for `import x`, relative level)."""
    table: dict[str, tuple[str, str | None, int]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                table[alias.asname or alias.name] = (node.module or "", alias.name, node.level)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                table[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0], None, 0)
    return table


def resolve_symbol(root: Path, from_file: str, module: str, attr: str, level: int,
                   depth: int = 0) -> Location | None:
    """Find where ``attr`` of ``module`` (as imported by ``from_file``) is defined.

    Follows one re-export (``from .impl import f`` in a package ``__init__``).
    """
    for rel in _module_files(root, module, level, from_file):
        text = read_text(root / rel)
        tree = parse_module(text) if text is not None else None
        if tree is None:
            continue
        node = find_definition(tree, [attr])
        if node is not None:
            return Location(rel, span(node)[0])
        target = _imported(tree).get(attr)
        if target and target[1] and depth < 2:
            return resolve_symbol(root, rel, target[0], target[1], target[2], depth + 1)
    return None


def callees(root: Path, test_file: str, tree: ast.Module, func: ast.AST,
            limit: int = 5) -> list[Location]:
    """Definitions in the repository of what a test function calls.

    Names are resolved through the test module's imports (``from pkg.mod
    import f``, ``import pkg.mod as m`` then ``m.f(...)``), the way an
    engineer would "go to definition" from the failing test.

    Returns:
        At most ``limit`` locations, in call order.
    """
    imports = _imported(tree)
    found: list[Location] = []
    for node in ast.walk(func):
        if not isinstance(node, ast.Call):
            continue
        target = None
        if isinstance(node.func, ast.Name) and node.func.id in imports:
            module, attr, level = imports[node.func.id]
            target = (module, attr, level) if attr else None
        elif (isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
              and node.func.value.id in imports):
            module, attr, level = imports[node.func.value.id]
            target = (f"{module}.{attr}" if attr else module, node.func.attr, level)
        if target is None:
            continue
        loc = resolve_symbol(root, test_file, *target)
        if loc is not None and loc not in found:
            found.append(loc)
            if len(found) >= limit:
                break
    return found


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` -> ``["a", "b", "c"]``; None unless the chain starts at a plain name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def _chains(nodes: list[ast.AST]) -> list[list[str]]:
    """The longest dotted names read in ``nodes``, in source order (calls and references)."""
    found: list[tuple[int, int, list[str]]] = []
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Attribute, ast.Name)) and isinstance(node.ctx, ast.Load):
            chain = _dotted(node)
            if chain is not None:
                found.append((node.lineno, node.col_offset, chain))
                continue
        stack.extend(ast.iter_child_nodes(node))
    return [chain for _, _, chain in sorted(found, key=lambda item: item[:2])]


def _resolve_chain(root: Path, from_file: str, imports: dict[str, tuple[str, str | None, int]],
                   chain: list[str]) -> Location | None:
    """The definition a dotted name designates: ``f``, ``mod.f``, ``pkg.mod.f`` or
    ``pkg.mod.Class``, its first name bound by an import of ``from_file``."""
    if chain[0] not in imports:
        return None
    module, attr, level = imports[chain[0]]
    if attr is not None:  # `from module import attr`: attr is a symbol or a submodule
        if len(chain) == 1:
            return resolve_symbol(root, from_file, module, attr, level)
        module = f"{module}.{attr}" if module else attr
    rest = chain[1:]
    for cut in range(len(rest), 0, -1):  # the longest module path first: pkg.mod.f
        path = ".".join([module, *rest[:cut - 1]]) if rest[:cut - 1] else module
        loc = resolve_symbol(root, from_file, path, rest[cut - 1], level)
        if loc is not None:
            return loc
    return None


def references(root: Path, rel: str, tree: ast.Module, nodes: list[ast.AST],
               limit: int = 5) -> list[Location]:
    """Definitions in the repository that ``nodes`` (of the module ``rel``) call or name.

    Beyond :func:`callees`: dotted names of any depth (``cachetools.keys.typedkey(...)``
    after ``import cachetools.keys``) and names that are not called where they
    appear (a default argument ``key=keys.typedkey``, a test class's
    ``DECORATOR = staticmethod(pkg.func.lru_cache)``), resolved through the
    module's imports.

    Returns:
        At most ``limit`` locations, in source order.
    """
    imports = _imported(tree)
    found: list[Location] = []
    for chain in _chains(nodes):
        loc = _resolve_chain(root, rel, imports, chain)
        if loc is not None and loc not in found:
            found.append(loc)
            if len(found) >= limit:
                break
    return found


@dataclass(frozen=True)
class TestDefinition:
    """A test function found from its node id, possibly inherited from a base class."""

    __test__ = False

    path: str
    tree: ast.Module
    node: ast.AST
    owner: ast.ClassDef | None = None
    """The class the node id names (its class attributes configure inherited tests)."""


def find_test(root: Path, rel: str, tree: ast.Module, names: list[str],
              depth: int = 0) -> TestDefinition | None:
    """The test a node id's names designate in the module ``rel``.

    A unittest method that the named class inherits from a mixin (``class
    LRUTest(TestCase, DecoratorTestMixin)``), in the same module or imported
    from another module of the repository, is found in that base class.

    Returns:
        The definition (with the file it is in), or None.
    """
    node = find_definition(tree, names)
    owner = find_definition(tree, names[:-1]) if len(names) > 1 else None
    owner = owner if isinstance(owner, ast.ClassDef) else None
    if node is not None:
        return TestDefinition(rel, tree, node, owner)
    if owner is None or depth > 3:
        return None
    imports = _imported(tree)
    for base in owner.bases:
        chain = _dotted(base)
        if chain is None:
            continue
        local = find_definition(tree, chain) if len(chain) == 1 else None
        where = (Location(rel, local.lineno) if isinstance(local, ast.ClassDef)
                 else _resolve_chain(root, rel, imports, chain))
        found = _in_class(root, where, names[-1], depth) if where is not None else None
        if found is not None:
            return TestDefinition(found.path, found.tree, found.node, owner)
    return None


def _in_class(root: Path, where: Location, name: str, depth: int) -> TestDefinition | None:
    """Method ``name`` of the class defined at ``where`` (or of one of its bases)."""
    text = read_text(root / where.path)
    tree = parse_module(text) if text is not None else None
    cls = next((n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
                and n.lineno == where.line), None) if tree is not None else None
    if tree is None or cls is None:
        return None
    return find_test(root, where.path, tree, [cls.name, name], depth + 1)
