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
from pydantic import Field, ValidationError, model_validator

from mendflow.core.config_base import Section
from mendflow.core.config_evolution import (  # noqa: F401  (re-exported)
    DeliveryConfig,
    EvolutionConfig,
)
from mendflow.core.config_fixers import (  # noqa: F401  (re-exported: the config's public names)
    COMMAND_LINE_FIXERS,
    DEFAULT_LLM_DENYLIST,
    FIXER_TYPES,
    AnthropicFixerConfig,
    ChainableFixerConfig,
    ChainFixerConfig,
    FixerConfig,
    LLMBudget,
    LLMCategory,
    LLMPolicy,
    OpenAICompatibleFixerConfig,
    RuffFixerConfig,
    fixer_section,
)
from mendflow.core.config_heal import HealConfig, LogsConfig
from mendflow.core.config_learning import LearningConfig, StrategyConfig  # noqa: F401
from mendflow.core.config_ops import (  # noqa: F401  (re-exported)
    HISTORY_SIZE,
    ApprovalConfig,
    AutonomyLevel,
    DeploymentConfig,
    HealthConfig,
    TimeoutsConfig,
)
from mendflow.core.config_sandbox import SandboxConfig, SandboxLimits  # noqa: F401  (re-exported)
from mendflow.core.config_validation import ValidationConfig  # noqa: F401  (re-exported)
from mendflow.core.errors import ConfigError, MendflowError
from mendflow.core.models import Category

# --- the target's Python environment -------------------------------------------------


class ManagedVenv(Section):
    """A venv that mendflow creates and caches per repository and dependency-file hash."""

    type: Literal["managed-venv"] = "managed-venv"
    base_python: str = Field("python3", description="interpreter used to create the venv")
    install: list[str] | None = Field(
        None,
        description="pip arguments that install the target, run in the sandbox; "
        "None = auto: `-e .` (plus test extras/requirements found) when the repo is installable, "
        "and the test dependency group (`--group`)",
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
    per_test_timeout_s: float = Field(
        120, gt=0, description="a test's second chance, seconds: a test that hits its first "
                               "timeout runs again alone with this one; past it, it hangs")
    first_timeout_s: float = Field(
        2.0, gt=0, description="pytest-timeout per test in the whole-suite run, seconds")
    hang_timeout_s: float = Field(
        1.0, gt=0, description="validation: a test that hung at baseline runs with this "
                               "timeout, seconds, and gets no second chance")
    learned_timeout_factor: float = Field(
        3.0, ge=1, description="validation: a test that passed at baseline in d seconds runs "
                               "with max(first_timeout_s, factor x d), at most per_test_timeout_s")
    second_chance_workers: int = Field(
        32, ge=1, le=256, description="second chances run at once (one pytest process each)")
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
    logs: LogsConfig = LogsConfig()


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
    fix_categories: list[Category] | None = Field(
        None, description="finding categories the fixer is given (the others are measured, "
        "never attempted); None = all. The evolution loop sets it from evolution.generate")

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
    validation: ValidationConfig = ValidationConfig()
    heal: HealConfig = HealConfig()
    sandbox: SandboxConfig = SandboxConfig()
    learning: LearningConfig = LearningConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    evolution: EvolutionConfig = EvolutionConfig()

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
        otherwise the section the type's class declares for the command line
        (``command_line``) is used. ``chain`` means the offline ruff fixer first,
        then Claude for what is left.

        Raises:
            ConfigError: unknown type, or a type that needs settings the config lacks
                (the hints are derived from the :data:`FixerConfig` union).
        """
        if kind is None or getattr(self.fixer, "type", None) == kind:
            return self
        section = fixer_section(kind)
        chosen = getattr(section, "command_line", None)
        if chosen is None:
            hint = getattr(section, "command_line_hint", "") or \
                f"use one of: {', '.join(COMMAND_LINE_FIXERS)}"
            raise ConfigError(f"--fixer {kind!r} cannot be chosen on the command line",
                              subject="--fixer", hint=hint)
        data = self.model_dump(mode="python")
        data["fixer"] = chosen
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


def read_yaml(path: Path | str, *, error: type[MendflowError] = ConfigError,
              what: str = "config file", hint: str = "pass an existing file to --config") -> Any:
    """Read a YAML file (not yet validated), with one clear error for each way it can fail.

    Args:
        path: the YAML file.
        error: the error class to raise (a config file, a fleet file ...).
        what: how messages name the file ("config file", "fleet file").
        hint: what to do when the file does not exist.

    Returns:
        The parsed YAML (None for an empty file).

    Raises:
        MendflowError: ``error``: the file is missing, unreadable or not YAML (the
            message gives the line and column of a syntax error).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} not found", subject=str(path), hint=hint) from None
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"cannot read {what}: {err}", subject=str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise error(f"not valid YAML{where}: {problem}", subject=str(path),
                    hint="fix the YAML syntax") from None


def load_config_data(path: Path | str) -> Any:
    """Read a YAML config file (not yet validated); see :func:`read_yaml`.

    Raises:
        ConfigError: the file is missing, unreadable or not YAML.
    """
    return read_yaml(path)


def load_config(path: Path | str | None) -> MendflowConfig:
    """Load and validate one YAML config file (no discovery; see
    :func:`mendflow.core.config_sources.effective_config` for a repository's sources).

    Args:
        path: the YAML file, or None for the embedded defaults.

    Returns:
        The validated config.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, or not a valid config.
    """
    if path is None:
        return MendflowConfig()
    return validate_config(load_config_data(path), source=str(path))
