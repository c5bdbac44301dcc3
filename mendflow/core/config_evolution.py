"""Config sections of the evolution loop: remote delivery (PRs / MRs) and the cycle itself.

Part of the one validated config; import them from :mod:`mendflow.core.config`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mendflow.core.config_base import Section

Forge = Literal["github", "gitlab"]
"""The forge that receives pull requests (GitHub, GitHub Enterprise) or merge requests (GitLab)."""

GroupBy = Literal["cycle", "rule", "patch"]
"""What one pull request holds: a whole cycle's patches, one rule's patches, or one patch."""


class DeliveryConfig(Section):
    """Delivery of an evolution cycle's patches to a remote: a push, then a PR or an MR.

    Used by ``mendflow evolve`` (the ``evolution-cycle`` flow). The branch is
    pushed without force; the pull request's body is the approval report.
    """

    remote: str | None = Field(
        "origin", description="git remote mission branches are pushed to; None = no push")
    forge: Forge | None = Field(
        "github", description="github | gitlab | None (push only, no pull request)")
    forge_url: str | None = Field(
        None, description="API base URL; None = the public service (https://api.github.com, "
        "https://gitlab.com); any URL works (GitHub Enterprise https://HOST/api/v3, a test server)")
    repository: str | None = Field(
        None, description="owner/name on the forge; None = derived from the remote's URL")
    token_block: str | None = Field(
        None, description="name of a saved Prefect block holding the token (mendflow's "
        "forge-token block, or prefect-github's GitHubCredentials); None = the GITHUB_TOKEN / "
        "GITLAB_TOKEN environment variable")
    labels: list[str] = Field(
        default_factory=lambda: ["mendflow"], description="labels put on every pull request")
    group: GroupBy = Field(
        "cycle", description="cycle: one PR per cycle, each patch its own commit | rule: one PR "
        "per finding rule | patch: one PR per patch")
    max_open_prs: int = Field(
        5, ge=0, description="open mendflow PRs at most; at the limit a cycle opens nothing and "
        "says so")
    max_prs_per_hour: int | None = Field(
        None, ge=0, description="PRs opened in the last hour at most; None = no hourly cap")
    dashboard: bool = Field(
        False, description="keep one tracking issue on the forge, updated each cycle")
    timeout_s: float = Field(30, gt=0, description="seconds per forge API request")


class DetectSwitches(Section):
    """What an evolution cycle looks for (the original system's detection keys)."""

    logs: bool = Field(True, description="errors and warnings in the test run's output")
    performance: bool = Field(True, description="slow tests (tools.pytest.slow_test_s)")
    todos: bool = Field(True, description="TODO / FIXME markers")
    coverage_gaps: bool = Field(True, description="files below tools.coverage.min_file_percent")


class GenerateSwitches(Section):
    """What an evolution cycle may write patches for (the original system's generation keys)."""

    bug_fixes: bool = Field(True, description="failing tests, type and lint errors, security")
    features_from_todos: bool = Field(False, description="implement what a TODO asks for")
    performance: bool = Field(False, description="speed up slow tests / code")
    tests: bool = Field(False, description="add tests where coverage is missing")


class EvolutionConfig(Section):
    """The evolution loop: one scheduled ``evolution-cycle`` flow run after another."""

    interval_s: float = Field(300, gt=0, description="seconds between cycles")
    max_interval_s: float = Field(
        3600, gt=0, description="the backed-off interval never exceeds this, seconds")
    plateau_cycles: int = Field(
        3, ge=1, description="after this many cycles in a row with no accepted patch the "
        "interval doubles (up to max_interval_s); it comes back when the target branch moves")
    auto_restart: bool = Field(
        False, description="re-exec `mendflow evolve serve` after a cycle that delivered to the "
        "code the loop itself runs (always on when the loop maintains mendflow's own repository)")
    min_test_coverage: float | None = Field(
        None, ge=0, le=100, description="a cycle whose line coverage (percent) is below this is "
        "marked below_thresholds and notifies; None = no threshold")
    max_quality_issues: int | None = Field(
        None, ge=0, description="a cycle with more findings than this is marked below_thresholds "
        "and notifies; None = no threshold")
    detect: DetectSwitches = DetectSwitches()
    generate: GenerateSwitches = GenerateSwitches()
    provider: Literal["ruff", "anthropic", "chain"] | None = Field(
        None, description="the fixer of each cycle's mission; None = fixer.type")
    autonomy: Literal["interactive", "semi_autonomous", "autonomous", "full_autonomous"] = Field(
        "autonomous", description="approval level before a PR is opened (semi_autonomous pauses "
        "the cycle for a human on risky patches; full_autonomous also merges the PR)")
    watch: bool = Field(True, description="post-merge watch: bisect tests that began to fail")
    bisect_timeout_s: float = Field(600, gt=0, description="seconds for one `git bisect run`")
    notify_block: str | None = Field(
        None, description="a saved Prefect notification block for thresholds, regressions and "
        "reverts; None = approval.notify_block")

    @model_validator(mode="after")
    def _max_above_interval(self) -> EvolutionConfig:
        if self.max_interval_s < self.interval_s:
            raise ValueError(f"max_interval_s ({self.max_interval_s}) must not be below "
                             f"interval_s ({self.interval_s})")
        return self
