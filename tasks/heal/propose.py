"""Asking the model for a heal: an analysis, a reproduction test and a fix, in one reply.

The same wire protocol as missions (the forced ``propose_fix`` tool of
:mod:`mendflow.tasks.fix.llm_protocol`, through the configured
:class:`~mendflow.tasks.fix.llm.LLMFixer`); the user message is the error
group's context (the traceback, the located source) and the heal instruction
(:data:`HEAL_INSTRUCTION`). mendflow then separates the reply's edits by path:
edits of files matching ``gates.test_globs`` are the reproduction test, the
others the fix. Both become git-format patches through the guards of
:func:`mendflow.tasks.fix.edits.edits_to_patch` (nothing is written).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from mendflow.core.config import GatesConfig, LLMPolicy
from mendflow.core.errors import PatchRejected
from mendflow.core.heal import HealAnalysis
from mendflow.core.models import Finding, Patch, Sandbox
from mendflow.tasks.fix.context import build_context
from mendflow.tasks.fix.edits import edits_to_patch
from mendflow.tasks.fix.llm import LLMFixer, ModelAnswer
from mendflow.tasks.fix.llm_protocol import parse_reply, policy_decline, user_message
from mendflow.tasks.validate import glob_match

HEAL_INSTRUCTION = """\
## What to do
This error was raised in production (the traceback above). Call propose_fix once with:
1. your analysis. Category `external` means the code is not at fault (a service down, \
the network, permissions, a full disk): then set fixable to false and give no edits.
2. a regression test that reproduces the error: a NEW test file under tests/ (an edit \
with an empty `search`), or an addition to an existing test file. On the current code it \
must fail by raising the same exception from the same function as in the traceback; \
with your fix it must pass. Use plain pytest; do not mock the function that fails.
3. the smallest fix of the root cause, in the repository's code (not in the test).
"""

Kind = Literal["patch", "declined", "external", "refused", "budget"]


class HealProposal(BaseModel):
    """What one model attempt produced.

    Attributes:
        kind: ``patch`` (a test and a fix to try), ``declined`` (not fixable, or
            the policy refused the analysis), ``external`` (reported, never fixed),
            ``refused`` (the reply failed a guard: no reproduction, no fix, a
            denylisted file ...; ``reason`` goes back to the model) or ``budget``.
        reason: why there is no patch ('' for ``patch``).
        analysis: the model's analysis, when the reply had one.
        test_patch: the reproduction test alone.
        patch: the reproduction test and the fix together.
        test_files: the reproduction's files (repository-relative).
        llm_calls, input_tokens, output_tokens: what the attempt cost.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind
    reason: str = ""
    analysis: HealAnalysis | None = None
    test_patch: Patch | None = None
    patch: Patch | None = None
    test_files: tuple[str, ...] = ()
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


def heal_context(sandbox: Sandbox, finding: Finding, feedback: str | None,
                 policy: LLMPolicy, max_chars: int) -> str:
    """The user message's context: the error, the source around it, the instruction."""
    context = build_context(sandbox, [finding], feedback, max_chars, denylist=policy.denylist)
    return f"{context}\n\n{HEAL_INSTRUCTION}"


def propose_heal(fixer: LLMFixer, sandbox: Sandbox, finding: Finding, policy: LLMPolicy,
                 gates: GatesConfig, *, feedback: str | None = None,
                 attempt: int = 1) -> HealProposal:
    """Ask the model once and judge its reply (see the module docstring).

    Args:
        fixer: the model fixer (Claude or an OpenAI-compatible server).
        sandbox: the worktree at the deployed commit (read only).
        finding: the error group as a ``source: log`` finding (its detail: the traceback).
        policy: the heal policy (min confidence, categories, denylist, edit size).
        gates: ``gates.test_globs`` tell the reproduction's files from the fix's.
        feedback: why the previous attempt was refused, or None.
        attempt: 1, 2, ...

    Returns:
        The :class:`HealProposal`.

    Raises:
        LLMError: the model call failed.
    """
    text = user_message(heal_context(sandbox, finding, feedback, policy,
                                     fixer.max_context_chars), attempt=attempt)
    try:
        answer = fixer.call_model(sandbox, text)
    except PatchRejected as err:
        return HealProposal(kind="refused", reason=f"{err.reason}: {err.message}", llm_calls=1)
    if isinstance(answer, str):
        return HealProposal(kind="budget", reason=answer)
    cost = {"llm_calls": 1, "input_tokens": answer.usage.input_tokens,
            "output_tokens": answer.usage.output_tokens}
    try:
        return _judge(answer, sandbox, finding, policy, gates, fixer) \
            .model_copy(update=cost)
    except PatchRejected as err:
        return HealProposal(kind="refused", reason=f"{err.reason}: {err.message}"
                            + (f" ({err.subject})" if err.subject else ""), **cost)


def _judge(answer: ModelAnswer, sandbox: Sandbox, finding: Finding, policy: LLMPolicy,
           gates: GatesConfig, fixer: LLMFixer) -> HealProposal:
    if answer.tool_input is None:
        raise PatchRejected(f"the model gave no usable propose_fix call ({answer.note})",
                            reason="malformed-reply", subject=fixer.subject)
    reply = parse_reply(answer.tool_input, subject=fixer.subject)
    a = reply.analysis
    analysis = HealAnalysis(fixable=a.fixable, category=a.category, root_cause=a.root_cause,
                            affected_files=tuple(a.affected_files), confidence=a.confidence)
    if a.category == "external":
        return HealProposal(kind="external", analysis=analysis,
                            reason=f"external: {a.root_cause.strip()}")
    declined = policy_decline(reply, policy)
    if declined is not None:
        return HealProposal(kind="declined", analysis=analysis, reason=declined)
    tests = [e for e in reply.edits if any(glob_match(e.path, g) for g in gates.test_globs)]
    fixes = [e for e in reply.edits if e not in tests]
    if not tests:
        return HealProposal(kind="refused", analysis=analysis, reason="no-reproduction: the "
                            "reply holds no test edit; write a regression test file under "
                            "tests/ that raises the error on the current code")
    if not fixes:
        return HealProposal(kind="refused", analysis=analysis,
                            reason="no-fix: the reply edits only tests; fix the code too")
    group = [finding]
    test_patch = edits_to_patch(sandbox, reply.model_copy(update={"edits": tests}), group,
                                fixer.name, policy)
    patch = edits_to_patch(sandbox, reply, group, fixer.name, policy)
    return HealProposal(kind="patch", analysis=analysis, test_patch=test_patch, patch=patch,
                        test_files=test_patch.files)
