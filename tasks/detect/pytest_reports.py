"""Parsers of pytest's JUnit XML (xunit1) and coverage.py's JSON report.

pytest's JUnit writer mangles a node id ``tests/test_a.py::TestC::test_m``
into ``classname="tests.test_a.TestC" name="test_m"``; with
``junit_family=xunit1`` it also writes ``file`` and a 0-based ``line``, which
is enough to rebuild the exact node id.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET  # nosec B405 - the XML is pytest's own report file
from dataclasses import dataclass
from pathlib import Path

from mendflow.core.errors import ToolError
from mendflow.core.models import FileCoverage, TestCase, TestOutcome
from mendflow.tasks.detect.common import relative_posix

COLLECTION_FAILURE = "collection failure"


@dataclass(frozen=True)
class CollectionError:
    """A test module (or package) pytest could not collect.

    Attributes:
        path: the module's POSIX path relative to the worktree.
        message: one line saying why (the last ``E`` line of the traceback).
        detail: the full traceback text.
    """

    path: str
    message: str
    detail: str


@dataclass(frozen=True)
class JUnitReport:
    """What one JUnit XML file holds: test cases and collection errors."""

    cases: tuple[TestCase, ...]
    collection_errors: tuple[CollectionError, ...]


def parse_junit(path: Path, root: Path) -> JUnitReport:
    """Parse pytest's JUnit XML (``junit_family=xunit1``).

    Args:
        path: the XML file pytest wrote with ``--junit-xml``.
        root: the worktree root (pytest's rootdir), to resolve module paths.

    Returns:
        The test cases, one per test node id, and the collection errors.

    Raises:
        ToolError: the file is missing or not JUnit XML.
    """
    try:
        tree = ET.parse(path)  # nosec B314 - written by pytest in our private temp dir
    except (OSError, ET.ParseError) as err:
        raise ToolError(f"cannot read pytest's JUnit XML: {err}", subject=str(path),
                        hint="check that the repository's pytest config does not disable junitxml"
                        ) from None
    cases: list[TestCase] = []
    errors: list[CollectionError] = []
    for element in tree.getroot().iter("testcase"):
        collection = _collection_error(element, root)
        if collection is not None:
            errors.append(collection)
        else:
            cases.append(_test_case(element, root))
    return JUnitReport(_one_per_node(cases), tuple(errors))


def _one_per_node(cases: list[TestCase]) -> tuple[TestCase, ...]:
    """One case per node id: pytest writes a second ``<testcase>`` for a test whose call
    failed and whose teardown then errored (asgiref: a teardown stopped after the test's
    timeout), which counted one test twice (125 collected where pytest collects 124)."""
    merged: dict[str, TestCase] = {}
    for case in cases:
        first = merged.get(case.nodeid)
        if first is None:
            merged[case.nodeid] = case
        elif first.outcome != "failed" and case.outcome in ("failed", "error"):
            merged[case.nodeid] = case.model_copy(update={
                "duration_s": first.duration_s + case.duration_s})
        else:  # the first failure stays the test's outcome; the teardown's text is added
            detail = "\n\n".join(d for d in (first.detail, case.detail) if d) or None
            merged[case.nodeid] = first.model_copy(update={
                "duration_s": first.duration_s + case.duration_s, "detail": detail})
    return tuple(merged.values())


def _collection_error(element: ET.Element, root: Path) -> CollectionError | None:
    error = element.find("error")
    classname = element.get("classname", "")
    if error is None or (classname and error.get("message") != COLLECTION_FAILURE):
        return None
    file = element.get("file") or _module_file(element.get("name", ""), root) or "."
    detail = (error.text or "").strip()
    return CollectionError(path=file, message=_summary_line(detail, error.get("message", "")),
                           detail=detail)


def _test_case(element: ET.Element, root: Path) -> TestCase:
    classname, name = element.get("classname", ""), element.get("name", "")
    file = element.get("file")
    line = element.get("line")
    if file and (file.startswith(("/", "../")) or file == ".."):
        file = line = None  # defined outside the worktree: use the node id's file
    outcome, child = _outcome(element)
    message = detail = None
    if child is not None:
        detail = (child.text or "").strip() or None
        message = child.get("message") or (detail.splitlines()[-1] if detail else None)
    nodeid = node_id(classname, name, file, root)
    return TestCase(
        nodeid=nodeid,
        outcome=outcome,
        path=file or nodeid.split("::", 1)[0],
        line=int(line) + 1 if line and line.isdigit() else None,
        duration_s=_float(element.get("time")),
        message=message,
        detail=detail,
    )


def _outcome(element: ET.Element) -> tuple[TestOutcome, ET.Element | None]:
    for tag, outcome in (("failure", "failed"), ("error", "error")):
        child = element.find(tag)
        if child is not None:
            return outcome, child  # type: ignore[return-value]
    skipped = element.find("skipped")
    if skipped is not None:
        return ("xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"), skipped
    return "passed", None


def node_id(classname: str, name: str, file: str | None, root: Path) -> str:
    """Rebuild pytest's node id from JUnit's ``classname``, ``name`` and ``file``.

    Args:
        classname: dotted module path plus enclosing classes (``tests.test_a.TestC``).
        name: the test name, parameters included (``test_x[1-2]``).
        file: the ``file`` attribute (xunit1), or None.
        root: the worktree root, used when ``file`` does not match ``classname``
            (a test inherited from another module).

    Returns:
        The node id, for example ``tests/test_a.py::TestC::test_m``.
    """
    if not classname:
        return file or name
    if file:
        module = file.removesuffix(".py")
        module = module.replace("/", ".")
        if classname == module or classname.startswith(module + "."):
            rest = classname[len(module):].lstrip(".")
            return "::".join([file, *(rest.split(".") if rest else []), name])
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        candidate = "/".join(parts[:cut]) + ".py"
        if (root / candidate).is_file():
            return "::".join([candidate, *parts[cut:], name])
    return "::".join([classname.replace(".", "/") + ".py", name])


def _module_file(dotted: str, root: Path) -> str | None:
    candidate = dotted.replace(".", "/") + ".py"
    return candidate if (root / candidate).is_file() else None


def _summary_line(detail: str, fallback: str) -> str:
    """The last ``E   ...`` line of a pytest traceback, else ``fallback``."""
    for line in reversed(detail.splitlines()):
        if line.startswith("E "):
            return line[1:].strip()
    return fallback


def _float(value: str | None) -> float:
    try:
        return float(value) if value else 0.0
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class CoverageReport:
    """coverage.py's JSON report, reduced to what mendflow uses."""

    percent: float | None
    files: tuple[FileCoverage, ...]


def parse_coverage_json(path: Path, root: Path) -> CoverageReport:
    """Parse ``coverage json`` output into per-file line coverage.

    Args:
        path: the JSON file written by ``coverage json -o``.
        root: the worktree root; files outside it are left out.

    Returns:
        The total percent (``totals.percent_covered``) and one
        :class:`FileCoverage` per measured file, sorted by path.

    Raises:
        ToolError: the file is missing or not coverage.py's JSON format.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        totals = data["totals"]
        entries = data["files"].items()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ToolError(f"cannot read coverage's JSON report: {err}", subject=str(path),
                        hint="check the repository's coverage configuration") from None
    files = []
    for filename, entry in entries:
        rel = relative_posix(root, filename)
        summary = entry.get("summary", {})
        if rel is None or not isinstance(summary, dict):
            continue
        files.append(FileCoverage(
            path=rel,
            num_statements=int(summary.get("num_statements", 0)),
            covered_lines=int(summary.get("covered_lines", 0)),
            percent=round(float(summary.get("percent_covered", 100.0)), 2),
            missing_lines=tuple(int(n) for n in entry.get("missing_lines", ())),
        ))
    percent = totals.get("percent_covered") if isinstance(totals, dict) else None
    return CoverageReport(round(float(percent), 2) if percent is not None else None,
                          tuple(sorted(files, key=lambda f: f.path)))


def line_ranges(lines: tuple[int, ...]) -> str:
    """Format line numbers as ranges: ``(1, 2, 3, 7, 9, 10)`` -> ``"1-3, 7, 9-10"``."""
    spans: list[list[int]] = []
    for number in sorted(set(lines)):
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
