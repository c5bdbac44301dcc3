"""Scan the worktree for security issues with bandit and normalize its JSON report.

The repository's bandit config is honored: ``[tool.bandit]`` in
``pyproject.toml`` (``-c pyproject.toml``) and a ``.bandit`` INI file
(``--ini .bandit``). Unless that config excludes paths itself, tests, hidden
directories, venvs and build output are excluded (``-x``).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from mendflow.core.config import ToolsConfig
from mendflow.core.errors import ToolError
from mendflow.core.findings import SourceIndex, disambiguate, make_finding
from mendflow.core.models import SEVERITY_RANK, Finding, Sandbox, ToolResult
from mendflow.infra.runner import run_process
from mendflow.tasks.detect.common import (
    failed_result,
    load_pyproject,
    read_ini,
    relative_posix,
    tool_environ,
    tool_table,
)

# bandit matches these with fnmatch against paths such as ./pkg/tests/test_a.py.
DEFAULT_EXCLUDES = (
    "*/tests/*", "*/test/*", "*/testing/*", "*/test_*.py", "*_test.py", "*/conftest.py",
    "*/.*/*", "*/venv/*", "*/site-packages/*", "*/node_modules/*", "*/__pycache__/*",
    "./build/*", "./dist/*", "*.egg-info/*",
)
SEVERITIES = {"HIGH": "high", "MEDIUM": "medium", "LOW": "low"}


def bandit_config_args(root: Path) -> list[str]:
    """Return the arguments that make bandit use the repository's own config.

    Args:
        root: the worktree root.

    Returns:
        ``-c pyproject.toml`` if it has ``[tool.bandit]``, ``--ini .bandit`` if that
        file exists, and ``-x <defaults>`` unless one of them sets excluded paths.
    """
    args: list[str] = []
    excludes_set = False
    table = tool_table(load_pyproject(root), "bandit")
    if table is not None:
        args += ["-c", "pyproject.toml"]
        excludes_set = bool(table.get("exclude_dirs"))
    if (root / ".bandit").is_file():
        args += ["--ini", ".bandit"]
        parser = read_ini(root / ".bandit")
        excludes_set = excludes_set or bool(
            parser and parser.has_section("bandit") and parser.get("bandit", "exclude",
                                                                   fallback="").strip())
    if not excludes_set:
        args += ["-x", ",".join(DEFAULT_EXCLUDES)]
    return args


def measure_bandit(sandbox: Sandbox, tools: ToolsConfig) -> ToolResult:
    """Run ``python -m bandit -r . -f json -q`` (mendflow's interpreter) in the worktree.

    Args:
        sandbox: the worktree to scan.
        tools: the ``tools`` config (``bandit.min_severity``, ``bandit.args``,
            ``bandit.timeout_s`` seconds).

    Returns:
        A ``bandit`` :class:`ToolResult` with one finding per issue at or above
        ``min_severity``; ``ok=False`` (with ``error``) if bandit failed or timed out.

    Raises:
        ToolError: the Python interpreter running mendflow is missing (never in practice).
    """
    if not tools.bandit.enabled:
        return ToolResult(tool="bandit", ok=True)
    with tempfile.TemporaryDirectory(prefix="mendflow-bandit-") as tmp:
        report = Path(tmp) / "bandit.json"
        command = [sys.executable, "-m", "bandit", "-r", ".", "-f", "json", "-q",
                   "-o", str(report), *bandit_config_args(sandbox.path), *tools.bandit.args]
        proc = run_process(command, cwd=sandbox.path, timeout_s=tools.bandit.timeout_s,
                           env=tool_environ(sandbox))
        if proc.timed_out:
            return failed_result("bandit", proc, f"bandit exceeded {tools.bandit.timeout_s:g} s")
        if proc.returncode not in (0, 1) or not report.is_file():
            return failed_result("bandit", proc, f"bandit failed (exit {proc.returncode})")
        try:
            findings = parse_bandit(report.read_text(encoding="utf-8"), sandbox.path,
                                    tools.bandit.min_severity)
        except ToolError as err:
            return failed_result("bandit", proc, err.message)
    return ToolResult(tool="bandit", findings=tuple(findings), command=proc.args,
                      exit_code=proc.returncode, duration_s=proc.duration_s)


def parse_bandit(text: str, root: Path, min_severity: str = "low") -> list[Finding]:
    """Parse bandit's JSON report into findings.

    Args:
        text: the report (``-f json``).
        root: the worktree root.
        min_severity: ``low``, ``medium`` or ``high``; issues below it are dropped.

    Returns:
        Findings (source ``bandit``, rule = bandit test id such as ``B602``) with
        unique ids.

    Raises:
        ToolError: the text is not bandit's JSON report.
    """
    try:
        results = json.loads(text)["results"]
        if not isinstance(results, list):
            raise TypeError("'results' is not a list")
    except (ValueError, KeyError, TypeError) as err:
        raise ToolError(f"cannot parse bandit's JSON report: {err}", subject="bandit",
                        hint="check that mendflow's bandit is a supported version") from None
    index = SourceIndex(root)
    floor = SEVERITY_RANK[min_severity]
    found = []
    for item in results:
        finding = _finding(item, root, index) if isinstance(item, dict) else None
        if finding is not None and SEVERITY_RANK[finding.severity] >= floor:
            found.append(finding)
    return disambiguate(found)


def _finding(item: dict[str, Any], root: Path, index: SourceIndex) -> Finding | None:
    path = relative_posix(root, str(item.get("filename", "")))
    if path is None or not item.get("test_id"):
        return None
    column = item.get("col_offset")
    line_range = item.get("line_range") or []
    cwe = item.get("issue_cwe") or {}
    detail = f"confidence: {item.get('issue_confidence', 'UNDEFINED')}"
    if isinstance(cwe, dict) and cwe.get("id"):
        detail += f"; CWE-{cwe['id']} {cwe.get('link', '')}".rstrip()
    return make_finding(
        index, source="bandit", rule=str(item["test_id"]), path=path,
        line=item.get("line_number"),
        column=column + 1 if isinstance(column, int) else None,
        end_line=max(line_range) if line_range else None,
        severity=SEVERITIES.get(str(item.get("issue_severity", "")).upper(), "low"),
        category="security", message=str(item.get("issue_text", "")),
        url=item.get("more_info"), detail=detail,
    )
