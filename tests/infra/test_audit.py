"""The audit trail: hash-chained JSON lines; edits, removals and reorderings are named by line."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from mendflow.infra import audit


def fill(root: Path, n: int = 5) -> list[bytes]:
    for i in range(n):
        audit.append(root, who=audit.AUTOMATION, what="commit", mission=f"m{i % 2}",
                     repository="/repo", why=audit.Why(finding_ids=(f"f{i}",), gates=("syntax: passed",)),
                     details={"commit": f"{i:040x}"})
    return audit.audit_path(root).read_bytes().splitlines(keepends=True)


def test_an_intact_chain_verifies(tmp_path):
    lines = fill(tmp_path)
    verdict = audit.verify(tmp_path)
    assert verdict.ok and verdict.entries == 5 and verdict.bad_line is None
    first = json.loads(lines[0])
    assert first["prev"] == audit.GENESIS and first["seq"] == 1
    assert json.loads(lines[1])["prev"] == audit.hashlib.sha256(lines[0].rstrip(b"\n")).hexdigest()
    assert {"who", "what", "why", "when", "prev", "hash"} <= set(first)
    assert [e["seq"] for e in audit.read(tmp_path, mission="m1")] == [2, 4]


def test_a_recorded_commit_is_found_by_mission_patch_and_sha(tmp_path):
    fill(tmp_path, 3)
    audit.append(tmp_path, who=audit.AUTOMATION, what="commit", mission="m1",
                 details={"commit": "c" * 40, "patch_id": "p-1"})
    assert audit.has_commit(tmp_path, "m1", "p-1", "c" * 40)
    assert not audit.has_commit(tmp_path, "m0", "p-1", "c" * 40)
    assert not audit.has_commit(tmp_path, "m1", "p-2", "c" * 40)
    assert not audit.has_commit(tmp_path / "none", "m1", "p-1", "c" * 40)


def test_an_edited_line_is_named(tmp_path):
    lines = fill(tmp_path)
    lines[2] = lines[2].replace(b'"f2"', b'"f9"')
    audit.audit_path(tmp_path).write_bytes(b"".join(lines))
    verdict = audit.verify(tmp_path)
    assert not verdict.ok and verdict.bad_line == 3
    assert "line 3: edited" in verdict.message


def test_an_edited_and_rehashed_line_breaks_the_next_link(tmp_path):
    lines = fill(tmp_path)
    entry = json.loads(lines[1])
    entry["who"] = {"kind": "user", "name": "mallory"}
    entry["hash"] = audit._entry_hash(entry)
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    audit.audit_path(tmp_path).write_bytes(b"".join(lines))
    verdict = audit.verify(tmp_path)
    assert verdict.bad_line == 3 and "'prev'" in verdict.message


def test_a_removed_line_is_named(tmp_path):
    lines = fill(tmp_path)
    del lines[1]
    audit.audit_path(tmp_path).write_bytes(b"".join(lines))
    verdict = audit.verify(tmp_path)
    assert verdict.bad_line == 2 and "removed" in verdict.message


def test_reordered_lines_are_named(tmp_path):
    lines = fill(tmp_path)
    lines[3], lines[4] = lines[4], lines[3]
    audit.audit_path(tmp_path).write_bytes(b"".join(lines))
    verdict = audit.verify(tmp_path)
    assert verdict.bad_line == 4 and "reordered" in verdict.message


def test_removing_the_newest_lines_is_detected(tmp_path):
    lines = fill(tmp_path)
    audit.audit_path(tmp_path).write_bytes(b"".join(lines[:3]))
    verdict = audit.verify(tmp_path)
    assert verdict.bad_line == 4 and "missing" in verdict.message


def _appender(root: str, name: str) -> None:
    for i in range(25):
        audit.append(Path(root), who=audit.Actor(kind="automation", name=name), what="commit",
                     details={"i": i})


@pytest.mark.slow
def test_concurrent_appends_keep_one_chain(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_appender, args=(str(tmp_path), f"w{n}")) for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    verdict = audit.verify(tmp_path)
    assert verdict.ok and verdict.entries == 75
