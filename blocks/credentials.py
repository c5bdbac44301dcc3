"""Credentials for the model APIs, kept in Prefect blocks rather than in config files.

Save a key once (it is stored encrypted-at-rest as a secret field by Prefect
and shown masked in the UI)::

    from pydantic import SecretStr
    from mendflow.blocks.credentials import AnthropicCredentials
    AnthropicCredentials(api_key=SecretStr("sk-ant-...")).save("anthropic", overwrite=True)

then name it in the config: ``fixer: {type: anthropic, credentials_block: anthropic}``.
Without a block, ``ANTHROPIC_API_KEY`` (and ``ANTHROPIC_BASE_URL``) are read
from the environment. The key is only ever handed to the SDK client: it is
never logged, put in a prompt or a report, nor passed to the tools run in
the sandbox (:func:`mendflow.infra.runner.sandbox_environ` drops ``*KEY*`` names).
"""

from __future__ import annotations

import os
from typing import cast

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from mendflow.core.config import AnthropicFixerConfig
from mendflow.core.errors import ConfigError

API_KEY_ENV = "ANTHROPIC_API_KEY"
BASE_URL_ENV = "ANTHROPIC_BASE_URL"


class AnthropicCredentials(Block):
    """An Anthropic API key, and optionally the API root to use it with."""

    _block_type_name = "mendflow-anthropic-credentials"
    _description = "API key (and optional base URL) for mendflow's Claude fixer."

    api_key: SecretStr = Field(description="the Anthropic API key")
    base_url: str | None = Field(
        default=None, description="API root without /v1 (a proxy or gateway); None = default"
    )


def resolve_anthropic_key(config: AnthropicFixerConfig) -> tuple[SecretStr, str | None]:
    """Find the API key and base URL for the Claude fixer.

    Order: the named ``AnthropicCredentials`` block, else ``ANTHROPIC_API_KEY``;
    the base URL is ``config.base_url``, else the block's, else
    ``ANTHROPIC_BASE_URL``, else None (the SDK default).

    Args:
        config: the ``fixer`` section.

    Returns:
        ``(api_key, base_url)``.

    Raises:
        ConfigError: the block does not exist, or no key is configured.
    """
    block_url: str | None = None
    if config.credentials_block:
        try:
            block = cast(AnthropicCredentials,
                         AnthropicCredentials.load(config.credentials_block))
        except ValueError:
            raise ConfigError(
                "no AnthropicCredentials block of this name", subject=config.credentials_block,
                hint="create it: AnthropicCredentials(api_key=...).save(NAME), or remove "
                     "credentials_block to use ANTHROPIC_API_KEY",
            ) from None
        key = block.api_key
        block_url = block.base_url
    else:
        raw = os.environ.get(API_KEY_ENV, "").strip()
        if not raw:
            raise ConfigError(
                "no Anthropic API key configured", subject="fixer.credentials_block",
                hint=f"save an AnthropicCredentials block and name it in credentials_block, "
                     f"or set {API_KEY_ENV}",
            )
        key = SecretStr(raw)
    base_url = config.base_url or block_url or os.environ.get(BASE_URL_ENV) or None
    return key, base_url
