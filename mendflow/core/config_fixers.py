"""Config sections of the fixers: ruff (offline), Anthropic, OpenAI-compatible, chains.

Part of the one validated config; import them from :mod:`mendflow.core.config`.

The union :data:`FixerConfig` is the one list of fixer types. Each section
declares its ``type`` Literal, whether its fixer runs model-written code
(``runs_model_code``) and what ``--fixer TYPE`` selects (``command_line``); the
fixer registry (:func:`mendflow.tasks.fix.build_fixer`), the CLI's ``--fixer``
choices and the unknown-type hints are derived from it (:data:`FIXER_TYPES`,
:data:`COMMAND_LINE_FIXERS`). Adding a fixer is one section here, added to the
union, plus one ``Fixer`` subclass whose ``config_type`` is that section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import Field, model_validator

from mendflow.core.config_base import Section

# --- fixers ------------------------------------------------------------------------


class RuffFixerConfig(Section):
    """The offline, deterministic fixer: ruff's safe autofixes, one patch per rule."""

    runs_model_code: ClassVar[bool] = False
    command_line: ClassVar[dict[str, Any] | None] = {"type": "ruff"}
    """The section ``--fixer TYPE`` selects; None when the type needs settings of a file."""
    command_line_hint: ClassVar[str] = ""
    """Why ``--fixer TYPE`` cannot select it (when ``command_line`` is None)."""

    type: Literal["ruff"] = "ruff"
    unsafe_fixes: bool = Field(False, description="also apply ruff's unsafe fixes (not advised)")


LLMCategory = Literal["syntax", "import", "type", "attribute", "logic", "api", "config",
                      "security", "test", "other", "external"]
"""The categories a model may give a fix (the ``propose_fix`` tool's ``analysis.category``)."""

DEFAULT_LLM_DENYLIST = (
    ".git/**", ".env*", "**/.env*", "secrets/**", ".github/**", ".gitlab-ci.yml",
    ".circleci/**", "Jenkinsfile", ".travis.yml", "azure-pipelines.yml",
    "*.pem", "**/*.pem", "*.key", "**/*.key", "id_*", "**/id_*",
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


class LLMFixerSection(Section):
    """What every model-backed fixer shares: call timeouts, the policy and the budget."""

    runs_model_code: ClassVar[bool] = True
    command_line: ClassVar[dict[str, Any] | None] = None
    command_line_hint: ClassVar[str] = ""

    timeout_s: float = Field(
        default=120, gt=0,
        description="seconds for one HTTP call; with adaptive timeouts (the timeouts section) "
        "a mission replaces it by one learned from this repository's past calls",
    )
    max_retry_after_s: float = Field(
        default=60, ge=0,
        description="wait at most this many seconds when the API says retry-after",
    )
    context_chars: int = Field(
        default=24000, ge=1000,
        description="characters of context (findings, feedback, source snippets) sent per call; "
        "a strategy variant of the learning section may use a smaller or larger context",
    )
    policy: LLMPolicy = LLMPolicy()
    budget: LLMBudget = LLMBudget()
    state_dir: Path | None = Field(
        default=None,
        description="mendflow's state directory, where the wall time of each successful call "
        "is recorded for adaptive timeouts; set by the mission from mission.state_dir "
        "(None = $MENDFLOW_HOME or ~/.mendflow)",
    )


class AnthropicFixerConfig(LLMFixerSection):
    """Claude through Anthropic's Messages API (the official ``anthropic`` SDK)."""

    command_line: ClassVar[dict[str, Any] | None] = {"type": "anthropic"}

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


class OpenAICompatibleFixerConfig(LLMFixerSection):
    """Any server speaking OpenAI's chat-completions API with tool calls (the ``openai`` SDK)."""

    command_line_hint: ClassVar[str] = (
        "configure `fixer: {type: openai-compatible, base_url: ..., model: ...}` in the "
        "config file")

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

    runs_model_code: ClassVar[bool] = False
    """The chain itself writes nothing; see :func:`runs_model_code` for its members."""
    command_line: ClassVar[dict[str, Any] | None] = {
        "type": "chain", "fixers": [{"type": "ruff"}, {"type": "anthropic"}]}
    command_line_hint: ClassVar[str] = ""

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


FIXER_CONFIGS: tuple[type[Section], ...] = get_args(get_args(FixerConfig)[0])
"""The fixer sections of the :data:`FixerConfig` union, in its order."""


def fixer_type(section: type[Section]) -> str:
    """The ``type`` Literal of a fixer section (``RuffFixerConfig`` -> ``"ruff"``)."""
    (value,) = get_args(section.model_fields["type"].annotation)
    return value


FIXER_TYPES: tuple[str, ...] = tuple(fixer_type(c) for c in FIXER_CONFIGS)
"""Every fixer type, in the union's order: ``ruff``, ``anthropic``, ``openai-compatible``, ``chain``."""

COMMAND_LINE_FIXERS: tuple[str, ...] = tuple(
    fixer_type(c) for c in FIXER_CONFIGS if getattr(c, "command_line", None) is not None)
"""The types ``--fixer`` accepts (those that need no settings from a file)."""


def command_line_help() -> str:
    """The ``--fixer`` help text: the choosable types, then the others (from the union)."""
    others = [t for t in FIXER_TYPES if t not in COMMAND_LINE_FIXERS]
    return (f"{' | '.join(COMMAND_LINE_FIXERS)} (overrides fixer.type; chain = ruff, then "
            f"Claude){'; ' + ', '.join(others) + ': set in the config file' if others else ''}")


def fixer_section(kind: str) -> type[Section] | None:
    """The section class of a fixer type, or None for an unknown type."""
    return next((c for c in FIXER_CONFIGS if fixer_type(c) == kind), None)


def fixer_members(fixer: Section) -> list[Section]:
    """The fixer sections that answer for ``fixer``: a chain's members, else itself."""
    return list(getattr(fixer, "fixers", None) or [fixer])


def runs_model_code(fixer: Section) -> bool:
    """Does this fixer section produce model-written code (itself or a member of its chain)?"""
    return any(getattr(member, "runs_model_code", False) for member in fixer_members(fixer))
