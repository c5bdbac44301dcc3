"""Pytest fixtures of the fake API servers (re-exported by tests/tasks/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.fake_messages_api import FakeMessagesAPI
from tests.fakes.fake_openai_api import FakeChatCompletionsAPI


@pytest.fixture
def fake_anthropic() -> Iterator[FakeMessagesAPI]:
    """A running fake Messages API on 127.0.0.1 (``.root_url``, ``.enqueue``, ``.requests``)."""
    with FakeMessagesAPI() as server:
        yield server


@pytest.fixture
def fake_openai() -> Iterator[FakeChatCompletionsAPI]:
    """A running fake chat-completions API on 127.0.0.1 (``.base_url`` ends with /v1)."""
    with FakeChatCompletionsAPI() as server:
        yield server
