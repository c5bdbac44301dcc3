"""Replay hostile model replies through the real anthropic SDK and count what mendflow refuses.

Usage::

    .venv/bin/python bench/adversarial.py [-v]

A real git repository (a bug in ``calc.py``, a root ``test.py`` that pytest
collects, a binary file, a symlink to ``/etc``, CI files, a ``.env``, and a
comment that tries a prompt injection) gets one real failing-test finding
(from a real pytest run). For each of more than 200 hostile replies, the fake
Messages API (``tests/fakes``) on 127.0.0.1 serves the reply and the real
``anthropic`` SDK fetches it through mendflow's Claude fixer; then the reply
goes exactly where a mission sends it: the fixer's guards (schema, paths,
denylist, size, binary, bidi, dangerous code, syntax), ``git apply`` through
the sandbox's guarded apply, the ``syntax`` and ``test-files`` gates, and, for
anything left, a real measurement of the patched tree under bubblewrap and
every validation gate.

It prints the tally per category and per refusal reason, and whether every
reply was refused with a reason and none was applied (after each reply the
worktree is clean and the branch did not move). It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

os.environ["MENDFLOW_HOME"] = tempfile.mkdtemp(prefix="mendflow-bench-home-")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from adversarial_replies import CATEGORIES, FILES, NODEID  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from mendflow.core.config import AnthropicFixerConfig, GatesConfig, SandboxConfig, ToolsConfig  # noqa: E402
from mendflow.core.errors import PatchRejected  # noqa: E402
from mendflow.core.models import Measurement, OutputRejected, Patched, TargetEnv  # noqa: E402
from mendflow.infra.budget import Budget  # noqa: E402
from mendflow.infra.isolation import resolve_isolation  # noqa: E402
from mendflow.tasks.detect.pytest_run import measure_tests  # noqa: E402
from mendflow.tasks.fix.claude import ClaudeFixer, make_anthropic_client  # noqa: E402
from mendflow.tasks.sandbox.patching import apply_to_worktree, reset_worktree  # noqa: E402
from mendflow.tasks.validate import check_syntax, evaluate_gates  # noqa: E402
from mendflow.tasks.validate_tests import check_test_files  # noqa: E402
from tests.fakes import fake_messages_api as api  # noqa: E402
from tests.helpers.detect import new_repo  # noqa: E402
from tests.helpers.git import git  # noqa: E402
from tests.helpers.llm import failing_tests, git_worktree_sandbox, pytest_finding  # noqa: E402


def build_repo(root: Path) -> Path:
    repo = new_repo(root / "repo", FILES)
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00PNG")
    (repo / "outside").symlink_to("/etc")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "assets")
    return repo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="print every reply's fate")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mendflow-adversarial-"))
    repo = build_repo(work)
    nodeid_failures = failing_tests(repo, work / "junit")
    sandbox = git_worktree_sandbox(repo, "adversarial")
    finding = pytest_finding(sandbox.path, NODEID, nodeid_failures[NODEID], line=5)
    isolation = resolve_isolation(SandboxConfig(), hidden=[Path.home(), work / "repo"])
    env = TargetEnv(python=Path(sys.executable), kind="interpreter", fingerprint="bench",
                    isolation=isolation)
    tools = ToolsConfig()
    baseline_result = measure_tests(sandbox, env, tools)
    baseline = Measurement(tree="base", results=(baseline_result,),
                           findings=baseline_result.findings, score=0)
    head = git(sandbox.path, "rev-parse", "HEAD")
    gates = GatesConfig()
    tally: dict[str, Counter[str]] = defaultdict(Counter)
    problems: list[str] = []
    started = time.monotonic()
    validated = 0
    with api.FakeMessagesAPI() as fake:
        config = AnthropicFixerConfig(model="claude-test", budget={
            "max_llm_calls_per_hour": None, "max_input_tokens": None, "max_output_tokens": None})
        client = make_anthropic_client(config, SecretStr("sk-ant-bench-not-real"), fake.root_url)
        fixer = ClaudeFixer(config, budget=Budget(config.budget), client=client)
        for category, make in CATEGORIES.items():
            for number, scripted in enumerate(make(), start=1):
                fake.enqueue(scripted)
                verdict, was_validated = judge(fixer, sandbox, finding, baseline, env, tools, gates)
                validated += was_validated
                tally[category][verdict] += 1
                clean = git(sandbox.path, "status", "--porcelain", "--ignored") == "" and \
                    git(sandbox.path, "rev-parse", "HEAD") == head
                if verdict.startswith("ACCEPTED") or not clean:
                    problems.append(f"{category} #{number}: {verdict} (worktree clean: {clean})")
                if args.verbose:
                    print(f"{category} #{number}: {verdict}")
    elapsed = time.monotonic() - started
    total = sum(sum(c.values()) for c in tally.values())
    print(f"adversarial replies: {total} through the real anthropic SDK and a fake Messages API "
          f"({elapsed:.1f} s; {validated} needed a sandboxed test run)")
    for category, verdicts in tally.items():
        listed = ", ".join(f"{reason} {n}" for reason, n in verdicts.most_common())
        print(f"  {category:38} {sum(verdicts.values()):4}  {listed}")
    refused = total - len(problems)
    print(f"refused with a reason: {refused}/{total}; applied (accepted, or left in the "
          f"worktree): {len(problems)}")
    for problem in problems:
        print(f"  NOT REFUSED: {problem}")
    print(json.dumps({"replies": total, "refused": refused, "applied": len(problems),
                      "seconds": round(elapsed, 1)}))
    return 0


def judge(fixer, sandbox, finding, baseline, env, tools, gates) -> tuple[str, bool]:
    """One reply, through the path a mission takes; returns (verdict, needed a test run)."""
    proposal = fixer.propose(sandbox, [finding])
    if isinstance(proposal, OutputRejected):
        return f"fixer: {proposal.guard}", False
    if not isinstance(proposal, Patched):  # declined, or the call failed
        reason = getattr(proposal, "reason", None) or getattr(proposal, "error", None) or ""
        return f"declined ({reason[:40]})", False
    patch = proposal.patch
    try:
        apply_to_worktree(sandbox, patch)
    except PatchRejected as err:
        return f"apply: {err.reason}", False
    try:
        syntax = check_syntax(sandbox.path, patch.files)
        tests = check_test_files.fn(sandbox, patch, baseline.result_of("pytest").test_run, gates)
        if not syntax.passed or not tests.passed:
            return "gate: " + ", ".join(g.gate for g in (syntax, tests) if not g.passed), False
        result = measure_tests(sandbox, env, tools)
        after = Measurement(tree="after", results=(result,), findings=result.findings, score=0)
        report = evaluate_gates(baseline, after, patch, gates, syntax, tests)
        if report.accepted:
            return "ACCEPTED", True
        return f"validation: {(report.reason or '').split(' (')[0]}", True
    finally:
        reset_worktree(sandbox, patch)


if __name__ == "__main__":
    raise SystemExit(main())
