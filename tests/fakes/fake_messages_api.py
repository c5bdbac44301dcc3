"""A fake of Anthropic's Messages API (``POST /v1/messages``) for the real ``anthropic`` SDK.

Point the SDK at :attr:`FakeMessagesAPI.root_url` (no ``/v1``: the SDK adds it).
Script replies with the builders below, then inspect :attr:`requests`.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace
from typing import Any

from tests.fakes.server import FakeServer, RecordedRequest, ScriptedReply, json_reply

_ids = itertools.count(1)
CHARS_PER_TOKEN = 4
"""The usual rough estimate of characters per token for English text and code."""


def estimate_tokens(data: Any) -> int:
    """``ceil(len(json.dumps(data)) / 4)``: an estimate of the tokens of a JSON value.

    Counting real tokens needs the API (``messages.count_tokens``); four
    characters per token is the standard rough estimate.
    """
    return math.ceil(len(json.dumps(data, ensure_ascii=False)) / CHARS_PER_TOKEN)


class FakeMessagesAPI(FakeServer):
    """Serves POST /v1/messages from a scripted queue and records every request.

    Args:
        estimate_usage: replace the ``usage`` of every 200 Message reply with
            estimates: ``input_tokens`` = :func:`estimate_tokens` of the request's
            ``system``, ``messages`` and ``tools``; ``output_tokens`` = the same
            estimate of the reply's ``content``; no cache tokens.
    """

    def __init__(self, *, estimate_usage: bool = False) -> None:
        super().__init__("/v1/messages")
        self.estimate_usage = estimate_usage

    def finalize(self, request: RecordedRequest, reply: ScriptedReply) -> ScriptedReply:
        if not self.estimate_usage or reply.status != 200:
            return reply
        try:
            body = json.loads(reply.body)
            sent = request.json
        except ValueError:
            return reply  # a malformed body is served as scripted
        if not isinstance(body, dict) or body.get("type") != "message":
            return reply
        prompt = {key: sent.get(key) for key in ("system", "messages", "tools")}
        body["usage"] = {"input_tokens": estimate_tokens(prompt),
                         "output_tokens": estimate_tokens(body.get("content") or [])}
        return replace(reply, body=json.dumps(body).encode())


def analysis(*, fixable: bool = True, category: str = "logic", root_cause: str = "a bug",
             affected_files: list[str] | None = None, confidence: str = "high") -> dict[str, Any]:
    """An ``analysis`` object of the propose_fix tool input."""
    return {"fixable": fixable, "category": category, "root_cause": root_cause,
            "affected_files": affected_files or [], "confidence": confidence}


def message(content: list[dict[str, Any]], *, stop_reason: str = "end_turn",
            input_tokens: int = 100, output_tokens: int = 50,
            cache_creation_input_tokens: int | None = None,
            cache_read_input_tokens: int | None = None, model: str = "claude-test") -> ScriptedReply:
    """A 200 reply holding one Message object with the given content blocks and usage."""
    usage: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    if cache_creation_input_tokens is not None:
        usage["cache_creation_input_tokens"] = cache_creation_input_tokens
    if cache_read_input_tokens is not None:
        usage["cache_read_input_tokens"] = cache_read_input_tokens
    return json_reply({"id": f"msg_fake{next(_ids)}", "type": "message", "role": "assistant",
                       "model": model, "content": content, "stop_reason": stop_reason,
                       "stop_sequence": None, "usage": usage})


def tool_input_reply(tool_input: Any, *, name: str = "propose_fix",
                     **usage: Any) -> ScriptedReply:
    """A reply whose one block is a tool_use with this exact input (valid or not)."""
    block = {"type": "tool_use", "id": f"toolu_fake{next(_ids)}", "name": name,
             "input": tool_input}
    return message([block], stop_reason="tool_use", **usage)


def tool_reply(analysis: dict[str, Any], edits: list[dict[str, str]],
               explanation: str = "fixed", input_tokens: int = 100, output_tokens: int = 50,
               **usage: Any) -> ScriptedReply:
    """A well-formed propose_fix tool call."""
    return tool_input_reply({"analysis": analysis, "edits": edits, "explanation": explanation},
                            input_tokens=input_tokens, output_tokens=output_tokens, **usage)


def text_reply(text: str = "I think you should change the operator.") -> ScriptedReply:
    """A reply with a text block and no tool call."""
    return message([{"type": "text", "text": text}])


def malformed_reply() -> ScriptedReply:
    """A 200 reply whose body is not JSON."""
    return ScriptedReply(status=200, body=b'{"id": "msg_x", "content": [trunc')


def error_reply(status: int, error_type: str, text: str = "fake error",
                **headers: str) -> ScriptedReply:
    """An API error body with the HTTP status (``retry_after="1"`` sets ``retry-after: 1``)."""
    return json_reply({"type": "error", "error": {"type": error_type, "message": text}},
                      status, **headers)


def rate_limited(retry_after: str = "1") -> ScriptedReply:
    return error_reply(429, "rate_limit_error", "rate limited", retry_after=retry_after)


def overloaded() -> ScriptedReply:
    return error_reply(529, "overloaded_error", "Overloaded")


def server_error() -> ScriptedReply:
    return error_reply(500, "api_error", "Internal server error")


def bad_request() -> ScriptedReply:
    return error_reply(400, "invalid_request_error", "messages: field required")


def unauthorized() -> ScriptedReply:
    return error_reply(401, "authentication_error", "invalid x-api-key")


def slow(reply: ScriptedReply, delay_s: float) -> ScriptedReply:
    """The same reply, sent after ``delay_s`` seconds."""
    return ScriptedReply(reply.status, reply.body, reply.headers, delay_s, reply.content_type)
