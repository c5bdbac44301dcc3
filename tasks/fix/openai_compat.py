"""The OpenAI-compatible fixer: any chat-completions server with tool calls (``openai`` SDK).

Works with OpenAI itself and with local or hosted servers that speak the
same API (vLLM, llama.cpp's server, Ollama, LiteLLM ...). One request per
proposal::

    client.chat.completions.create(
        model=..., max_tokens=..., temperature=...,
        messages=[{"role": "system", "content": SYSTEM_PROMPT},
                  {"role": "user", "content": <context + instruction>}],
        tools=[{"type": "function", "function": {"name": "propose_fix",
                                                 "parameters": <the propose_fix schema>}}],
        tool_choice={"type": "function", "function": {"name": "propose_fix"}})

and ``choices[0].message.tool_calls[0].function.arguments`` is decoded as the
``propose_fix`` input. The client is made with ``max_retries=0``: Prefect's
task retries are the retry layer (:func:`mendflow.tasks.fix.propose_patch`).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from mendflow.core.config import OpenAICompatibleFixerConfig
from mendflow.core.errors import ConfigError
from mendflow.infra.budget import Budget, Usage
from mendflow.tasks.fix.llm import LLMFixer, ModelAnswer, translate_sdk_error
from mendflow.tasks.fix.llm_protocol import (
    OPENAI_PROPOSE_FIX_TOOL,
    OPENAI_TOOL_CHOICE,
    SYSTEM_PROMPT,
    TOOL_NAME,
)

if TYPE_CHECKING:
    import openai


def make_openai_client(config: OpenAICompatibleFixerConfig, *,
                       strict_validation: bool = False) -> openai.OpenAI:
    """Make the SDK client from the config; the key is read from ``config.api_key_env``.

    Args:
        config: the fixer config.
        strict_validation: reject response bodies that do not match the API's types.

    Returns:
        An ``openai.OpenAI`` client with ``max_retries=0`` and the configured timeout.

    Raises:
        ConfigError: the environment variable is not set.
    """
    key = os.environ.get(config.api_key_env, "").strip()
    if not key:
        raise ConfigError(
            f"the environment variable {config.api_key_env} is not set",
            subject="fixer.api_key_env",
            hint=f"export {config.api_key_env}=... (any non-empty value for a server "
                 "without authentication)",
        )
    import openai  # the SDK only when a mission uses this fixer

    return openai.OpenAI(base_url=config.base_url, api_key=key, max_retries=0,
                         timeout=config.timeout_s, _strict_response_validation=strict_validation)


class OpenAICompatibleFixer(LLMFixer):
    """Proposes fixes through an OpenAI-compatible chat-completions API.

    Args:
        config: the ``fixer`` section (``type: openai-compatible``).
        budget: a budget to charge; None = the mission's (keyed by ``Sandbox.mission_id``).
        client: a ready SDK client; None = made on first use.
    """

    name = "openai-compatible"
    config_type = OpenAICompatibleFixerConfig

    def __init__(self, config: OpenAICompatibleFixerConfig, *, budget: Budget | None = None,
                 client: openai.OpenAI | None = None):
        super().__init__(config.policy, config.budget, budget, state_dir=config.state_dir,
                         max_context_chars=config.context_chars)
        self.config = config
        self._client = client

    @property
    def subject(self) -> str:
        return f"openai-compatible ({self.config.model} at {self.config.base_url})"

    @property
    def client(self) -> openai.OpenAI:
        """The SDK client, made on first use.

        Raises:
            ConfigError: the API key variable is not set.
        """
        if self._client is None:
            self._client = make_openai_client(self.config)
        return self._client

    def _call(self, user_text: str) -> ModelAnswer:
        import openai

        client = self.client
        try:
            completion = client.chat.completions.create(  # type: ignore[call-overload]
                model=self.config.model, max_tokens=self.config.max_tokens,
                temperature=(openai.NOT_GIVEN if self.config.temperature is None
                             else self.config.temperature),
                messages=[{"role": "system", "content": SYSTEM_PROMPT},
                          {"role": "user", "content": user_text}],
                tools=[OPENAI_PROPOSE_FIX_TOOL],
                tool_choice=OPENAI_TOOL_CHOICE,
            )
        except (openai.APIError, json.JSONDecodeError) as exc:
            raise translate_sdk_error(exc, openai, subject=self.subject,
                                      cap_s=self.config.max_retry_after_s,
                                      secret=client.api_key) from None
        usage = completion.usage
        cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", 0) or 0
        counted = Usage(
            input_tokens=max((usage.prompt_tokens or 0) - cached, 0) if usage else 0,
            output_tokens=(usage.completion_tokens or 0) if usage else 0,
            cache_read_input_tokens=cached,
        )
        choice = completion.choices[0] if completion.choices else None
        calls = (choice.message.tool_calls or []) if choice and choice.message else []
        for call in calls:
            function = getattr(call, "function", None)
            if function is not None and function.name == TOOL_NAME:
                try:
                    return ModelAnswer(json.loads(function.arguments or ""), counted)
                except json.JSONDecodeError as err:
                    return ModelAnswer(None, counted, f"the tool arguments are not JSON: {err}")
        reason = choice.finish_reason if choice else "no choices"
        return ModelAnswer(None, counted, f"finish_reason={reason}")
