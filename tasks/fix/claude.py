"""The Claude fixer: Anthropic's Messages API through the official ``anthropic`` SDK.

One request per proposal::

    client.messages.create(
        model=..., max_tokens=...,
        system=[{"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}],
        tools=[PROPOSE_FIX_TOOL], tool_choice={"type": "tool", "name": "propose_fix"},
        messages=[{"role": "user", "content": <context + instruction>}])

The client is made with ``max_retries=0`` (Prefect's task retries are the
one retry layer, see :func:`mendflow.tasks.fix.propose_patch`) and an explicit
timeout. The API key comes from an ``AnthropicCredentials`` block or
``ANTHROPIC_API_KEY`` (:func:`mendflow.blocks.credentials.resolve_anthropic_key`); it
is only ever put in the request's auth headers.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from mendflow.blocks.credentials import resolve_anthropic_key
from mendflow.core.config import AnthropicFixerConfig
from mendflow.infra.budget import Budget, Usage
from mendflow.tasks.fix.llm import (
    LLMFixer,
    ModelAnswer,
    translate_sdk_error,
)
from mendflow.tasks.fix.llm_protocol import ANTHROPIC_TOOL_CHOICE, PROPOSE_FIX_TOOL, SYSTEM_PROMPT, TOOL_NAME

if TYPE_CHECKING:
    import anthropic

__all__ = ["ClaudeFixer", "make_anthropic_client"]

SYSTEM_BLOCKS: list[dict[str, Any]] = [
    {"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}},
]


def make_anthropic_client(config: AnthropicFixerConfig, api_key: SecretStr,
                          base_url: str | None = None, *,
                          strict_validation: bool = False) -> anthropic.Anthropic:
    """Make the SDK client: no SDK retries, the configured timeout.

    Args:
        config: the fixer config (``timeout_s``).
        api_key: the API key; sent as ``Authorization: Bearer`` and ``x-api-key``.
        base_url: the API root without ``/v1``; None = the SDK default.
        strict_validation: reject response bodies that do not match the API's
            types (tests use it to hold the fake server to the real format).

    Returns:
        An ``anthropic.Anthropic`` client.
    """
    import anthropic  # the SDK only when a mission uses this fixer

    key = api_key.get_secret_value()
    return anthropic.Anthropic(api_key=key, base_url=base_url, max_retries=0,
                               timeout=config.timeout_s, default_headers={"x-api-key": key},
                               _strict_response_validation=strict_validation)


class ClaudeFixer(LLMFixer):
    """Proposes fixes with Claude (see the module docstring for the request).

    Args:
        config: the ``fixer`` section (``type: anthropic``).
        budget: a budget to charge; None = the mission's (keyed by ``Sandbox.mission_id``).
        client: a ready SDK client; None = made on first use from the
            credentials (block, else environment).
    """

    name = "anthropic"
    config_type = AnthropicFixerConfig

    def __init__(self, config: AnthropicFixerConfig, *, budget: Budget | None = None,
                 client: anthropic.Anthropic | None = None):
        super().__init__(config.policy, config.budget, budget, state_dir=config.state_dir,
                         max_context_chars=config.context_chars)
        self.config = config
        self._client = client

    @property
    def subject(self) -> str:
        return f"anthropic ({self.config.model})"

    @property
    def client(self) -> anthropic.Anthropic:
        """The SDK client, made on first use.

        Raises:
            ConfigError: no API key is configured.
        """
        if self._client is None:
            key, base_url = resolve_anthropic_key(self.config)
            self._client = make_anthropic_client(self.config, key, base_url)
        return self._client

    def _extra_body(self) -> dict[str, Any] | None:
        # anthropic SDK 2.x dropped the `temperature` argument; older models still take it.
        if self.config.temperature is None:
            return None
        return {"temperature": self.config.temperature}

    def _call(self, user_text: str) -> ModelAnswer:
        import anthropic

        client = self.client
        try:
            message = client.messages.create(  # type: ignore[call-overload]
                model=self.config.model, max_tokens=self.config.max_tokens, system=SYSTEM_BLOCKS,
                tools=[PROPOSE_FIX_TOOL],
                tool_choice=ANTHROPIC_TOOL_CHOICE,
                messages=[{"role": "user", "content": user_text}],
                extra_body=self._extra_body(),
            )
        except (anthropic.APIError, json.JSONDecodeError) as exc:
            raise translate_sdk_error(exc, anthropic, subject=self.subject,
                                      cap_s=self.config.max_retry_after_s,
                                      secret=client.api_key) from None
        usage = message.usage
        counted = Usage(
            input_tokens=(usage.input_tokens or 0) if usage else 0,
            output_tokens=(usage.output_tokens or 0) if usage else 0,
            cache_creation_input_tokens=(usage.cache_creation_input_tokens or 0) if usage else 0,
            cache_read_input_tokens=(usage.cache_read_input_tokens or 0) if usage else 0,
        )
        for block in message.content or ():
            if getattr(block, "type", None) == "tool_use" and getattr(block, "name", None) == TOOL_NAME:
                return ModelAnswer(block.input, counted)  # type: ignore[union-attr]
        note = f"stop_reason={message.stop_reason}"
        if message.stop_reason == "max_tokens":
            note += "; the reply was cut: raise max_tokens"
        return ModelAnswer(None, counted, note)
