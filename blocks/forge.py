"""The forge token (GitHub, GitHub Enterprise, GitLab), kept in a Prefect block.

Save it once (a secret field: encrypted at rest, masked in the UI)::

    from pydantic import SecretStr
    from mendflow.blocks.forge import ForgeToken
    ForgeToken(token=SecretStr("ghp_...")).save("github", overwrite=True)

then name it in the config: ``delivery: {token_block: github}``. Any other block
that has a ``token`` secret field serves too when named as ``TYPE-SLUG/NAME``
(for example prefect-github's ``github-credentials/NAME``). Without a block,
``GITHUB_TOKEN`` or ``GITLAB_TOKEN`` is read from the environment. The token is
handed only to the PyGithub / python-gitlab client and to ``git push`` through
an HTTP header in the environment, never logged, never put in a report.
"""

from __future__ import annotations

import os

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from mendflow.core.errors import ForgeError

TOKEN_ENV = {"github": "GITHUB_TOKEN", "gitlab": "GITLAB_TOKEN"}


class ForgeToken(Block):
    """An access token for a forge's REST API (scopes: repo / api)."""

    _block_type_name = "mendflow-forge-token"
    _description = "Access token mendflow uses to open pull requests (GitHub) or merge " \
                   "requests (GitLab)."

    token: SecretStr = Field(description="the personal or project access token")


def resolve_forge_token(forge: str, block_name: str | None) -> SecretStr:
    """Find the token for ``forge``.

    Args:
        forge: ``github`` or ``gitlab``.
        block_name: ``delivery.token_block``: a :class:`ForgeToken` name, or
            ``TYPE-SLUG/NAME`` of any block with a ``token`` field; None = environment.

    Returns:
        The token (a SecretStr: never printed by accident).

    Raises:
        ForgeError: reason ``no-token``: the block is missing or has no token, or the
            environment variable is unset.
    """
    if block_name:
        try:
            block = Block.load(block_name) if "/" in block_name else ForgeToken.load(block_name)
        except (ValueError, KeyError):
            raise ForgeError("no token block of this name", reason="no-token",
                             subject=block_name, hint="save one: ForgeToken(token=...).save(NAME)"
                             ", or clear delivery.token_block to use "
                             f"{TOKEN_ENV.get(forge, 'GITHUB_TOKEN')}") from None
        token = getattr(block, "token", None)
        if token is None:
            raise ForgeError("the block has no token field", reason="no-token",
                             subject=block_name, hint="use a ForgeToken block")
        return token if isinstance(token, SecretStr) else SecretStr(str(token))
    env = TOKEN_ENV.get(forge, "GITHUB_TOKEN")
    raw = os.environ.get(env, "").strip()
    if not raw:
        raise ForgeError(f"no {forge} token configured", reason="no-token",
                         subject="delivery.token_block",
                         hint=f"save a ForgeToken block and name it in delivery.token_block, "
                              f"or set {env}")
    return SecretStr(raw)
