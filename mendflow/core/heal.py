"""The contracts of healing: the record of one error group, each attempt, the result.

Pure code: the models, and the judgment of a reproduction (:func:`judge_reproduction`)
from the test runs that pytest reported.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from mendflow.core.error_groups import ErrorGroup, RepoFiles, app_frames
from mendflow.core.errors import ConfigError
from mendflow.core.models import Contract, MissionResult, TestRun
from mendflow.core.tracebacks import (
    ExceptionRecord,
    Frame,
    TracebackEvent,
    format_record,
    parse_text,
)

HealStatus = Literal["open", "fixed", "awaiting_approval", "refused", "external",
                     "needs_model_fixer", "failed"]


class HealAnalysis(Contract):
    """The model's analysis of the error (``analysis`` of the ``propose_fix`` tool)."""

    fixable: bool
    category: str
    root_cause: str
    affected_files: tuple[str, ...] = ()
    confidence: Literal["high", "medium", "low"]


class HealAttempt(Contract):
    """One model attempt at a group, and why it was accepted or refused."""

    attempt: int
    analysis: HealAnalysis | None = None
    accepted: bool = False
    reason: str = Field(default="", description="why it was refused ('' when accepted)")
    reproduction_test: str | None = Field(default=None, description="the test file the reply wrote")
    patch_id: str | None = None


class HealRecord(Contract):
    """What mendflow keeps for one error group (``<state>/heal/<fingerprint>.json``)."""

    fingerprint: str
    repository: str
    exception_type: str
    message: str
    count: int
    first_seen: str | None = None
    last_seen: str | None = None
    path: str | None = None
    function: str | None = None
    line: int | None = None
    traceback: str = Field(default="", description="the sample traceback, chain included")
    context: str = Field(default="", description="the source around the located frame, as sent")
    status: HealStatus = "open"
    reason: str = ""
    attempts: tuple[HealAttempt, ...] = ()
    branch: str | None = None
    commit: str | None = None
    flow_run_id: str | None = None
    updated_at: str | None = Field(default=None, description="ISO 8601, UTC")

    @classmethod
    def of_group(cls, group: ErrorGroup, repository: str) -> HealRecord:
        """A new (open) record of a group."""
        return cls(fingerprint=group.fingerprint, repository=repository,
                   exception_type=group.exception_type, message=group.message,
                   count=group.count, first_seen=group.first_seen, last_seen=group.last_seen,
                   path=group.path, function=group.function, line=group.line,
                   traceback=group.sample.text)


class HealResult(MissionResult):
    """``mendflow heal run --json``: the mission fields, plus the group and its test."""

    fingerprint: str
    reproduction_test: str | None = Field(default=None, description="the committed test's path")
    heal_status: HealStatus = "open"
    reason: str = ""
    attempts: tuple[HealAttempt, ...] = ()
    commit: str | None = Field(default=None, description="the commit on the heal branch")


class Reproduction(Contract):
    """The verdict on a reproduction test run on one tree."""

    ok: bool
    reason: str = ""


def _exc_matches(found: str, wanted: str) -> bool:
    """Exception types agree, qualified or not (``shop.errors.E`` and ``E``)."""
    return found == wanted or found.rsplit(".", 1)[-1] == wanted.rsplit(".", 1)[-1]


def judge_reproduction(run: TestRun | None, group: ErrorGroup, repo: RepoFiles, *,
                       fixed: bool) -> Reproduction:
    """Does a run of the reproduction test show the error (``fixed=False``) or not?

    Before the fix, some test must fail with the group's exception type raised
    from the group's innermost application frame (same file, same function).
    After the fix, every test of the reproduction must pass.

    Args:
        run: the test run of the reproduction alone (pytest with ``--tb=native``).
        group: the error group.
        repo: the repository's files (to map the test run's frames).
        fixed: False on the unfixed tree, True with the fix.

    Returns:
        The verdict; ``reason`` says what was wrong, in words a model can act on.
    """
    if run is None or not run.cases:
        errors = "; ".join(run.collection_errors) if run and run.collection_errors else ""
        return Reproduction(ok=False, reason="the reproduction test did not run (no test "
                            "collected" + (f"; collection errors in {errors}" if errors else "")
                            + ")")
    bad = [c for c in run.cases if c.outcome in ("failed", "error")]
    if fixed:
        if bad:
            return Reproduction(ok=False, reason="the reproduction test still fails with the "
                                f"fix: {bad[0].nodeid}: {bad[0].message or bad[0].outcome}")
        return Reproduction(ok=True)
    wanted = f"{group.exception_type} in {group.path}:{group.function}"
    if not bad:
        return Reproduction(ok=False, reason="the reproduction test passes on the unfixed "
                            f"code: it must fail with {wanted}")
    seen = []
    for case in bad:
        events = parse_text(case.detail or "")
        if not events:
            seen.append(f"{case.nodeid}: {case.message or case.outcome}")
            continue
        for event in events:  # an exception group's failing members are one event each
            frames = app_frames(event, repo)
            inner = frames[-1] if frames else None
            if _exc_matches(event.last.type, group.exception_type) and inner is not None \
                    and inner.path == group.path and inner.frame.function == group.function:
                return Reproduction(ok=True)
        where = f"{inner.path}:{inner.frame.function}" if inner else "(no repository frame)"
        seen.append(f"{case.nodeid}: {events[-1].last.type} in {where}")
    return Reproduction(ok=False, reason=f"the reproduction test fails for another reason "
                        f"(wanted {wanted}): " + "; ".join(seen[:3]))


def event_from_payload(payload: dict[str, Any]) -> TracebackEvent:
    """The traceback event of a ``mendflow.exception.raised`` event's payload.

    Args:
        payload: ``{"type", "message", "frames": [{"file", "line", "function",
            "source"}], "chain": [<the same, for the causes, oldest first>],
            "timestamp"}`` (see :mod:`mendflow.heal`).

    Returns:
        The event (its text printed as Python prints a traceback).

    Raises:
        ConfigError: the payload has no exception type.
    """
    def record(item: dict[str, Any]) -> ExceptionRecord:
        frames = tuple(Frame(file=str(f.get("file", "?")), line=f.get("line"),
                             function=str(f.get("function") or "<module>"),
                             source=f.get("source") or None)
                       for f in item.get("frames") or () if isinstance(f, dict))
        return ExceptionRecord(type=str(item["type"]), message=str(item.get("message", "")),
                               frames=frames)

    if not isinstance(payload, dict) or not payload.get("type"):
        raise ConfigError("the event payload has no exception type", subject="event",
                          hint="emit events with mendflow.heal.install()")
    chain = [record(c) for c in payload.get("chain") or () if isinstance(c, dict) and c.get("type")]
    chain.append(record(payload))
    text = "\n\n".join(format_record(r) for r in chain)
    return TracebackEvent(chain=tuple(chain), timestamp=payload.get("timestamp"), text=text)
