"""Notifications through real Prefect notification blocks, posting to a local HTTP server."""

from __future__ import annotations

import uuid

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook
from prefect.blocks.system import Secret

from mendflow.blocks.notify import flow_run_url, load_notifier, notify, ui_base_url
from mendflow.core.errors import ConfigError, NotificationFailed
from tests.fakes.server import FakeServer, json_reply

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def hook():
    with FakeServer("/hook") as server:
        server.respond_with(lambda request: json_reply({"ok": True}))
        yield server


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_custom_webhook_block_posts_subject_body_and_link(hook):
    name = unique("ops")
    CustomWebhookNotificationBlock(name="mendflow", url=f"{hook.root_url}/hook",
                                   json_data={"text": "{{subject}}: {{body}}"}).save(name)
    link = flow_run_url("1234", "http://ui.example:4200/")

    notify(name, "approval needed", f"2 patches wait: {link}")
    notify(f"custom-webhook/{name}", "again", "by slug")

    texts = [r.json["text"] for r in hook.requests]
    assert texts == ["approval needed: 2 patches wait: http://ui.example:4200/runs/flow-run/1234",
                     "again: by slug"]


def test_slack_block_loads_through_the_same_interface():
    # SlackWebhook only posts to hooks.slack.com (apprise ignores other URLs), so this
    # checks the loading path; the message path is the same NotificationBlock.notify
    name = unique("slack")
    SlackWebhook(url="https://hooks.slack.com/services/T000/B000/XXXX").save(name)

    block = load_notifier(name)

    assert isinstance(block, SlackWebhook)


def test_failed_delivery_is_a_typed_error(hook):
    hook.respond_with(lambda request: json_reply({"error": "down"}, status=500))
    name = unique("broken")
    CustomWebhookNotificationBlock(name="x", url=f"{hook.root_url}/hook",
                                   json_data={"text": "{{body}}"}).save(name)

    with pytest.raises(NotificationFailed, match="not delivered") as caught:
        notify(name, "s", "b")
    assert "500" in caught.value.message and caught.value.subject == name


def test_missing_or_wrong_block_is_a_config_error():
    with pytest.raises(ConfigError, match="no saved notification block"):
        load_notifier(unique("missing"))
    with pytest.raises(ConfigError, match="no saved Prefect block"):
        load_notifier(f"custom-webhook/{unique('missing')}")
    name = unique("secret")
    Secret(value="s3cret").save(name)
    with pytest.raises(ConfigError, match="not a notification block"):
        load_notifier(f"secret/{name}")


def test_ui_links():
    assert ui_base_url("http://ui:4200/") == "http://ui:4200"
    assert flow_run_url(None, "http://ui") is None
    # under the test harness the API URL is set: the UI root is derived from it
    derived = ui_base_url(None)
    assert derived and derived.startswith("http://") and not derived.endswith("/api")
