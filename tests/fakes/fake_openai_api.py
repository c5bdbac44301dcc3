"""A fake of OpenAI's chat completions (``POST /v1/chat/completions``) for the real ``openai`` SDK.

Point the SDK at :attr:`FakeChatCompletionsAPI.base_url` (it ends with ``/v1``).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from tests.fakes.server import FakeServer, ScriptedReply, json_reply

_ids = itertools.count(1)


class FakeChatCompletionsAPI(FakeServer):
    """Serves POST /v1/chat/completions from a scripted queue and records every request."""

    def __init__(self) -> None:
        super().__init__("/v1/chat/completions")

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"


def completion(message: dict[str, Any], *, finish_reason: str = "stop",
               prompt_tokens: int = 100, completion_tokens: int = 50,
               cached_tokens: int | None = None) -> ScriptedReply:
    """A 200 reply holding one ChatCompletion with one choice."""
    usage: dict[str, Any] = {"prompt_tokens": prompt_tokens,
                             "completion_tokens": completion_tokens,
                             "total_tokens": prompt_tokens + completion_tokens}
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return json_reply({"id": f"chatcmpl-fake{next(_ids)}", "object": "chat.completion",
                       "created": 1700000000, "model": "fake-model",
                       "choices": [{"index": 0, "message": message,
                                    "finish_reason": finish_reason, "logprobs": None}],
                       "usage": usage})


def tool_call_reply(arguments: dict[str, Any] | str, *, name: str = "propose_fix",
                    **usage: Any) -> ScriptedReply:
    """A reply that calls the tool with these arguments (a dict is JSON-encoded)."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    call = {"id": f"call_fake{next(_ids)}", "type": "function",
            "function": {"name": name, "arguments": args}}
    return completion({"role": "assistant", "content": None, "tool_calls": [call]},
                      finish_reason="tool_calls", **usage)


def text_reply(text: str = "Change the operator.") -> ScriptedReply:
    return completion({"role": "assistant", "content": text})


def error_reply(status: int, text: str = "fake error", **headers: str) -> ScriptedReply:
    return json_reply({"error": {"message": text, "type": "server_error", "code": None}},
                      status, **headers)
