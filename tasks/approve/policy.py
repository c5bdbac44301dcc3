"""Which accepted patches need a human's approval: a pure function of the autonomy level.

The levels are ordered; each one asks for approval in a superset of the cases of
the next:

===================  ===================================================================
level                a patch needs approval when
===================  ===================================================================
``interactive``      always
``semi_autonomous``  its fixer is not the offline ``ruff`` fixer (a model wrote it), its
                     confidence is below ``high``, it changes more than
                     ``approval.max_changed_lines`` lines, or it is sensitive
``autonomous``       it is sensitive: it touches tests, configuration or dependency
                     files, or it fixes a security finding (bandit)
``full_autonomous``  never (every validation gate still applied: only accepted
                     patches are ever delivered)
===================  ===================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import get_args

from mendflow.core.config import AutonomyLevel
from mendflow.core.errors import ConfigError
from mendflow.core.models import ApprovalNeed, Finding, PatchOutcome
from mendflow.tasks.validate import glob_match

LEVELS: tuple[str, ...] = get_args(AutonomyLevel)

DEPENDENCY_GLOBS = (
    "**/pyproject.toml", "**/setup.py", "**/setup.cfg", "**/requirements*.txt",
    "**/requirements/*.txt", "**/requirements*.in", "**/constraints*.txt", "**/Pipfile",
    "**/Pipfile.lock", "**/poetry.lock", "**/uv.lock", "**/pdm.lock", "**/environment.yml",
    "**/environment.yaml", "**/conda.yaml",
)
"""Files that declare or pin dependencies (POSIX globs, ``**`` spans directories)."""

CONFIG_GLOBS = (
    "**/*.toml", "**/*.cfg", "**/*.ini", "**/*.yaml", "**/*.yml", "**/*.json", "**/.env*",
    "**/.bandit", "**/.flake8", "**/.coveragerc", "**/.pylintrc", "**/noxfile.py",
    "**/Makefile", "**/Dockerfile*", "**/MANIFEST.in", "**/.gitignore", "**/.gitattributes",
    "**/.gitmodules", ".github/**", ".gitlab/**", ".circleci/**", "**/Jenkinsfile",
    "**/setup.py", "**/conftest.py",
)
"""Configuration of the project, its tools or its CI (checked after the dependency globs)."""

SENSITIVE_KINDS = ("tests", "configuration", "dependencies", "security")


def check_autonomy(level: str | None) -> AutonomyLevel | None:
    """Validate an autonomy level given as a flow parameter or config value.

    Args:
        level: one of :data:`LEVELS`, or None (no delivery).

    Returns:
        The level, unchanged.

    Raises:
        ConfigError: not a known level.
    """
    if level is None or level in LEVELS:
        return level  # type: ignore[return-value]
    raise ConfigError(f"unknown autonomy level {level!r}", subject="autonomy",
                      hint=f"use one of: {', '.join(LEVELS)}")


def sensitive_kinds(files: Iterable[str], findings: Iterable[Finding],
                    test_globs: Sequence[str]) -> tuple[str, ...]:
    """Classify what makes a patch sensitive.

    Args:
        files: the POSIX paths the patch changes (relative to the repository root).
        findings: the findings the patch claims to fix (those that are known).
        test_globs: what counts as a test file (``gates.test_globs``).

    Returns:
        The sensitive kinds found, in the order of :data:`SENSITIVE_KINDS`.
    """
    kinds: set[str] = set()
    for name in files:
        path = PurePosixPath(name).as_posix()
        if any(glob_match(path, g) for g in test_globs):
            kinds.add("tests")
        if any(glob_match(path, g) for g in DEPENDENCY_GLOBS):
            kinds.add("dependencies")
        if any(glob_match(path, g) for g in CONFIG_GLOBS):
            kinds.add("configuration")
    if any(f.source == "bandit" or f.category == "security" for f in findings):
        kinds.add("security")
    return tuple(k for k in SENSITIVE_KINDS if k in kinds)


def needs_approval(level: AutonomyLevel, outcome: PatchOutcome, *, changed_lines: int,
                   findings: Mapping[str, Finding], test_globs: Sequence[str],
                   max_changed_lines: int) -> ApprovalNeed:
    """Decide whether one accepted patch needs a human's approval at ``level``.

    Args:
        level: the autonomy level (see the module docstring).
        outcome: the accepted patch (its fixer, confidence, files and claimed finding ids).
        changed_lines: lines added plus deleted by its commit (``git diff --numstat``).
        findings: known findings by id (a claimed id missing here is ignored).
        test_globs: what counts as a test file.
        max_changed_lines: ``semi_autonomous`` asks when a patch changes more lines.

    Returns:
        An :class:`ApprovalNeed`; empty ``reasons`` mean no approval is needed.

    Raises:
        ConfigError: unknown level.
    """
    check_autonomy(level)
    claimed = [findings[i] for i in outcome.finding_ids if i in findings]
    sensitive = sensitive_kinds(outcome.files, claimed, test_globs)
    reasons: list[str] = []
    if level == "interactive":
        reasons.append("interactive: every patch needs approval")
    if level == "semi_autonomous":
        if outcome.fixer != "ruff":
            reasons.append(f"written by the {outcome.fixer} fixer, not the offline ruff fixer")
        confidence = outcome.confidence or ("high" if outcome.fixer == "ruff" else None)
        if confidence != "high":
            reasons.append(f"confidence {confidence or 'unknown'} is below high")
        if changed_lines > max_changed_lines:
            reasons.append(f"{changed_lines} changed lines > {max_changed_lines}")
    if level in ("semi_autonomous", "autonomous"):
        reasons.extend(f"sensitive: {kind}" for kind in sensitive)
    return ApprovalNeed(patch_id=outcome.id, reasons=tuple(reasons), sensitive=sensitive,
                        changed_lines=changed_lines)
