"""Findings as SARIF 2.1.0 (the OASIS Static Analysis Results Interchange Format).

One run per source tool (ruff, mypy, bandit, pytest ...), each with its
``tool.driver`` (name and the rules seen, with their documentation URL) and
one result per finding: ``ruleId``, ``level`` (from the severity), the
message, the location (``artifactLocation.uri`` relative to ``%SRCROOT%``,
the repository root, and the region) and ``partialFingerprints``
``{"mendflowFingerprint/v1": finding.id}``, so that code-scanning services
track a finding across line shifts the way mendflow does.

When a mission compared its start with its end, each result also has a
``baselineState``: ``unchanged`` (still there), ``absent`` (fixed on the
mission branch) or ``new`` (appeared during the mission).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from mendflow.core.models import Finding

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
FINGERPRINT_KEY = "mendflowFingerprint/v1"

BaselineState = Literal["unchanged", "absent", "new"]

_LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
_TOOL_URIS = {
    "ruff": "https://docs.astral.sh/ruff/",
    "mypy": "https://mypy.readthedocs.io/",
    "bandit": "https://bandit.readthedocs.io/",
    "pytest": "https://docs.pytest.org/",
    "coverage": "https://coverage.readthedocs.io/",
}


def sarif_log(findings: Sequence[Finding], *, repository: str | None = None,
              states: Mapping[str, BaselineState] | None = None) -> dict[str, Any]:
    """Build a SARIF 2.1.0 log of findings, one run per source tool.

    Args:
        findings: the findings to export (paths relative to the repository root).
        repository: the repository root (absolute path); given, it becomes the
            ``%SRCROOT%`` base URI of the runs.
        states: ``baselineState`` per finding id, or None to leave it out.

    Returns:
        The SARIF log as a JSON-ready dict.
    """
    by_source: dict[str, list[Finding]] = {}
    for finding in findings:
        by_source.setdefault(finding.source, []).append(finding)
    runs = [_run(source, items, repository, states or {})
            for source, items in sorted(by_source.items())]
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": runs}


def level_of(severity: str) -> str:
    """SARIF ``level`` of a mendflow severity: error, warning or note."""
    return _LEVELS.get(severity, "warning")


def _run(source: str, findings: Sequence[Finding], repository: str | None,
         states: Mapping[str, BaselineState]) -> dict[str, Any]:
    rules: dict[str, dict[str, Any]] = {}
    for finding in findings:
        rule = rules.setdefault(finding.rule, {"id": finding.rule})
        if finding.url and finding.url.startswith(("http://", "https://")):
            rule.setdefault("helpUri", finding.url)
    index = {rule_id: i for i, rule_id in enumerate(rules)}
    driver: dict[str, Any] = {"name": source, "rules": list(rules.values())}
    if source in _TOOL_URIS:
        driver["informationUri"] = _TOOL_URIS[source]
    run: dict[str, Any] = {
        "tool": {"driver": driver},
        "columnKind": "unicodeCodePoints",
        "results": [_result(f, index[f.rule], states.get(f.id)) for f in findings],
    }
    if repository and Path(repository).is_absolute():
        run["originalUriBaseIds"] = {"%SRCROOT%": {"uri": Path(repository).as_uri() + "/"}}
    return run


def _result(finding: Finding, rule_index: int, state: BaselineState | None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": finding.rule,
        "ruleIndex": rule_index,
        "level": level_of(finding.severity),
        "message": {"text": finding.message or finding.rule},
        "partialFingerprints": {FINGERPRINT_KEY: finding.id},
        "properties": {"severity": finding.severity, "category": finding.category},
    }
    location = _location(finding)
    if location:
        result["locations"] = [location]
    if state is not None:
        result["baselineState"] = state
    if finding.symbol:
        result["properties"]["symbol"] = finding.symbol
    if finding.test_id:
        result["properties"]["testId"] = finding.test_id
    return result


def _location(finding: Finding) -> dict[str, Any] | None:
    if not finding.path or finding.path == ".":
        return None
    physical: dict[str, Any] = {
        "artifactLocation": {"uri": quote(finding.path), "uriBaseId": "%SRCROOT%"},
    }
    if finding.line and finding.line >= 1:
        region: dict[str, int] = {"startLine": finding.line}
        if finding.column and finding.column >= 1:
            region["startColumn"] = finding.column
        if finding.end_line and finding.end_line >= finding.line:
            region["endLine"] = finding.end_line
        physical["region"] = region
    return {"physicalLocation": physical}
