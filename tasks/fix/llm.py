"""What every language-model fixer shares: planning, budget, policy, fault handling.

A backend (:class:`mendflow.tasks.fix.claude.ClaudeFixer`,
:class:`mendflow.tasks.fix.openai_compat.OpenAICompatibleFixer`) only implements
:meth:`LLMFixer._call`: send the system prompt, the tool and the user
message, and return the tool input and the token usage. Everything else is
here: the budget is reserved before the call and charged after it, the
reply is validated against the ``propose_fix`` schema, the policy may
decline it, and the edits become a :class:`Patch` through the guards of
:mod:`mendflow.tasks.fix.edits`.

Faults of the SDKs become :class:`LLMError` with ``retryable`` (429, 408,
409, 5xx including 529, timeouts and connection errors), ``retry_after_s``
(from the ``retry-after-ms`` / ``retry-after`` headers, capped),
``status_code`` and ``auth`` (401/403). The Prefect task
:func:`mendflow.tasks.fix.propose_patch` is the one retry layer (the SDK clients are made with
``max_retries=0``).

The wall time of each successful call is added to the repository's duration
history (step ``llm``, :func:`mendflow.infra.timeouts.record_duration`), from which
the mission learns the next calls' ``timeout_s`` (:func:`mendflow.tasks.preflight.plan_fixer_timeouts`).
A call that fails (a timeout included) records nothing.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from mendflow.core.config import LLMBudget, LLMPolicy
from mendflow.core.errors import LLMError, PatchRejected
from mendflow.core.models import (
    Declined,
    Finding,
    OutputRejected,
    Patched,
    Proposal,
    ProposalBase,
    Sandbox,
)
from mendflow.infra import busy
from mendflow.infra.budget import Budget, Usage, mission_budget
from mendflow.infra.layout import StateLayout
from mendflow.infra.timeouts import LLM_STEP, record_duration
from mendflow.tasks.fix.base import Fixer
from mendflow.tasks.fix.context import build_context
from mendflow.tasks.fix.edits import edits_to_patch
from mendflow.tasks.fix.llm_protocol import parse_reply, policy_decline, user_message

_RETRYABLE_STATUS = {408, 409, 429}
MAX_GROUP = 8
"""Failing tests of one defect shown to the model in one call (the prompt stays small)."""


BATCHED_SOURCES = ("ruff", "bandit")
"""Linters whose findings of one rule in one file a model fixes in one call: the same
mechanical change in several places (``UP031`` format strings, ``B101`` asserts).
mypy's are left single: one error code covers unrelated defects."""


def defect_key(finding: Finding) -> str | None:
    """What one model call covers: the failing test's ``root_cause``, else, for a
    finding of :data:`BATCHED_SOURCES`, its tool, rule and file; None: the finding alone."""
    if finding.root_cause:
        return finding.root_cause
    if finding.source in BATCHED_SOURCES:
        return f"{finding.source}:{finding.rule}:{finding.path}"
    return None


def group_by_root_cause(findings: Sequence[Finding], max_group: int = MAX_GROUP,
                        key: Callable[[Finding], str | None] = lambda f: f.root_cause
                        ) -> list[tuple[Finding, ...]]:
    """Group findings by ``key`` (by default ``root_cause``), keeping the order of each
    group's first finding.

    Args:
        findings: ranked findings; those whose key is None stay single.
        max_group: the most findings in one group; a larger defect is split in order.
        key: the grouping key of a finding (e.g. :func:`defect_key`).

    Returns:
        The groups (tuples of findings), in order.
    """
    groups: list[list[Finding]] = []
    open_group: dict[str, list[Finding]] = {}
    for finding in findings:
        key_of = key(finding)
        current = open_group.get(key_of) if key_of else None
        if current is None or len(current) >= max_group:
            current = [finding]
            groups.append(current)
            if key_of:
                open_group[key_of] = current
        else:
            current.append(finding)
    return [tuple(group) for group in groups]


P = TypeVar("P", bound=ProposalBase)


@dataclass(frozen=True)
class ModelAnswer:
    """What one model call returned.

    Attributes:
        tool_input: the decoded ``propose_fix`` input, or None when the model
            did not call the tool.
        usage: the tokens the API reported.
        note: why there is no tool input (the stop reason, a text answer ...).
    """

    tool_input: Any
    usage: Usage
    note: str = ""


class LLMFixer(Fixer):
    """Base of the model-backed fixers (implements the :class:`Fixer` protocol).

    Args:
        policy: what a proposed patch may do.
        limits: the budget limits.
        budget: a budget to charge; None = the mission's budget
            (:func:`mendflow.infra.budget.mission_budget` keyed by ``Sandbox.mission_id``),
            shared by every fixer object of the mission.
        max_context_chars: bound of the context sent per call, in characters.
        state_dir: mendflow's state directory as the mission resolved it (the fixer
            section's ``state_dir``), where each successful call's wall time is
            recorded; None (a fixer made outside a mission): ``$MENDFLOW_HOME`` or
            ``~/.mendflow``, resolved once here.
    """

    name = "llm"
    skip_sources: tuple[str, ...] = ("coverage", "todo", "log")
    """Findings no model is asked about in a mission: covering code means writing
    tests (which the gates refuse by default), TODOs are notes, not defects, and
    logged errors are healed by the heal flow, which reproduces them first."""

    def __init__(self, policy: LLMPolicy, limits: LLMBudget, budget: Budget | None = None, *,
                 max_context_chars: int = 24000, state_dir: Path | None = None):
        self.policy = policy
        self.limits = limits
        self.budget = budget
        self.max_context_chars = max_context_chars
        self.layout = StateLayout.of(state_dir)

    def budget_for(self, sandbox: Sandbox) -> Budget:
        """The budget charged for calls on this sandbox's mission."""
        return self.budget or mission_budget(sandbox.mission_id, self.limits)

    def plan(self, findings: Sequence[Finding]) -> list[tuple[Finding, ...]]:
        """One group per defect a model should look at; failing tests first.

        Failing tests that share a root cause (``Finding.root_cause``: the
        definition in the code under test their tracebacks or calls lead to) are
        one defect and so one group, of at most ``MAX_GROUP`` tests (the rest of
        a larger one form further groups, which the mission skips once an earlier
        patch fixed them). Findings of one ruff or bandit rule in one file are
        one group too (:func:`defect_key`). Every other finding is its own group.
        Left out: ruff findings ruff can fix itself (the offline fixer's),
        info-level findings (TODOs, slow tests), coverage gaps and notebooks.

        Args:
            findings: the ranked queue (most important first).

        Returns:
            Groups, failing tests first, otherwise in the order of each group's
            first finding in the queue.
        """
        chosen = [f for f in findings
                  if f.severity != "info" and f.source not in self.skip_sources
                  and not (f.source == "ruff" and f.fixable) and not f.path.endswith(".ipynb")]
        chosen.sort(key=lambda f: 0 if f.source in ("pytest", "runtime") else 1)
        return group_by_root_cause(chosen, key=defect_key)

    def propose(self, sandbox: Sandbox, group: Sequence[Finding], *, feedback: str | None = None,
                attempt: int = 1) -> Proposal:
        """Ask the model for a patch for one group (see :class:`Fixer`).

        Args:
            sandbox: the worktree (read only).
            group: the findings to fix.
            feedback: why the previous attempt was rejected, or None.
            attempt: 1, 2, ... (at most ``policy.max_attempts``).

        Returns:
            A proposal with a patch, or declined (budget exhausted, the model
            says not fixable, confidence or category refused by the policy,
            attempts exhausted).

        A reply that is malformed or whose edits fail a guard comes back as a
        proposal with ``rejected`` (the reason) and ``declined`` (the message).

        Raises:
            LLMError: the call failed (``retryable`` says if a retry may pass).
        """
        ids = tuple(f.id for f in group)
        if attempt > self.policy.max_attempts:
            return Declined(fixer=self.name, finding_ids=ids, attempt=attempt,
                            reason=f"policy: attempt {attempt} exceeds "
                                   f"max_attempts={self.policy.max_attempts}")
        budget = self.budget_for(sandbox)
        reason = budget.reserve()
        if reason is not None:
            return Declined(fixer=self.name, finding_ids=ids, attempt=attempt, reason=reason,
                            budget_exhausted=True)
        context = build_context(sandbox, group, feedback, self.max_context_chars,
                                denylist=self.policy.denylist)
        try:
            answer = self._timed_call(sandbox, user_message(context, attempt=attempt))
        except PatchRejected as err:  # a body the SDK could not even parse
            return OutputRejected(fixer=self.name, finding_ids=ids, attempt=attempt, llm_calls=1,
                                  guard=err.reason, message=err.message)
        budget.record(answer.usage)
        try:
            return self._judge(sandbox, group, ids, attempt, answer)
        except PatchRejected as err:  # an untrusted reply: recorded, with what it cost
            return self._proposal(OutputRejected, ids, attempt, answer.usage, guard=err.reason,
                                  message=err.message)

    def _judge(self, sandbox: Sandbox, group: Sequence[Finding], ids: tuple[str, ...],
               attempt: int, answer: ModelAnswer) -> Proposal:
        """Turn a model answer into a proposal, through the schema, the policy and the guards.

        Raises:
            PatchRejected: no tool call, invalid input, or edits that fail a guard.
        """
        if answer.tool_input is None:
            raise PatchRejected(f"the model gave no usable propose_fix call ({answer.note})",
                                reason="malformed-reply", subject=self.subject,
                                hint="a retry may do better; check that the model supports tools")
        reply = parse_reply(answer.tool_input, subject=self.subject)
        declined = policy_decline(reply, self.policy)
        if declined is not None:
            return self._proposal(Declined, ids, attempt, answer.usage, reason=declined)
        patch = edits_to_patch(sandbox, reply, group, self.name, self.policy)
        return self._proposal(Patched, ids, attempt, answer.usage, patch=patch)

    def _proposal(self, case: type[P], ids: tuple[str, ...], attempt: int, usage: Usage,
                  **fields: Any) -> P:
        """One model call's proposal of the given case, with what the call cost."""
        return case(fixer=self.name, finding_ids=ids, attempt=attempt, llm_calls=1,
                    input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                    cache_creation_input_tokens=usage.cache_creation_input_tokens,
                    cache_read_input_tokens=usage.cache_read_input_tokens, **fields)

    def call_model(self, sandbox: Sandbox, user_text: str) -> ModelAnswer | str:
        """One budgeted model call with a prepared user message (the heal flow's).

        Args:
            sandbox: the worktree (its mission's budget is charged).
            user_text: the whole user message.

        Returns:
            The answer, or the reason the budget declined (no call was made).

        Raises:
            LLMError: the call failed.
            PatchRejected: the body could not be parsed.
        """
        budget = self.budget_for(sandbox)
        reason = budget.reserve()
        if reason is not None:
            return reason
        answer = self._timed_call(sandbox, user_text)
        budget.record(answer.usage)
        return answer

    @property
    def subject(self) -> str:
        """The fixer and model, for error messages."""
        return self.name

    def _timed_call(self, sandbox: Sandbox, user_text: str) -> ModelAnswer:
        """:meth:`_call`, recording its wall time (seconds) in the repository's history.

        Only a call that returns is recorded: a timed-out or failed call must not
        teach the adaptive timeout anything.

        Raises:
            LLMError: the call failed.
            PatchRejected: the body could not be parsed.
        """
        started = time.monotonic()
        try:
            answer = self._call(user_text)
        finally:
            busy.record("model", started, time.monotonic())
        record_duration(sandbox.repo_root, LLM_STEP, time.monotonic() - started,
                        layout=self.layout)
        return answer

    def _call(self, user_text: str) -> ModelAnswer:
        """Send one request; implemented by each backend."""
        raise NotImplementedError


def retry_after_seconds(headers: Any, cap_s: float) -> float | None:
    """Read ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), capped.

    Args:
        headers: the response headers (a mapping with ``get``), or None.
        cap_s: the largest wait to honor, in seconds.

    Returns:
        Seconds to wait (0 <= s <= cap_s), or None when the headers say nothing.
    """
    if headers is None:
        return None
    value: float | None = None
    if (raw_ms := headers.get("retry-after-ms")) is not None:
        try:
            value = float(raw_ms) / 1000
        except ValueError:
            value = None
    if value is None and (raw := headers.get("retry-after")) is not None:
        try:
            value = float(raw)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(raw) if raw.strip() else None
            value = parsed.timestamp() - time.time() if parsed is not None else None
    if value is None:
        return None
    return min(max(value, 0.0), cap_s)


def translate_sdk_error(exc: Exception, sdk: ModuleType, *, subject: str,
                        cap_s: float, secret: str | None = None) -> Exception:
    """Turn an ``anthropic``/``openai`` SDK exception into a mendflow error.

    Both SDKs share the class names used here.

    Args:
        exc: the exception the SDK raised.
        sdk: the SDK module (``anthropic`` or ``openai``).
        subject: the fixer and model, named in the message.
        cap_s: the largest retry-after to honor, in seconds.
        secret: the API key, scrubbed from any message.

    Returns:
        An :class:`LLMError` (with ``retryable``, ``retry_after_s``,
        ``status_code``, ``auth``), or a :class:`PatchRejected`
        (``malformed-reply``) when the reply body was not valid.
    """
    def clean(text: str) -> str:
        return text.replace(secret, "[redacted]") if secret else text

    if isinstance(exc, (sdk.APIResponseValidationError, json.JSONDecodeError)):
        return PatchRejected(f"the API answered a malformed body: {clean(str(exc))[:200]}",
                             reason="malformed-reply", subject=subject,
                             hint="a proxy or server answered unexpected data")
    status = getattr(exc, "status_code", None)
    auth = isinstance(exc, (sdk.AuthenticationError, sdk.PermissionDeniedError))
    retryable = (isinstance(exc, (sdk.APIConnectionError, sdk.RateLimitError,
                                  sdk.InternalServerError))
                 or (status is not None and (status in _RETRYABLE_STATUS or status >= 500)))
    response = getattr(exc, "response", None)
    retry_after = retry_after_seconds(getattr(response, "headers", None), cap_s) if retryable else None
    if auth:
        message = f"the API refused the credentials (HTTP {status})"
        hint = "check the API key (credentials block or environment variable) and its permissions"
    elif isinstance(exc, sdk.APITimeoutError):
        message, hint = "the call timed out", "raise timeout_s or retry later"
    elif isinstance(exc, sdk.APIConnectionError):
        message, hint = "could not connect to the API", "check base_url and the network"
    else:
        message = f"the API answered HTTP {status}: {clean(str(exc))[:300]}"
        hint = ("retry later" if retryable else
                "check the model name and the request settings (max_tokens, temperature)")
    return LLMError(message, retryable=retryable, retry_after_s=retry_after, status_code=status,
                    auth=auth, subject=subject, hint=hint)
