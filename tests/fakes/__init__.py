"""Fake HTTP servers speaking real APIs, for tests that drive the real SDKs over loopback.

- :mod:`tests.fakes.fake_messages_api`: Anthropic's Messages API (``POST /v1/messages``).
- :mod:`tests.fakes.fake_openai_api`: OpenAI's chat completions (``POST /v1/chat/completions``).

Both record every request (headers and JSON body) and serve a scripted queue of
replies and faults. The pytest fixtures ``fake_anthropic`` and ``fake_openai``
live in ``tests/tasks/conftest.py``.
"""
