"""The live hook and exception groups: one event per distinct failing task of an
asyncio.TaskGroup, with the log scanner's fingerprint for the same failure."""

from __future__ import annotations

import asyncio
import builtins
import queue
import sys
import traceback

import pytest

from mendflow.core.error_groups import event_fingerprint
from mendflow.core.tracebacks import parse_text
from mendflow.heal import Hook

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11),
                                reason="exception groups and TaskGroup are Python 3.11+")


async def fetch(key):
    return {"a": 1}[key]


async def parse(text):
    return int(text)


async def nested():
    async with asyncio.TaskGroup() as tg:
        tg.create_task(parse("x"))
        tg.create_task(parse("y"))  # the same failure again: one event


async def main():
    async with asyncio.TaskGroup() as tg:
        tg.create_task(fetch("b"))
        tg.create_task(nested())


def raised() -> BaseException:
    try:
        asyncio.run(main())
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError("main() did not fail")


def events_of(hook: Hook) -> list[dict]:
    found = []
    while True:
        try:
            found.append(hook._queue.get_nowait())
        except queue.Empty:
            return found


def test_each_distinct_failing_task_is_one_event_with_the_groups_in_its_chain(tmp_path):
    hook = Hook(repository=str(tmp_path), api_url=None, spool_dir=tmp_path / "spool",
                rate_limit_s=60.0, max_message_chars=500, retry_s=60.0)
    group = raised()
    hook.report(group, "excepthook")
    events = events_of(hook)
    payloads = [(e["payload"]["type"], e["payload"]["frames"][-1]["function"]) for e in events]
    assert payloads == [("KeyError", "fetch"), ("ValueError", "parse")]
    chain = [record["type"] for record in events[1]["payload"]["chain"]]
    assert chain == ["ExceptionGroup", "ExceptionGroup"]
    assert events[1]["payload"]["chain"][1]["frames"][-1]["function"] == "__aexit__"
    assert hook.stats.exceptions == 1 and hook.stats.rate_limited == 0
    # the same failure, printed in a log, gets the same fingerprint from the log scanner
    printed = parse_text("".join(traceback.format_exception(group)))
    assert [event_fingerprint(e) for e in printed] == [e["payload"]["fingerprint"] for e in events]


def test_a_member_never_raised_takes_its_groups_frames(tmp_path):
    hook = Hook(repository=str(tmp_path), api_url=None, spool_dir=tmp_path / "spool",
                rate_limit_s=60.0, max_message_chars=500, retry_s=60.0)
    try:
        raise builtins.ExceptionGroup("bad rows", [ValueError(f"row {i}") for i in range(30)])
    except Exception as exc:  # noqa: BLE001
        hook.report(exc, "logging")
    (event,) = events_of(hook)
    assert event["payload"]["type"] == "ValueError"
    assert event["payload"]["frames"][-1]["function"] == \
        "test_a_member_never_raised_takes_its_groups_frames"
