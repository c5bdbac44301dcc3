"""The ledger checkpoint: a round trip restores an equal ledger, and a stale, corrupt or
foreign checkpoint is refused (the resume then replays from the base commit)."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mendflow.core.checkpoint import (
    LedgerCheckpoint,
    LoopPosition,
    checkpoint_problem,
    config_digest,
)
from mendflow.core.config import MendflowConfig
from mendflow.core.learning import AttemptRecord, Choice, Prior
from mendflow.core.models import (
    BackupEntry,
    Finding,
    GateResult,
    LLMUsage,
    Measurement,
    PatchOutcome,
    TargetEnv,
    TestCase,
    TestRun,
    ToolResult,
    ValidationReport,
    ValidationTiming,
)
from mendflow.flows.checkpoint import ledger_checkpoint, restore_ledger
from mendflow.flows.ledger import MissionLedger
from mendflow.infra.budget import mission_budget, release_mission_budgets
from mendflow.infra.layout import StateLayout
from mendflow.tasks.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from mendflow.tasks.report import validation_entry
from mendflow.tasks.sandbox import WorktreeSandbox, rewind_worktree
from mendflow.tasks.vcs import commit_patch, resolve_repository
from tests.helpers.git import git
from tests.helpers.sandbox import FILES, git_diff, make_patch

FINDING = Finding(id="f1", source="pytest", rule="failed", severity="high",
                  category="test-failure", path="pkg/core.py", line=3, message="boom",
                  test_id="tests/test_core.py::test_add", root_cause="pkg/core.py::add")


def _measurement(tree: str, findings: tuple[Finding, ...]) -> Measurement:
    run = TestRun(collected=2, cases=(TestCase(nodeid="t::a", outcome="passed", duration_s=0.25),
                                      TestCase(nodeid="t::b", outcome="failed", message="x")),
                  coverage_percent=87.5)
    return Measurement(tree=tree, results=(ToolResult(tool="pytest", findings=findings,
                                                      test_run=run, duration_s=1.5),),
                       findings=findings, score=71.25, loc=40)


def _ledger(sandbox, config: MendflowConfig) -> MissionLedger:
    baseline = _measurement("t0", (FINDING,))
    env = TargetEnv(python=Path(sys.executable), kind="interpreter", fingerprint="env-1")
    return MissionLedger(
        mission_id=sandbox.mission_id, target=resolve_repository(sandbox.repo_root),
        sandbox=sandbox, env=env, config=config, baseline=baseline, current=baseline,
        backups_dir=Path("/unused"), config_hash=config_digest(config, env.fingerprint))


def _fill(ledger: MissionLedger) -> None:
    """Every field a checkpoint carries, with non-default values."""
    after = _measurement("t1", ())
    report = ValidationReport(patch_id="p-1", accepted=True, after=after,
                              gates=(GateResult(gate="syntax", passed=True),),
                              fixed_finding_ids=("f1",))
    ledger.current = ledger.batch_base = after
    ledger.outcomes = [PatchOutcome(id="p-1", finding_ids=("f1",), fixer="ruff",
                                    status="accepted", commit="c" * 40, validation=report,
                                    title="Fix add", iteration=1, files=("pkg/core.py",))]
    ledger.validations = [report]
    ledger.validation_timings = [ValidationTiming(patch_id="p-1", duration_s=2.5, tests_run=1,
                                                  tests_total=2, full_run=True)]
    ledger.backups = [BackupEntry(path="pkg/core.py", sha256_before="a", sha256_after="b",
                                  commit="c" * 40, patch_id="p-1")]
    ledger.tried = {frozenset({"f1", "f0"}), frozenset({"f2"})}
    ledger.rejected_patches = {"p-9", "p-3"}
    ledger.priors = {("ruff", "lint"): Prior(strategy="ruff", category="lint", accepted=3)}
    ledger.choices = [Choice(category="test-failure", strategy="ruff", alpha=2.0)]
    ledger.attempt_log = [AttemptRecord(
        key="k1", mission_id=ledger.mission_id, repository="/r", finding_id="f1",
        source="pytest", rule="failed", category="test-failure", severity="high",
        path="pkg/core.py", strategy="claude", fixer="anthropic", result="accepted",
        tokens_in=1200, created_at=datetime(2026, 12, 1, tzinfo=timezone.utc))]
    ledger.llm_usage = LLMUsage(calls=3, input_tokens=1000, output_tokens=200,
                                cache_read_input_tokens=50)
    ledger.fixer_disabled = None
    ledger.iterations = 1
    ledger.baseline_s = 12.5


@pytest.fixture
def sandbox(make_repo):
    return WorktreeSandbox().create(resolve_repository(make_repo(FILES)), "m-ckpt", StateLayout.resolve())


@pytest.fixture
def config() -> MendflowConfig:
    return MendflowConfig.model_validate({"fixer": {"type": "anthropic", "model": "claude-test",
                                                    "budget": {"max_llm_calls_per_hour": 5}}})


def _commit(sandbox, text: str, pid: str) -> str:
    patch = make_patch(git_diff(sandbox.path, {"pkg/core.py": text}), ("pkg/core.py",), pid=pid)
    WorktreeSandbox().apply(sandbox, patch)
    return commit_patch(sandbox, patch, "ok", sandbox.path.parent / "b",
                        "2026-01-01T00:00:00+00:00").commit


def test_a_checkpoint_round_trip_restores_an_equal_ledger_and_charges_the_budget(sandbox,
                                                                                  config):
    ledger = _ledger(sandbox, config)
    _fill(ledger)
    position = LoopPosition(iteration=2, groups=((FINDING,),), next_group=1, attempted=1,
                            accepted=1)
    text = ledger_checkpoint(ledger, position).model_dump_json()

    fresh = _ledger(sandbox, config)
    try:
        restored_at = restore_ledger(fresh, LedgerCheckpoint.model_validate_json(text))
        fields = ("current", "batch_base", "outcomes", "validation_timings",
                  "backups", "tried", "rejected_patches", "priors", "choices", "attempt_log",
                  "llm_usage", "fixer_disabled", "iterations", "baseline_s")
        assert {f: getattr(fresh, f) for f in fields} == {f: getattr(ledger, f) for f in fields}
        # a validation keeps what the report shows of it, not its measurement's tool results
        assert [validation_entry(v) for v in fresh.validations] == \
            [validation_entry(v) for v in ledger.validations]
        assert fresh.validations[0].after.results == () and ledger.validations[0].after.results
        assert restored_at == position
        # the LLM budget counts the calls the checkpointed part of the mission made
        spent = mission_budget(ledger.mission_id, config.fixer.budget).snapshot()
        assert (spent.calls, spent.input_tokens, spent.output_tokens) == (3, 1050, 200)
    finally:
        release_mission_budgets(ledger.mission_id)


def test_a_stale_corrupt_or_foreign_checkpoint_is_refused(sandbox, config):
    layout = StateLayout.resolve()
    ledger = _ledger(sandbox, config)
    _fill(ledger)
    assert load_checkpoint.fn(layout, sandbox, ledger.config_hash).problem is None  # no file

    first = _commit(sandbox, "A = 1\n", "p-1")
    assert save_checkpoint.fn(layout, sandbox, ledger_checkpoint(ledger, LoopPosition(iteration=2)))
    read = load_checkpoint.fn(layout, sandbox, ledger.config_hash)
    assert read.problem is None and read.checkpoint.commit == first

    # a later commit, then a rewind to the base (an earlier replay): still on the branch
    _commit(sandbox, "A = 2\n", "p-2")
    rewind_worktree(sandbox, sandbox.base_commit)
    assert load_checkpoint.fn(layout, sandbox, ledger.config_hash).checkpoint is not None

    other = config.model_copy(update={"mission": config.mission.model_copy(
        update={"max_iterations": 9})})
    assert "config" in load_checkpoint.fn(layout, sandbox, config_digest(other, "env-1")).problem
    assert config_digest(config, "env-2") != ledger.config_hash  # another environment

    # the branch was reset elsewhere: the checkpoint's commit is on no tip any more
    git(sandbox.path, "update-ref", "-d", f"refs/mendflow/{sandbox.mission_id}/replay")
    assert "not on branch" in load_checkpoint.fn(layout, sandbox, ledger.config_hash).problem

    path = checkpoint_path(layout, sandbox.mission_id)
    path.write_text(path.read_text()[:-40])  # cut short (a disk filled up)
    assert "not a valid checkpoint" in load_checkpoint.fn(layout, sandbox,
                                                          ledger.config_hash).problem


def test_checkpoint_identity_rules():
    checkpoint = LedgerCheckpoint.model_validate({
        "mission_id": "m-1", "base_commit": "b" * 40, "commit": "c" * 40, "config_hash": "h",
        "position": {"iteration": 1}, "current": _measurement("t", ()).model_dump(),
        "batch_base": _measurement("t", ()).model_dump()})
    same = {"mission_id": "m-1", "base_commit": "b" * 40, "config_hash": "h"}
    assert checkpoint_problem(checkpoint, **same) is None
    assert "mission m-1" in checkpoint_problem(checkpoint, **{**same, "mission_id": "m-2"})
    assert "base commit" in checkpoint_problem(checkpoint, **{**same, "base_commit": "d" * 40})
    assert "config" in checkpoint_problem(checkpoint, **{**same, "config_hash": "other"})
    with pytest.raises(ValueError):  # another schema version is never read
        LedgerCheckpoint.model_validate({**checkpoint.model_dump(), "schema_version": 2})
