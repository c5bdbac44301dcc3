"""The propose_fix protocol: the JSON schema, the pydantic models and the documentation agree."""

from __future__ import annotations

import json
import re
import typing

import pytest

import mendflow.tasks.fix.llm_protocol as protocol
from mendflow.core.config import LLMCategory
from mendflow.core.errors import PatchRejected
from mendflow.tasks.fix.llm_protocol import (
    PROPOSE_FIX_SCHEMA,
    FileEdit,
    FixAnalysis,
    FixReply,
    parse_reply,
)


def objects(schema: dict) -> list[dict]:
    """Every object schema nested in a schema."""
    found = [schema] if schema.get("type") == "object" else []
    for value in schema.get("properties", {}).values():
        found += objects(value)
    if "items" in schema:
        found += objects(schema["items"])
    return found


def test_the_schema_is_strict_and_matches_the_models():
    for obj in objects(PROPOSE_FIX_SCHEMA):
        assert obj["additionalProperties"] is False
        assert sorted(obj["required"]) == sorted(obj["properties"])
    props = PROPOSE_FIX_SCHEMA["properties"]
    assert sorted(props) == sorted(FixReply.model_fields)
    assert sorted(props["analysis"]["properties"]) == sorted(FixAnalysis.model_fields)
    assert sorted(props["edits"]["items"]["properties"]) == sorted(FileEdit.model_fields)
    categories = props["analysis"]["properties"]["category"]["enum"]
    assert categories == list(typing.get_args(LLMCategory))


def test_the_documented_example_is_a_valid_reply():
    example = re.search(r"::\n\n(    \{.*?\n    \})\n", protocol.__doc__ or "", re.DOTALL)
    assert example is not None
    text = re.sub(r"#[^\n]*", "", example.group(1))
    reply = FixReply.model_validate(json.loads(text))
    assert reply.edits[0].search == "return a - b"


@pytest.mark.parametrize("tool_input", [
    None, [], {"analysis": {}, "edits": [], "explanation": ""},
    {"analysis": {"fixable": True, "category": "misc", "root_cause": "", "affected_files": [],
                  "confidence": "high"}, "edits": [], "explanation": ""},
])
def test_invalid_inputs_are_malformed_replies(tool_input):
    with pytest.raises(PatchRejected) as info:
        parse_reply(tool_input, subject="anthropic (m)")
    assert info.value.reason == "malformed-reply" and info.value.subject == "anthropic (m)"
