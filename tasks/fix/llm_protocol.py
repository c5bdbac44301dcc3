"""The tool protocol between mendflow and a language model.

The model protocol
------------------

mendflow asks a model for a fix with exactly one tool, ``propose_fix``, and
forces the model to call it (Anthropic: ``tool_choice={"type": "tool",
"name": "propose_fix"}``; OpenAI-compatible servers: ``tool_choice={"type":
"function", "function": {"name": "propose_fix"}}``). The model never runs
anything and never writes files: it answers one JSON object, and mendflow
turns it into a git-format patch and validates it like any other candidate.

The tool's input (the JSON schema is strict: every field is required and no
other field is allowed)::

    {
      "analysis": {
        "fixable": true,                 # false: the model declines (say why in root_cause)
        "category": "logic",             # syntax | import | type | attribute | logic | api
                                         # | config | security | test | other
                                         # | external (not a code defect: never fixed)
        "root_cause": "add() subtracts",  # one or two sentences
        "affected_files": ["calc.py"],   # repository-relative POSIX paths
        "confidence": "high"             # high | medium | low
      },
      "edits": [                         # applied in order; several may touch one file
        {"path": "calc.py",              # repository-relative POSIX path
         "search": "return a - b",       # exact text; must occur exactly once in the file
         "replace": "return a + b"}      # the new text
      ],
      "explanation": "add() must return the sum"
    }

A new file is created by an edit whose ``search`` is ``""`` on a path that
does not exist. mendflow refuses a reply (it becomes a rejected candidate,
the worktree is never touched) when: there is no tool call or its input
does not match the schema (``malformed-reply``); there are no edits
(``no-edits``); a path is absolute, contains ``..``, goes through a symlink
or into ``.git`` (``path-escape``); a path matches the policy denylist
(``denylisted``: CI files, ``.env*``, secrets ...); a ``search`` text is
missing (``search-not-found``) or occurs more than once
(``search-ambiguous``); a target file is binary (``binary``); the edits hold
more than ``max_edit_bytes`` (``too-large``); a resulting Python file does
not compile (``syntax``). It declines without a patch when ``fixable`` is
false, when ``confidence`` is below ``policy.min_confidence`` or when the
category is not allowed by the policy.

The system prompt is the same for every request (nothing about the
repository is in it) and is sent with ``cache_control={"type": "ephemeral"}``
so that Anthropic's prompt cache serves it; the per-finding context (see
``tasks/fix/context.py``) goes in the user message.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mendflow.core.config import LLMCategory, LLMPolicy
from mendflow.core.errors import PatchRejected

TOOL_NAME = "propose_fix"
CATEGORIES: tuple[str, ...] = ("syntax", "import", "type", "attribute", "logic", "api",
                               "config", "security", "test", "other", "external")
"""``external`` (a service down, the network, permissions) is for errors the heal
flow reports and never fixes in code."""
CONFIDENCE_RANK = {"low": 0, "medium": 1, "high": 2}

SYSTEM_PROMPT = """\
You are a careful senior Python engineer fixing one problem in a repository.
You receive the findings of analysis tools (pytest, mypy, bandit, ruff), the \
relevant source code with line numbers, and sometimes why your previous attempt \
was rejected.

Answer only by calling the propose_fix tool, once.
- First diagnose: find the root cause, not the symptom. Fix the code under test, \
never weaken, skip or delete a test to make it pass.
- Make the smallest change that fixes the root cause. Keep the code's style. \
Do not reformat, rename or refactor unrelated code.
- Each edit replaces an exact `search` text with `replace` in one file. Copy \
`search` verbatim from the source shown (without the line-number prefix \
"  12 | "), with its exact indentation, and include enough lines so that it \
occurs exactly once in the file. To create a new file, use an empty `search`.
- Only edit files of the repository, with paths relative to its root as shown.
- If you cannot fix the problem safely from what you see, set fixable to false \
and say why in root_cause; do not guess.
- Rate your confidence honestly: high only when you are sure the change fixes \
the finding and breaks nothing.
"""

_ANALYSIS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "fixable": {"type": "boolean",
                    "description": "false when the problem cannot be fixed safely"},
        "category": {"type": "string", "enum": list(CATEGORIES),
                     "description": "the kind of root cause"},
        "root_cause": {"type": "string", "description": "the root cause, in one or two sentences"},
        "affected_files": {"type": "array", "items": {"type": "string"},
                           "description": "repository-relative paths the fix touches"},
        "confidence": {"type": "string", "enum": ["high", "medium", "low"],
                       "description": "how sure you are that the edits fix the finding"},
    },
    "required": ["fixable", "category", "root_cause", "affected_files", "confidence"],
    "additionalProperties": False,
}

_EDIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "repository-relative POSIX path"},
        "search": {"type": "string",
                   "description": "exact text that occurs once in the file ('' = new file)"},
        "replace": {"type": "string", "description": "the text that replaces it"},
    },
    "required": ["path", "search", "replace"],
    "additionalProperties": False,
}

PROPOSE_FIX_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "analysis": _ANALYSIS_SCHEMA,
        "edits": {"type": "array", "items": _EDIT_SCHEMA,
                  "description": "search/replace edits, applied in order"},
        "explanation": {"type": "string", "description": "what the edits change and why"},
    },
    "required": ["analysis", "edits", "explanation"],
    "additionalProperties": False,
}

_TOOL_DESCRIPTION = ("Propose a fix for the findings: your analysis of the root cause and "
                     "exact search/replace edits to repository files.")

PROPOSE_FIX_TOOL: dict[str, Any] = {
    "name": TOOL_NAME,
    "description": _TOOL_DESCRIPTION,
    "input_schema": PROPOSE_FIX_SCHEMA,
    "strict": True,
}
"""The tool in the Anthropic Messages API format."""

ANTHROPIC_TOOL_CHOICE: dict[str, Any] = {"type": "tool", "name": TOOL_NAME}

OPENAI_PROPOSE_FIX_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {"name": TOOL_NAME, "description": _TOOL_DESCRIPTION,
                 "parameters": PROPOSE_FIX_SCHEMA, "strict": True},
}
"""The same tool in the OpenAI chat-completions format."""

OPENAI_TOOL_CHOICE: dict[str, Any] = {"type": "function", "function": {"name": TOOL_NAME}}


class _Strict(BaseModel):
    # strict: the JSON types of the schema, no coercion ("yes" is not a boolean)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FixAnalysis(_Strict):
    """The model's diagnosis (``analysis`` of the tool input)."""

    fixable: bool
    category: LLMCategory
    root_cause: str
    affected_files: list[str]
    confidence: Literal["high", "medium", "low"]


class FileEdit(_Strict):
    """One exact search/replace edit of one file."""

    path: str = Field(min_length=1)
    search: str
    replace: str


class FixReply(_Strict):
    """The whole ``propose_fix`` tool input."""

    analysis: FixAnalysis
    edits: list[FileEdit]
    explanation: str


def parse_reply(tool_input: Any, *, subject: str) -> FixReply:
    """Validate a ``propose_fix`` tool input.

    Args:
        tool_input: the decoded JSON object the model passed to the tool.
        subject: what to name in errors (the fixer and model).

    Returns:
        The validated reply.

    Raises:
        PatchRejected: reason ``malformed-reply``; the message lists the wrong fields.
    """
    try:
        return FixReply.model_validate(tool_input)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or '(input)'}: {item['msg']}"
            for item in err.errors()[:5]
        )
        raise PatchRejected(f"the propose_fix input does not match its schema: {problems}",
                            reason="malformed-reply", subject=subject,
                            hint="the model answered badly; a retry may do better") from None


def policy_decline(reply: FixReply, policy: LLMPolicy) -> str | None:
    """Say why a reply must be declined under the policy, if it must.

    Args:
        reply: the validated reply.
        policy: the configured policy.

    Returns:
        The decline reason (starting with ``"model: "`` or ``"policy: "``), or None.
    """
    analysis = reply.analysis
    if not analysis.fixable:
        return f"model: not fixable: {analysis.root_cause.strip() or '(no reason given)'}"
    if CONFIDENCE_RANK[analysis.confidence] < CONFIDENCE_RANK[policy.min_confidence]:
        return (f"policy: confidence {analysis.confidence} is below "
                f"min_confidence={policy.min_confidence}")
    if analysis.category in policy.denied_categories:
        return f"policy: category {analysis.category} is in denied_categories"
    if policy.allowed_categories is not None and analysis.category not in policy.allowed_categories:
        return f"policy: category {analysis.category} is not in allowed_categories"
    return None


def user_message(context: str, *, attempt: int) -> str:
    """The user turn: the selected context and the instruction.

    Args:
        context: the output of :func:`mendflow.tasks.fix.context.build_context`.
        attempt: 1 for the first attempt, 2 for the next ...

    Returns:
        The text of the one user message.
    """
    again = (f" This is attempt {attempt}: your previous fix was rejected for the reason "
             "given above; do not repeat it." if attempt > 1 else "")
    return (f"{context}\n\nFix the finding(s) above by calling propose_fix once.{again} "
            "Quote `search` texts exactly from the source shown.")
