"""Fake HTTP servers speaking real APIs, for tests that drive the real SDKs over loopback.

- :mod:`tests.fakes.fake_messages_api`: Anthropic's Messages API (``POST /v1/messages``).
- :mod:`tests.fakes.fake_openai_api`: OpenAI's chat completions (``POST /v1/chat/completions``).

Both record every request (headers and JSON body) and every reply they sent
(``served``), and serve a scripted queue of replies and faults, then a
responder chosen by content (``respond_with``). ``FakeMessagesAPI(estimate_usage=True)``
reports estimated token usage (``ceil(characters / 4)``) of what it really received
and sent. The pytest fixtures ``fake_anthropic`` and ``fake_openai`` are defined in
:mod:`tests.fakes.fixtures` and re-exported by ``tests/tasks/conftest.py`` and
``tests/flows/conftest.py``.
"""
