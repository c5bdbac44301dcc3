"""Config sections of healing: log files as a finding source, and the heal flow."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mendflow.core.config_base import Section

HealCategory = Literal["syntax", "import", "type", "attribute", "logic", "api", "config",
                       "external"]
"""The categories of a heal analysis (``external``: a service down, the network,
permissions: reported, never fixed in code)."""


class LogsConfig(Section):
    """``tools.logs``: application logs whose tracebacks become ``source: log`` findings."""

    enabled: bool = Field(False, description="read the logs in every mission")
    paths: list[str] = Field(default_factory=list, description="files or globs (relative to "
                             "the repository root, or absolute); rotated .1 and .gz included")


class HealConfig(Section):
    """``heal``: from a logged or raised exception to a reproduced, validated fix."""

    min_confidence: Literal["high", "medium", "low"] = Field(
        "medium", description="an analysis less confident than this is refused")
    allowed_categories: list[HealCategory] = Field(
        default_factory=lambda: ["syntax", "import", "type", "attribute", "logic", "api",
                                 "config"],
        description="root-cause categories that may be fixed (external never is)")
    denylist: list[str] = Field(
        default_factory=lambda: ["secrets/**", "**/secrets/**", ".env*", "**/.env*",
                                 ".github/**", "**/settings/production*.py"],
        description="globs a heal fix may never touch (added to fixer.policy.denylist)")
    max_attempts: int = Field(3, ge=1, le=10, description="model attempts per error group")
    max_calls_per_hour: int = Field(20, ge=1, description="model calls of all heal runs per hour")
    max_runs_per_hour: int = Field(10, ge=1, description="heal runs the trigger starts per hour")
    repeat_window_s: float = Field(3600, gt=0, description="a repeat of an open group within "
                                   "this many seconds only increments its count")
    notify_block: str | None = Field(None, description="notification block for every stage "
                                     "(default: approval.notify_block)")
    deployed_commit: str | None = Field(None, description="the commit the application runs; "
                                        "None = HEAD")
