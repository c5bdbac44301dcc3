"""mendflow's one validated configuration.

A mission is configured by one YAML file (``--config FILE``) validated by
:class:`MendflowConfig`. Every model forbids unknown fields, so a misspelled
key is an error that names the field, never a silently ignored setting.
Backends are chosen by a ``type`` discriminator. Command-line options
override single fields after loading.

Example::

    environment:
      type: managed-venv
    tools:
      pytest: {per_test_timeout_s: 60}
      mypy: {enabled: false}
    gates:
      coverage_tolerance: 0.1
    mission:
      max_iterations: 3
      target_score: 90
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mendflow.errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- the target's Python environment -------------------------------------------------


class ManagedVenv(Section):
    """A venv that mendflow creates and caches per repository and dependency-file hash."""

    type: Literal["managed-venv"] = "managed-venv"
    base_python: str = Field("python3", description="interpreter used to create the venv")
    install: list[str] | None = Field(
        None,
        description="pip arguments that install the target, run in the sandbox; "
        "None = auto: `-e .` (plus test extras/requirements found) when the repo is installable",
    )
    extra_packages: list[str] = Field(
        default_factory=list, description="more packages to install (for example plugins)"
    )
    install_timeout_s: float = Field(1800, gt=0, description="seconds for all installs")


class Interpreter(Section):
    """An existing interpreter that already has the target's dependencies."""

    type: Literal["interpreter"] = "interpreter"
    python: str = Field(description="path to the python executable")


EnvironmentConfig = Annotated[ManagedVenv | Interpreter, Field(discriminator="type")]


# --- tools -------------------------------------------------------------------------


class PytestConfig(Section):
    enabled: bool = True
    args: list[str] = Field(default_factory=list, description="extra pytest arguments")
    per_test_timeout_s: float = Field(120, gt=0, description="pytest-timeout per test, seconds")
    run_timeout_s: float = Field(1800, gt=0, description="whole test run, seconds; kills the group")
    slow_test_s: float = Field(5.0, gt=0, description="a passing test slower than this is a finding")


class CoverageConfig(Section):
    enabled: bool = True
    min_file_percent: float = Field(
        50.0, ge=0, le=100, description="a source file below this line coverage is a finding"
    )


class LinterConfig(Section):
    enabled: bool = True
    args: list[str] = Field(default_factory=list, description="extra arguments")
    timeout_s: float = Field(600, gt=0, description="seconds before the process group is killed")


class BanditConfig(LinterConfig):
    min_severity: Literal["low", "medium", "high"] = "low"


class TodoConfig(Section):
    enabled: bool = True
    markers: list[str] = Field(default_factory=lambda: ["TODO", "FIXME", "XXX", "HACK"])


class ToolsConfig(Section):
    pytest: PytestConfig = PytestConfig()
    coverage: CoverageConfig = CoverageConfig()
    ruff: LinterConfig = LinterConfig()
    mypy: LinterConfig = LinterConfig()
    bandit: BanditConfig = BanditConfig()
    todo: TodoConfig = TodoConfig()


# --- fixers ------------------------------------------------------------------------


class RuffFixerConfig(Section):
    """The offline, deterministic fixer: ruff's safe autofixes, one patch per rule."""

    type: Literal["ruff"] = "ruff"
    unsafe_fixes: bool = Field(False, description="also apply ruff's unsafe fixes (not advised)")


LLMCategory = Literal["syntax", "import", "type", "attribute", "logic", "api", "config",
                      "security", "test", "other"]
"""The categories a model may give a fix (the ``propose_fix`` tool's ``analysis.category``)."""

DEFAULT_LLM_DENYLIST = (
    ".git/**", ".env*", "**/.env*", "secrets/**", ".github/**", ".gitlab-ci.yml",
    ".circleci/**", "Jenkinsfile", ".travis.yml", "azure-pipelines.yml",
)


class LLMPolicy(Section):
    """What a model-proposed patch may do, checked before it is validated."""

    min_confidence: Literal["high", "medium", "low"] = Field(
        default="medium", description="decline a fix the model rates below this confidence"
    )
    allowed_categories: list[LLMCategory] | None = Field(
        default=None, description="fix only these categories of root cause; None = all"
    )
    denied_categories: list[LLMCategory] = Field(
        default_factory=list, description="never fix these categories of root cause"
    )
    denylist: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LLM_DENYLIST),
        description="globs (POSIX, relative to the repository root) that no patch may touch "
        "and no prompt may quote",
    )
    max_edit_bytes: int = Field(
        default=20000, gt=0,
        description="bytes of search + replace text one reply may hold, in total",
    )
    max_attempts: int = Field(
        default=3, ge=1, le=10,
        description="proposals per group at most (the repair loop bound)",
    )


class LLMBudget(Section):
    """Spending limits of one mission's model calls; None = no limit."""

    max_llm_calls_per_hour: int | None = Field(
        default=60, ge=1, description="calls in any sliding hour (retries count)"
    )
    max_input_tokens: int | None = Field(
        default=2_000_000, ge=1,
        description="input tokens in the whole mission (cache writes and reads included)",
    )
    max_output_tokens: int | None = Field(
        default=200_000, ge=1, description="output tokens in the whole mission"
    )
    max_cost_usd: float | None = Field(
        default=None, gt=0,
        description="estimated USD spent in the whole mission, from the prices below",
    )
    input_price_per_mtok: float = Field(
        default=3.0, ge=0, description="USD per million input tokens"
    )
    output_price_per_mtok: float = Field(
        default=15.0, ge=0, description="USD per million output tokens"
    )

    @model_validator(mode="after")
    def _cost_needs_prices(self) -> LLMBudget:
        if self.max_cost_usd is not None and (
            self.input_price_per_mtok <= 0 or self.output_price_per_mtok <= 0
        ):
            raise ValueError("max_cost_usd needs input_price_per_mtok and "
                             "output_price_per_mtok greater than 0")
        return self


class AnthropicFixerConfig(Section):
    """Claude through Anthropic's Messages API (the official ``anthropic`` SDK)."""

    type: Literal["anthropic"] = "anthropic"
    model: str = Field(default="claude-sonnet-4-6", min_length=1, description="the model name")
    max_tokens: int = Field(
        default=4096, ge=1, le=64000, description="output tokens per reply at most"
    )
    temperature: float | None = Field(
        default=None, ge=0, le=1,
        description="sampling temperature; None = the model's default. anthropic SDK 2.x has "
        "no temperature argument (recent models fix it), so a value is sent as an extra body "
        "field: set it only for models that accept it",
    )
    credentials_block: str | None = Field(
        default=None,
        description="name of a saved AnthropicCredentials block; None = ANTHROPIC_API_KEY",
    )
    base_url: str | None = Field(
        default=None, description="API root without /v1; None = the block's, ANTHROPIC_BASE_URL, "
        "or the SDK default"
    )
    timeout_s: float = Field(default=120, gt=0, description="seconds for one HTTP call")
    max_retry_after_s: float = Field(
        default=60, ge=0,
        description="wait at most this many seconds when the API says retry-after",
    )
    policy: LLMPolicy = LLMPolicy()
    budget: LLMBudget = LLMBudget()


class OpenAICompatibleFixerConfig(Section):
    """Any server speaking OpenAI's chat-completions API with tool calls (the ``openai`` SDK)."""

    type: Literal["openai-compatible"] = "openai-compatible"
    base_url: str = Field(description="API root ending with /v1, e.g. http://localhost:8000/v1")
    model: str = Field(min_length=1, description="the model name the server knows")
    api_key_env: str = Field(
        default="OPENAI_API_KEY", min_length=1,
        description="environment variable holding the API key (any value for servers without auth)",
    )
    max_tokens: int = Field(default=4096, ge=1, description="output tokens per reply at most")
    temperature: float | None = Field(
        default=0.0, ge=0, le=2,
        description="sampling temperature; None = not sent (the server's default)",
    )
    timeout_s: float = Field(default=120, gt=0, description="seconds for one HTTP call")
    max_retry_after_s: float = Field(
        default=60, ge=0,
        description="wait at most this many seconds when the API says retry-after",
    )
    policy: LLMPolicy = LLMPolicy()
    budget: LLMBudget = LLMBudget()

    @model_validator(mode="after")
    def _base_url_has_v1(self) -> OpenAICompatibleFixerConfig:
        if not self.base_url.rstrip("/").endswith("/v1"):
            raise ValueError(f"base_url must end with /v1 (the openai SDK appends "
                             f"/chat/completions to it), got {self.base_url!r}")
        return self


ChainableFixerConfig = Annotated[
    RuffFixerConfig | AnthropicFixerConfig | OpenAICompatibleFixerConfig,
    Field(discriminator="type"),
]


class ChainFixerConfig(Section):
    """Several fixers in order: each handles what the ones before it did not plan.

    The usual chain is ``[{type: ruff}, {type: anthropic}]``: offline fixes
    first, then Claude for what is left.
    """

    type: Literal["chain"] = "chain"
    fixers: list[ChainableFixerConfig] = Field(
        min_length=1, description="the fixers, in order (a chain cannot contain a chain)"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nested_chain(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for item in data.get("fixers") or ():
                if isinstance(item, dict) and item.get("type") == "chain":
                    raise ValueError("a chain cannot contain another chain; list its fixers")
        return data


FixerConfig = Annotated[
    RuffFixerConfig | AnthropicFixerConfig | OpenAICompatibleFixerConfig | ChainFixerConfig,
    Field(discriminator="type"),
]


# --- validation gates ----------------------------------------------------------------


class GatesConfig(Section):
    """When a patch is accepted. Every gate must pass."""

    coverage_tolerance: float = Field(
        0.1, ge=0, le=100, description="percentage points total coverage may drop by (float noise)"
    )
    allow_test_changes: bool = Field(False, description="may a patch touch test files?")
    test_globs: list[str] = Field(
        default_factory=lambda: ["tests/**", "test/**", "**/test_*.py", "**/*_test.py", "**/conftest.py"],
        description="what counts as a test file",
    )


# --- the mission ----------------------------------------------------------------------


class MissionConfig(Section):
    max_iterations: int = Field(3, ge=1, le=1000, description="M-T-D-V cycles at most")
    target_score: float = Field(95.0, ge=0, le=100, description="stop once the score reaches this")
    max_patches_per_iteration: int = Field(25, ge=1, description="candidates validated per cycle")
    scope: Literal["auto", "project", "directory", "file"] = "auto"
    dry_run: bool = False
    backup_only: bool = False
    report_dir: Path | None = Field(None, description="default: <state dir>/missions/<id>/report")
    state_dir: Path | None = Field(None, description="default: $MENDFLOW_HOME or ~/.mendflow")
    keep_worktree: bool = Field(True, description="keep the sandbox worktree after the mission")
    max_wall_time_s: float | None = Field(
        None, gt=0, description="stop cleanly (resumable) once a run has lasted this long, seconds")

    @model_validator(mode="after")
    def _modes_exclusive(self) -> MissionConfig:
        if self.dry_run and self.backup_only:
            raise ValueError("dry_run and backup_only cannot both be set")
        return self


class ScoreConfig(Section):
    """Weights of the 0-100 quality score (see README, 'Quality score')."""

    tests_weight: float = Field(40, ge=0)
    coverage_weight: float = Field(20, ge=0)
    findings_weight: float = Field(40, ge=0)
    findings_half_density: float = Field(
        10.0, gt=0, description="weighted findings per 1000 lines at which the findings part halves"
    )


# --- durability: adaptive timeouts and health checks ----------------------------------

HISTORY_SIZE = 50
"""Durations kept per repository and step for adaptive timeouts (the newest ones)."""


class TimeoutsConfig(Section):
    """Adaptive tool timeouts, learned from the durations of earlier runs on the same repository.

    The timeout of a step (pytest, ruff, mypy, bandit, llm ...) is
    ``clamp(percentile(history, percentile) * factor, floor_s, ceiling_s)``; with
    fewer than ``min_samples`` recorded durations the configured timeout is used,
    clamped the same way. The history lives in mendflow's state directory.
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
    ceiling_s: float = Field(7200, gt=0, description="a timeout is never longer than this, seconds")
    min_samples: int = Field(
        3, ge=1, le=HISTORY_SIZE,
        description=f"recorded durations needed before the history is used (at most {HISTORY_SIZE})",
    )

    @model_validator(mode="after")
    def _floor_below_ceiling(self) -> TimeoutsConfig:
        if self.floor_s > self.ceiling_s:
            raise ValueError(f"floor_s ({self.floor_s}) must not exceed ceiling_s ({self.ceiling_s})")
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


class MendflowConfig(Section):
    """The whole configuration of a mission."""

    environment: EnvironmentConfig = ManagedVenv()
    tools: ToolsConfig = ToolsConfig()
    fixer: FixerConfig = RuffFixerConfig()
    gates: GatesConfig = GatesConfig()
    mission: MissionConfig = MissionConfig()
    score: ScoreConfig = ScoreConfig()
    approval: ApprovalConfig = ApprovalConfig()
    deployment: DeploymentConfig = DeploymentConfig()
    timeouts: TimeoutsConfig = TimeoutsConfig()
    health: HealthConfig = HealthConfig()

    def with_overrides(self, **mission_fields: Any) -> MendflowConfig:
        """Return a copy with ``mission`` fields replaced (None values are ignored).

        Raises:
            ConfigError: an override has a wrong value.
        """
        changes = {k: v for k, v in mission_fields.items() if v is not None}
        if not changes:
            return self
        data = self.model_dump(mode="python")
        data["mission"].update(changes)
        return validate_config(data, source="command-line options")

    def with_fixer(self, kind: str | None) -> MendflowConfig:
        """Return a copy whose fixer is of type ``kind`` (``--fixer``).

        The configured fixer section is kept when it already has that type;
        otherwise the type's defaults are used. ``chain`` means the offline
        ruff fixer first, then Claude for what is left.

        Raises:
            ConfigError: unknown type, or a type that needs settings the config lacks.
        """
        if kind is None or getattr(self.fixer, "type", None) == kind:
            return self
        sections: dict[str, Any] = {
            "ruff": {"type": "ruff"},
            "anthropic": {"type": "anthropic"},
            "chain": {"type": "chain", "fixers": [{"type": "ruff"}, {"type": "anthropic"}]},
        }
        if kind not in sections:
            hint = ("configure `fixer: {type: openai-compatible, base_url: ..., model: ...}` "
                    "in the config file" if kind == "openai-compatible"
                    else f"use one of: {', '.join(sections)}")
            raise ConfigError(f"--fixer {kind!r} cannot be chosen on the command line",
                              subject="--fixer", hint=hint)
        data = self.model_dump(mode="python")
        data["fixer"] = sections[kind]
        return validate_config(data, source="--fixer")


def _format_validation(err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown field '{loc}'")
        else:
            lines.append(f"'{loc}': {item['msg']}")
    return "; ".join(lines)


def validate_config(data: Any, *, source: str = "config") -> MendflowConfig:
    """Validate a mapping as a :class:`MendflowConfig`.

    Args:
        data: the parsed YAML mapping (or None for all defaults).
        source: what to name in error messages (a file path or "command-line options").

    Returns:
        The validated, frozen config.

    Raises:
        ConfigError: a field is unknown or has a wrong value; the message names the field.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping, not {type(data).__name__}",
            subject=source,
            hint="see the 'Configuration' section of the README",
        )
    try:
        return MendflowConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(
            _format_validation(err), subject=source, hint="fix or remove the field named above"
        ) from None


def load_config(path: Path | str | None) -> MendflowConfig:
    """Load and validate a YAML config file.

    Args:
        path: the YAML file, or None for the embedded defaults.

    Returns:
        The validated config.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, or not a valid config.
    """
    if path is None:
        return MendflowConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", subject=str(path),
                          hint="pass an existing file to --config") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file: {err}", subject=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"not valid YAML{where}: {problem}", subject=str(path),
                          hint="fix the YAML syntax") from None
    return validate_config(data, source=str(path))
