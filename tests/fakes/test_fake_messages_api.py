"""The fake Messages API's own options, driven by the real anthropic SDK (strict validation)."""

from __future__ import annotations

import json
import math

import anthropic
import pytest

from tests.fakes import fake_messages_api as api

SYSTEM = [{"type": "text", "text": "You fix bugs."}]
TOOLS = [{"name": "propose_fix", "description": "d",
          "input_schema": {"type": "object", "properties": {}}}]


def client(fake: api.FakeMessagesAPI) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-fake-key-for-the-fake", base_url=fake.root_url,
                               max_retries=0, _strict_response_validation=True)


def ask(fake: api.FakeMessagesAPI, text: str) -> anthropic.types.Message:
    return client(fake).messages.create(model="claude-test", max_tokens=100, system=SYSTEM,
                                        tools=TOOLS, messages=[{"role": "user", "content": text}])


def test_estimated_usage_is_a_quarter_of_the_prompt_and_reply_characters():
    with api.FakeMessagesAPI(estimate_usage=True) as fake:
        fake.enqueue(api.tool_input_reply({"x": "y" * 40}, input_tokens=1, output_tokens=1))
        message = ask(fake, "fix calc.py " * 50)
        sent = fake.requests[0].json
    prompt = json.dumps({"system": sent["system"], "messages": sent["messages"],
                         "tools": sent["tools"]}, ensure_ascii=False)
    assert message.usage.input_tokens == math.ceil(len(prompt) / 4) > 150
    content = [block.model_dump(exclude_none=True) for block in message.content]
    assert message.usage.output_tokens == math.ceil(len(json.dumps(content)) / 4)
    assert message.usage.output_tokens == api.estimate_tokens(content) > 10


def test_scripted_usage_is_kept_without_the_option_and_errors_are_untouched():
    with api.FakeMessagesAPI() as fake:
        fake.enqueue(api.tool_input_reply({}, input_tokens=812, output_tokens=95))
        assert (ask(fake, "hi").usage.input_tokens, fake.served[0][1].status) == (812, 200)
    with api.FakeMessagesAPI(estimate_usage=True) as fake:
        fake.enqueue(api.unauthorized())
        with pytest.raises(anthropic.AuthenticationError):
            ask(fake, "hi")
        assert fake.served[0][1].status == 401


def test_responder_answers_by_content_once_the_queue_is_empty():
    with api.FakeMessagesAPI() as fake:
        fake.enqueue(api.tool_input_reply({"n": 0}))
        fake.respond_with(lambda request: api.tool_input_reply({"n": 1})
                          if "second" in request.raw.decode() else None)
        first = ask(fake, "first")
        second = ask(fake, "second")
        with pytest.raises(anthropic.BadRequestError, match="no scripted reply left"):
            ask(fake, "third")
    assert [b.input for b in (*first.content, *second.content)] == [{"n": 0}, {"n": 1}]
    assert [reply.status for _, reply in fake.served] == [200, 200, 400]
    assert [request for request, _ in fake.served] == fake.requests
