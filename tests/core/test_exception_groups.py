"""Exception groups (Python 3.11+) in logs, as the real interpreter prints them:
each failing task of an asyncio.TaskGroup becomes its own event and error group."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from mendflow.core.error_groups import RepoFiles, group_events
from mendflow.core.exception_groups import split_group
from mendflow.core.heal import judge_reproduction
from mendflow.core.measurements import TestCase, TestRun
from mendflow.core.tracebacks import parse_text

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11),
                                reason="exception groups and TaskGroup are Python 3.11+")

SERVICE = '''\
import asyncio
import logging

logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s")


async def fetch(key):
    return {"a": 1}[key]


async def parse(text):
    return int(text)


async def inner_group():
    async with asyncio.TaskGroup() as tg:
        tg.create_task(parse("x"))


async def main():
    async with asyncio.TaskGroup() as tg:
        tg.create_task(fetch("b"))
        tg.create_task(inner_group())


def validate(values):
    raise ExceptionGroup("bad rows", [ValueError(f"row {v}") for v in values])


try:
    asyncio.run(main())
except Exception:
    logging.exception("batch failed")
try:
    try:
        asyncio.run(main())
    except* KeyError:
        raise RuntimeError("lookup failed") from None
except Exception:
    logging.exception("retry failed")
try:
    validate(range(20))
except Exception:
    logging.exception("import failed")
logging.error("done")
'''


@pytest.fixture(scope="module")
def printed(tmp_path_factory) -> str:
    """What this interpreter writes to its log for three kinds of exception group."""
    root = tmp_path_factory.mktemp("svc")
    (root / "svc").mkdir()
    (root / "svc" / "jobs.py").write_text(SERVICE, "utf-8")
    proc = subprocess.run([sys.executable, "svc/jobs.py"], cwd=root, capture_output=True,
                          text=True, check=True, timeout=60)
    return proc.stderr


def test_each_failing_task_of_a_task_group_is_an_event_with_its_own_frames(printed):
    events = parse_text(printed)
    leaves = [(e.last.type, e.last.frames[-1].function) for e in events]
    assert leaves == [
        ("KeyError", "fetch"), ("ValueError", "parse"),  # the nested group's task too
        ("RuntimeError", "<module>"), ("ValueError", "parse"),  # except* re-raised
        ("ValueError", "validate"),  # 20 unraised rows: one event, at the group's frames
    ]
    nested = events[1].chain
    assert [r.type for r in nested] == ["ExceptionGroup", "ExceptionGroup", "ValueError"]
    assert nested[1].frames[0].function == "inner_group"
    assert "invalid literal for int()" in events[1].last.message
    assert events[2].chain[0].message == " (2 sub-exceptions)"  # never raised: no frames
    assert events[2].chain[0].frames == ()
    assert all(e.timestamp and "+ Exception Group Traceback" in events[0].text for e in events)


def test_the_groups_point_at_the_repository_frame_of_each_failure(printed):
    repo = RepoFiles(["svc/__init__.py", "svc/jobs.py"])
    groups = {(g.exception_type, g.function): g for g in group_events(parse_text(printed), repo)}
    assert set(groups) == {("KeyError", "fetch"), ("ValueError", "parse"),
                           ("RuntimeError", "<module>"), ("ValueError", "validate")}
    assert groups[("ValueError", "parse")].count == 2
    assert all(g.path == "svc/jobs.py" for g in groups.values())


def test_a_plain_traceback_after_a_group_is_still_read(printed):
    text = printed + textwrap.dedent('''\
        2026-01-01 00:00:00,000 ERROR later
        Traceback (most recent call last):
          File "/srv/svc/jobs.py", line 3, in f
        ZeroDivisionError: division by zero
        ''')
    assert parse_text(text)[-1].last.type == "ZeroDivisionError"


def test_split_group_leaves_out_pythons_notes_and_keeps_the_frames_of_members():
    block = ["  + Exception Group Traceback (most recent call last):",
             '  |   File "a.py", line 1, in <module>',
             "  | ExceptionGroup: g (17 sub-exceptions)",
             "  +-+---------------- 1 ----------------",
             "    | ValueError: 1",
             "    +---------------- ... ----------------",
             "    | and 16 more exceptions",
             "    +------------------------------------"]
    parts = split_group(block)
    assert parts.own == ("Traceback (most recent call last):", '  File "a.py", line 1, in <module>',
                         "ExceptionGroup: g (17 sub-exceptions)")
    assert parts.members == (("| ValueError: 1",),)
    with pytest.raises(ValueError):
        split_group([])



def test_a_reproduction_failing_inside_a_task_group_reproduces_the_member_it_names(printed):
    repo = RepoFiles(["svc/__init__.py", "svc/jobs.py"])
    groups = {(g.exception_type, g.function): g for g in group_events(parse_text(printed), repo)}
    block = printed.split("ERROR retry failed")[0]  # the first group: KeyError and ValueError
    run = TestRun(collected=1, cases=(TestCase(nodeid="tests/test_jobs.py::test_batch",
                                               outcome="failed", detail=block),))
    for key in (("KeyError", "fetch"), ("ValueError", "parse")):
        assert judge_reproduction(run, groups[key], repo, fixed=False).ok
    other = judge_reproduction(run, groups[("RuntimeError", "<module>")], repo, fixed=False)
    assert not other.ok and "wanted RuntimeError in svc/jobs.py:<module>" in other.reason
