"""Test impact: which tests reach which lines, recorded under coverage, and test selection.

A full test run records coverage.py *contexts*: a small pytest plugin (written
to the run's private temp directory, never into the worktree) calls
``coverage.Coverage.current().switch_context(nodeid)`` before each test, so
every measured line knows the tests that executed it (lines run at import
time carry the empty context). ``coverage json --show-contexts`` reports them;
:func:`impact_map_from_coverage_json` keeps, per measured file, its content hash
and ``{line: [test index]}`` (an :class:`~mendflow.core.models.ImpactMap`). The
map is saved beside the worktree (:func:`impact_path`), one per measured tree, and
handed to validation through Prefect's result storage
(:func:`~mendflow.tasks.detect.impact_record.read_impact_map`), so a mission resumed
on another host selects with it too.

:func:`select_tests` then picks the tests a candidate patch needs: those that
reach its changed lines, plus the tests that failed at baseline, plus every
test file it touches. It answers ``None`` (run the whole suite) when it cannot
be sure: no map, a changed file whose content differs from the one the map was
recorded on (stale), a changed file the map does not know (not Python, or a
repository coverage config that narrows what was measured), or a changed line
run at import time (every test depends on it). A Python file the map does not
know, when the run measured the whole worktree, was executed by no test: it
selects none (the batch's full run still confirms the candidate), and so does a
type stub (``.pyi``: never imported at run time). When the repository's coverage
config narrows what is measured, the plugin also records which of the worktree's
files the test processes imported: a changed file outside the measured source
that no test process imported (an ``examples/`` script) selects none too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from unidiff import PatchSet

from mendflow.core.models import ImpactFile, ImpactMap, Patch
from mendflow.tasks.detect.common import is_test_path, relative_posix, tool_home_dir

PLUGIN_MODULE = "mendflow_impact_contexts"
PLUGIN_SOURCE = '''\
"""mendflow: label coverage data with the running test's node id (a coverage context)."""
import coverage
import pytest


def _switch(label):
    cov = coverage.Coverage.current()
    if cov is not None:
        cov.switch_context(label)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _switch(item.nodeid)


@pytest.hookimpl(trylast=True)
def pytest_runtest_logfinish(nodeid, location):
    _switch("")


def pytest_sessionfinish(session):
    """Write the files of the modules imported in this process (one file per process: xdist)."""
    import json, os, sys
    out = os.path.dirname(os.path.abspath(__file__))  # the run's private temp directory
    files = sorted({str(getattr(m, "__file__", None) or "") for m in list(sys.modules.values())})
    with open(os.path.join(out, "imported-%d.json" % os.getpid()), "w") as handle:
        json.dump([f for f in files if f], handle)
'''


def read_imported(directory: Path, root: Path) -> tuple[str, ...] | None:
    """The worktree's files whose modules the test processes imported (the plugin's
    ``imported-<pid>.json`` files in ``directory``), repository-relative; None when no
    process wrote one (the run crashed, or the plugin did not load)."""
    found: set[str] = set()
    written = False
    for path in directory.glob("imported-*.json"):
        try:
            names = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        written = True
        found |= {rel for name in names if isinstance(name, str)
                  for rel in [relative_posix(root, name)] if rel is not None}
    return tuple(sorted(found)) if written else None


def write_plugin(directory: Path) -> None:
    """Write the context-switching pytest plugin into ``directory`` (put it on PYTHONPATH)."""
    (directory / f"{PLUGIN_MODULE}.py").write_text(PLUGIN_SOURCE, encoding="utf-8")


def impact_path(sandbox, tree: str) -> Path:
    """Where the impact map of one measured tree is kept (beside the worktree)."""
    folder = tool_home_dir(sandbox) / "impact"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{tree}.json"


def content_hash(path: Path) -> str | None:
    """sha256 of a file's bytes (None: missing)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def impact_map_from_coverage_json(report: Path, root: Path, whole_tree: bool = False,
                                  imported: tuple[str, ...] | None = None) -> ImpactMap:
    """Reduce ``coverage json --show-contexts`` to the impact map.

    Args:
        report: the JSON written by coverage.py with ``--show-contexts``.
        root: the worktree root (files outside it are left out).
        whole_tree: the run measured the whole worktree (``--source=.``), see
            :attr:`ImpactMap.whole_tree <mendflow.core.models.ImpactMap>`.
        imported: the worktree's files the test processes imported (:func:`read_imported`).

    Returns:
        The :class:`~mendflow.core.models.ImpactMap`: each measured file's content
        hash, the tests (indexes into ``tests``) that reach each of its lines, and
        the lines run outside any test (import time).

    Raises:
        OSError, ValueError: the report cannot be read or is not coverage.py's JSON.
    """
    data = json.loads(report.read_text(encoding="utf-8"))
    tests: dict[str, int] = {}
    files: dict[str, ImpactFile] = {}
    for filename, entry in (data.get("files") or {}).items():
        rel = relative_posix(root, filename)
        if rel is None:
            continue
        lines: dict[int, tuple[int, ...]] = {}
        imports: list[int] = []
        for line, labels in (entry.get("contexts") or {}).items():
            ids = sorted({tests.setdefault(label, len(tests)) for label in labels if label})
            if ids:
                lines[int(line)] = tuple(ids)
            if "" in labels:
                imports.append(int(line))
        files[rel] = ImpactFile(sha256=content_hash(root / rel), lines=lines,
                                import_lines=tuple(sorted(imports)))
    return ImpactMap(tests=tuple(tests), files=files, whole_tree=whole_tree, imported=imported)


def save_impact_map(report: Path, root: Path, target: Path, whole_tree: bool = False,
                    imported: tuple[str, ...] | None = None) -> ImpactMap | None:
    """Write the impact map of a ``--show-contexts`` report to ``target`` (atomically).

    A report that cannot be read leaves no map (selection then runs the whole suite).
    ``whole_tree``, ``imported``: see :func:`impact_map_from_coverage_json`.

    Returns:
        The map written, or None when the report could not be read.
    """
    try:
        data = impact_map_from_coverage_json(report, root, whole_tree, imported)
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    partial = target.with_suffix(".part")
    partial.write_text(data.model_dump_json(), encoding="utf-8")
    partial.replace(target)
    return data


def load_impact_map(path: Path) -> ImpactMap | None:
    """The saved map, or None when missing or unreadable."""
    try:
        return ImpactMap.model_validate_json(path.read_bytes())
    except (OSError, ValueError):  # pydantic's ValidationError is a ValueError
        return None


@dataclass(frozen=True)
class Selection:
    """The tests one candidate is first validated with.

    Attributes:
        nodeids: the selected node ids; None = the whole suite.
        reason: why the whole suite, or what was selected.
    """

    nodeids: tuple[str, ...] | None
    reason: str


def changed_lines(patch: Patch) -> dict[str, set[int]]:
    """The lines of each file a patch changes, numbered as in the file before the patch.

    A removed or replaced line counts itself; a pure insertion counts the lines
    just before and after it (an insertion at the top counts line 1).
    """
    changed: dict[str, set[int]] = {}
    for patched in PatchSet(patch.diff):
        path = _diff_path(patched)
        lines = changed.setdefault(path, set())
        for hunk in patched:
            previous, replacing = hunk.source_start - 1, False
            for line in hunk:
                if line.is_removed:
                    lines.add(line.source_line_no)
                    replacing = True
                elif line.is_added:
                    if not replacing:  # a pure insertion: the lines around it
                        lines.update({max(previous, 1), previous + 1})
                else:
                    replacing = False
                if line.source_line_no:
                    previous = line.source_line_no
    return changed


def _diff_path(patched) -> str:
    if patched.source_file != "/dev/null":
        return patched.source_file.removeprefix("a/")
    return patched.target_file.removeprefix("b/")


def to_source_lines(diff: str, path: str, lines: set[int]) -> set[int] | None:
    """Map line numbers of ``path`` after a patch back to before it.

    Args:
        diff: the earlier patch's unified diff.
        path: the file (repository-relative POSIX).
        lines: line numbers in the patched file.

    Returns:
        The same lines numbered as before the patch, or None when one of them is
        a line that patch added (the impact data knows nothing about it).
    """
    hunks = [h for pf in PatchSet(diff) if _diff_path(pf) == path for h in pf]
    out: set[int] = set()
    for number in lines:
        offset, mapped = 0, None
        for hunk in hunks:
            end = hunk.target_start + hunk.target_length
            if number < hunk.target_start:
                break
            if number < end:
                mapped = next((ln.source_line_no for ln in hunk
                               if ln.target_line_no == number), None)
                if mapped is None:
                    return None
                break
            offset = (hunk.source_start + hunk.source_length) - end
        out.add(mapped if mapped is not None else number + offset)
    return out


def select_tests(impact: ImpactMap | None, patch: Patch, before: dict[str, str | None],
                 failed_at_baseline: set[str], earlier: Sequence[str] = ()) -> Selection:
    """Pick the tests that must run to validate one candidate first.

    Args:
        impact: the impact map of the tree the contexts were recorded on (None: missing).
            When it measured the whole tree (``whole_tree``), a ``.py`` file missing
            from it ran in no test (a ``docs/conf.py``, a ``setup.py``, a new module)
            and selects no test; else such a file falls back.
        patch: the candidate.
        before: content hash (sha256) of each of the patch's files just before it
            was applied (None for a file that did not exist).
        failed_at_baseline: node ids that failed or errored in that measurement.
        earlier: the diffs of candidates applied (uncommitted) since the impact
            data was recorded, in order: a file they changed is not stale, its
            lines are mapped back through them (a line they added falls back).

    Returns:
        The selection; ``nodeids=None`` falls back to the whole suite.
    """
    if impact is None:
        return Selection(None, "no test-impact data")
    files, tests = impact.files, impact.tests
    selected: set[str] = set(failed_at_baseline)
    for path, lines in changed_lines(patch).items():
        if is_test_path(path):  # the whole test file; a conftest.py: every test below it
            name = PurePosixPath(path)
            selected.add(str(name.parent) if name.name == "conftest.py" else path)
            continue
        if path.endswith(".pyi"):
            continue  # a type stub is never imported at run time: only the linters judge it
        entry = files.get(path)
        if entry is None:
            if path.endswith(".py") and (impact.whole_tree or (
                    impact.imported is not None and path not in impact.imported)):
                continue  # no test executed it: nothing to select (the batch's run confirms)
            return Selection(None, f"{path}: not in the test-impact data")
        touched = [d for d in earlier if any(_diff_path(pf) == path for pf in PatchSet(d))]
        if not touched and entry.sha256 != before.get(path):
            return Selection(None, f"{path}: changed since its test-impact data was recorded")
        for diff in reversed(touched):
            mapped = to_source_lines(diff, path, lines)
            if mapped is None:
                return Selection(None, f"{path}: the change meets lines an earlier candidate added")
            lines = mapped
        if lines & set(entry.import_lines):
            return Selection(None, f"{path}: a changed line runs at import time")
        for line in lines:
            selected.update(tests[i] for i in entry.lines.get(line, ()))
    return Selection(tuple(sorted(selected)), f"{len(selected)} test(s) reach the change")
