"""Config sections of long-running operation: adaptive timeouts, health, approval, deployment.

Part of the one validated config; import them from :mod:`mendflow.core.config`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mendflow.core.config_base import Section

# --- durability: adaptive timeouts and health checks ----------------------------------

HISTORY_SIZE = 50
"""Durations kept per repository and step for adaptive timeouts (the newest ones)."""


class TimeoutsConfig(Section):
    """Adaptive tool timeouts, learned from the durations of earlier runs on the same repository.

    The timeout of a step (pytest, ruff, mypy, bandit, llm ...) is
    ``clamp(percentile(history, percentile) * factor, floor_s, ceiling_s)``; with
    fewer than ``min_samples`` recorded durations the configured timeout is used,
    clamped the same way. A model call (step ``llm``, the fixer's ``timeout_s``)
    is never given less than ``llm_floor_s``. The history lives in mendflow's
    state directory.
    """

    adaptive: bool = Field(
        True, description="learn timeouts from past durations; false = the configured timeouts"
    )
    percentile: float = Field(
        95, gt=0, le=100, description="percentile (0-100] of the recorded durations to scale"
    )
    factor: float = Field(
        3.0, ge=1, le=100, description="the percentile is multiplied by this (>= 1: never below it)"
    )
    floor_s: float = Field(30, gt=0, description="a timeout is never shorter than this, seconds")
    llm_floor_s: float = Field(
        60, gt=0, description="a model call's learned timeout (fixer timeout_s) is never shorter "
        "than this, seconds: replies are slower and more variable than tool runs",
    )
    ceiling_s: float = Field(7200, gt=0, description="a timeout is never longer than this, seconds")
    min_samples: int = Field(
        3, ge=1, le=HISTORY_SIZE,
        description=f"recorded durations needed before the history is used (at most {HISTORY_SIZE})",
    )

    @model_validator(mode="after")
    def _floor_below_ceiling(self) -> TimeoutsConfig:
        if self.floor_s > self.ceiling_s:
            raise ValueError(f"floor_s ({self.floor_s}) must not exceed ceiling_s ({self.ceiling_s})")
        if self.llm_floor_s > self.ceiling_s:
            raise ValueError(f"llm_floor_s ({self.llm_floor_s}) must not exceed "
                             f"ceiling_s ({self.ceiling_s})")
        return self


class HealthConfig(Section):
    """Thresholds of ``mendflow doctor`` and of the checks a mission makes between cycles."""

    min_free_disk_mb: int = Field(
        1024, ge=0, description="less free disk than this (MiB) on the state dir or repository fails"
    )
    warn_free_disk_mb: int = Field(
        5120, ge=0, description="less free disk than this (MiB) is a warning"
    )
    min_free_memory_mb: int = Field(
        512, ge=0, description="less available memory than this (MiB) fails"
    )

    @model_validator(mode="after")
    def _warn_above_min(self) -> HealthConfig:
        if self.warn_free_disk_mb < self.min_free_disk_mb:
            raise ValueError(f"warn_free_disk_mb ({self.warn_free_disk_mb}) must not be below "
                             f"min_free_disk_mb ({self.min_free_disk_mb})")
        return self


# --- approval and delivery -------------------------------------------------------------

AutonomyLevel = Literal["interactive", "semi_autonomous", "autonomous", "full_autonomous"]
"""Which accepted patches need a human's approval before they reach the target branch."""


class ApprovalConfig(Section):
    """Human approval of accepted patches, and their delivery to a target branch.

    ``autonomy: null`` (the default) keeps the mission to its own branch: it
    never touches the target branch. Otherwise accepted patches are delivered
    to ``target_branch`` once approved (see deployments/README.md).
    """

    autonomy: AutonomyLevel | None = Field(
        None, description="interactive | semi_autonomous | autonomous | full_autonomous; "
        "None = prepare the mission branch only, never deliver")
    target_branch: str | None = Field(
        None, description="branch that receives approved patches; None = the branch HEAD "
        "pointed at when the mission started")
    max_changed_lines: int = Field(
        40, ge=0, description="semi_autonomous: a patch changing more lines needs approval")
    timeout_s: float = Field(86400, gt=0, description="seconds to wait for a decision")
    on_timeout: Literal["reject", "approve"] = Field(
        "reject", description="what an unanswered request becomes after timeout_s")
    notify_block: str | None = Field(
        None, description="name of a saved Prefect notification block (SlackWebhook, "
        "CustomWebhookNotificationBlock, AppriseNotificationBlock ...); None = no messages")
    push_remote: str | None = Field(
        None, description="git remote the target branch is pushed to after delivery; "
        "None = no push")
    ui_url: str | None = Field(
        None, description="Prefect UI root for links; None = PREFECT_UI_URL, else derived "
        "from PREFECT_API_URL")
    poll_interval_s: float = Field(
        5, gt=0, description="ad-hoc runs: seconds between checks whether the run was resumed")


class DeploymentConfig(Section):
    """The served mission deployment (``mendflow serve``, deployments/prefect.yaml)."""

    name: str = Field("mendflow", min_length=1,
                      description="deployment name: maintenance-mission/<name>")
    path: str = Field(".", description="the repository (or a path inside it) missions run on")
    interval_minutes: float | None = Field(
        None, gt=0, description="run a mission every N minutes; None = only on demand")
    autonomy: AutonomyLevel | None = Field(
        None, description="the deployment's autonomy parameter; None = approval.autonomy")
    heartbeat_s: int = Field(
        30, ge=30, description="seconds between a served flow run's heartbeats (Prefect's "
        "minimum is 30); a run silent for 3 heartbeats is marked Crashed by the automation "
        "`mendflow serve` installs")
    auto_resume_crashed: bool = Field(
        False, description="reschedule a run marked Crashed for missing heartbeats: the same "
        "flow run runs again and re-enters its mission through the cached steps")
    max_auto_resumes: int = Field(
        3, ge=1, description="with auto_resume_crashed: a flow run marked Crashed for missing "
        "heartbeats more often than this fails for good (CrashLoop) instead of running again; "
        "`mendflow mission resume` then starts a new flow run with a fresh count")
