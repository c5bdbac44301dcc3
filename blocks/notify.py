"""Notifications through any saved Prefect notification block (Slack, webhooks, Apprise URLs).

mendflow sends two messages when ``approval.notify_block`` names a block:
"waiting for approval" (with a link to the flow run in the Prefect UI) and
"mission finished". Save a block once, then name it in the config::

    from prefect.blocks.notifications import SlackWebhook
    SlackWebhook(url="https://hooks.slack.com/services/...").save("ops-slack")
    # approval: {notify_block: ops-slack}   (or the slug form: slack-webhook/ops-slack)

Any block with the ``notify`` capability works: ``SlackWebhook``,
``MicrosoftTeamsWebhook``, ``CustomWebhookNotificationBlock`` (any HTTP
endpoint, JSON body templated with ``{{subject}}`` and ``{{body}}``),
``AppriseNotificationBlock`` (any Apprise URL) ...
"""

from __future__ import annotations

import httpx
from prefect.blocks.abstract import NotificationBlock, NotificationError
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.settings import get_current_settings

from mendflow.core.errors import ConfigError, NotificationFailed
from mendflow.infra.prefect_api import adopted_api_url


def ui_base_url(configured: str | None = None) -> str | None:
    """The root of the Prefect UI, for links.

    Args:
        configured: ``approval.ui_url``, if set.

    Returns:
        ``configured``, else ``PREFECT_UI_URL``, else ``PREFECT_API_URL`` without
        its ``/api`` suffix; None in ephemeral mode (no server, hence no UI).
    """
    settings = get_current_settings()
    if configured:
        return configured.rstrip("/")
    if settings.ui_url:
        return str(settings.ui_url).rstrip("/")
    api = str(settings.api.url or "").rstrip("/")
    if api and api == (adopted_api_url() or "").rstrip("/"):
        return None  # this process's temporary API server (ephemeral mode)
    return api.removesuffix("/api") or None


def flow_run_url(flow_run_id: str | None, configured: str | None = None) -> str | None:
    """Link to a flow run's page in the Prefect UI (``<ui>/runs/flow-run/<id>``), or None."""
    base = ui_base_url(configured)
    return f"{base}/runs/flow-run/{flow_run_id}" if base and flow_run_id else None


def load_notifier(block_name: str) -> NotificationBlock:
    """Load a saved notification block by name (``Block.load``).

    Args:
        block_name: ``<block-type-slug>/<name>`` (e.g. ``slack-webhook/ops``), or a
            bare document name when exactly one notification block has it.

    Returns:
        The block.

    Raises:
        ConfigError: no such block, several blocks have that name, or the block
            cannot send notifications.
    """
    slug = block_name if "/" in block_name else _slug_of(block_name)
    try:
        block = Block.load(slug)
    except ValueError:
        raise ConfigError("no saved Prefect block has this name", subject=block_name,
                          hint="save one (see blocks/notify.py) or fix approval.notify_block"
                          ) from None
    if not isinstance(block, NotificationBlock):
        raise ConfigError(f"the block is a {type(block).__name__}, not a notification block",
                          subject=block_name,
                          hint="name a SlackWebhook, CustomWebhookNotificationBlock, "
                               "AppriseNotificationBlock ... block")
    return block


def _slug_of(name: str) -> str:
    documents: list = []
    with get_client(sync_client=True) as client:
        while True:  # the API pages its answers (200 documents at most per call)
            page = client.read_block_documents(offset=len(documents), limit=200,
                                               include_secrets=False)
            documents += page
            if len(page) < 200:
                break
    matches = [d for d in documents if d.name == name and d.block_type is not None
               and "notify" in (d.block_schema.capabilities if d.block_schema else [])]
    if len(matches) > 1:
        kinds = ", ".join(sorted(f"{d.block_type.slug}/{name}" for d in matches if d.block_type))
        raise ConfigError(f"several notification blocks are named {name!r}: {kinds}",
                          subject=name, hint="name one as <block-type-slug>/<name>")
    if not matches:
        raise ConfigError("no saved notification block has this name", subject=name,
                          hint="save one (see blocks/notify.py) or fix approval.notify_block")
    block_type = matches[0].block_type
    return f"{block_type.slug if block_type else ''}/{name}"


def notify(block_name: str, subject: str, body: str) -> None:
    """Send one message through the named notification block.

    Args:
        block_name: see :func:`load_notifier`.
        subject: a one-line title.
        body: the message; callers include the flow run's UI link (:func:`flow_run_url`).

    Raises:
        ConfigError: the block is missing or is not a notification block.
        NotificationFailed: the block reported a failed delivery.
    """
    block = load_notifier(block_name)
    try:
        with block.raise_on_failure():
            block.notify(body=body, subject=subject)  # type: ignore[unused-coroutine]
    except (NotificationError, httpx.HTTPError) as err:
        detail = err.log if isinstance(err, NotificationError) else str(err)
        raise NotificationFailed(f"the notification was not delivered: {detail.strip()[-300:]}",
                                 subject=block_name,
                                 hint="check the block's URL; the mission itself is not "
                                      "affected") from None
