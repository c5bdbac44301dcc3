"""Benchmark the tokens one Claude fix costs: a mission per bug fixture, against a fake API.

Usage::

    .venv/bin/python bench/llm_tokens.py [BUG ...]

For each bug of ``tests/fixtures/bugs/`` (default: the five of ``BUG_NAMES``)
the bench copies the project into a temporary git repository and runs a real
mission (real pytest/coverage/ruff/mypy/bandit, real Prefect in ephemeral
mode, the real ``anthropic`` SDK) whose fixer is Claude, pointed at a fake
Messages API started in this process on 127.0.0.1. The fake answers the
fixture's ``fix.json`` (the correct ``propose_fix`` input), so every mission
should accept exactly one fix.

The token figures are **estimates**: counting real tokens needs the API
(``messages.count_tokens``), so the fake reports

- ``usage.input_tokens = ceil(len(json.dumps({system, messages, tools})) / 4)``
  of the request it received (the whole prompt: system prompt, tool schema
  and the user message with the selected context), and
- ``usage.output_tokens = ceil(len(json.dumps(content)) / 4)`` of its reply,

using the standard estimate of about 4 characters per token. mendflow reads
these through the SDK like real usage, so the mission's ``llm_usage`` is
printed too as a cross-check.

It prints, per fixture: the requests made, each accepted fix's input and
output tokens, and the context size (characters of the user message, the part
mendflow selects; the rest of the prompt is the same for every call); then
the median input and output tokens per accepted fix against the goal
(median input <= 8000 tokens). It asserts nothing and exits 0 unless a
mission failed to run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Prefect's ephemeral API keeps its database under PREFECT_HOME: use a throwaway one.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="mendflow-bench-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ["MENDFLOW_HOME"] = tempfile.mkdtemp(prefix="mendflow-bench-home-")
# Never send a real key, not even to the local fake.
os.environ["ANTHROPIC_API_KEY"] = "sk-ant-bench-not-a-real-key"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from mendflow.core.models import MissionResult
from mendflow.flows.mission import maintenance_mission
from tests.fakes.fake_messages_api import FakeMessagesAPI, tool_input_reply
from tests.fixtures.bugs import BUG_NAMES, copy_project, load_bug

GOAL_MEDIAN_INPUT_TOKENS = 8000
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}


@dataclass
class Figures:
    """What one mission cost."""

    bug: str
    requests: int
    accepted: int
    fixes: list[tuple[int, int]]  # (input, output) tokens of each accepted fix
    context_chars: list[int]  # characters of each request's user message
    prompt_chars: list[int]  # characters of each request's system + messages + tools JSON
    result: MissionResult


def make_repo(bug: str, root: Path) -> Path:
    """Copy the fixture's project into ``root/<bug>`` and commit it (git CLI)."""
    repo = copy_project(bug, root / bug)
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env, capture_output=True)
    return repo


def write_config(bug: str, root: Path, fake: FakeMessagesAPI) -> Path:
    tools = {"mypy": {"enabled": False}, **load_bug(bug).tools}
    data = {"environment": {"type": "interpreter", "python": sys.executable}, "tools": tools,
            "fixer": {"type": "anthropic", "base_url": fake.root_url, "model": "claude-bench"},
            "mission": {"max_iterations": 2}}
    path = root / f"{bug}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def user_chars(body: dict[str, Any]) -> int:
    content = body["messages"][0]["content"]
    return len(content if isinstance(content, str) else "".join(b.get("text", "") for b in content))


def run_bug(bug: str, root: Path) -> Figures:
    """One mission on one fixture; the fake answers its fix.json with estimated usage."""
    with FakeMessagesAPI(estimate_usage=True) as fake:
        fake.enqueue(tool_input_reply(load_bug(bug).fix))
        repo = make_repo(bug, root)
        result = maintenance_mission(path=str(repo), config_file=str(write_config(bug, root, fake)),
                                     mission_id=f"bench-{bug.replace('_', '-')}")
        served = list(fake.served)
    accepted = sum(1 for p in result.patches if p.status == "accepted" and p.fixer == "anthropic")
    fixes, contexts, prompts = [], [], []
    for request, reply in served:
        body = request.json
        contexts.append(user_chars(body))
        prompts.append(len(_prompt_json(body)))
        if reply.status == 200 and accepted:  # the one fix this fixture's fake serves
            usage = json.loads(reply.body)["usage"]
            fixes.append((usage["input_tokens"], usage["output_tokens"]))
    return Figures(bug, len(served), accepted, fixes[:accepted], contexts, prompts, result)


def _prompt_json(body: dict[str, Any]) -> str:
    return json.dumps({key: body.get(key) for key in ("system", "messages", "tools")},
                      ensure_ascii=False)


def print_table(rows: list[Figures]) -> None:
    print(f"{'fixture':<18} {'requests':>8} {'accepted':>8} {'input tok':>10} {'output tok':>10} "
          f"{'context chars':>13} {'prompt chars':>12}  llm_usage (mission)")
    for row in rows:
        inputs = ",".join(str(i) for i, _ in row.fixes) or "-"
        outputs = ",".join(str(o) for _, o in row.fixes) or "-"
        usage = row.result.llm_usage
        print(f"{row.bug:<18} {row.requests:>8} {row.accepted:>8} {inputs:>10} {outputs:>10} "
              f"{','.join(map(str, row.context_chars)) or '-':>13} "
              f"{','.join(map(str, row.prompt_chars)) or '-':>12}  "
              f"calls={usage.calls} in={usage.input_tokens} out={usage.output_tokens}"
              + (f" failures={len(usage.failures)}" if usage.failures else ""))


def print_summary(rows: list[Figures]) -> None:
    fixes = [fix for row in rows for fix in row.fixes]
    print()
    print("tokens are estimates: ceil(characters of the JSON / 4), see the module docstring")
    if not fixes:
        print("no accepted fix: nothing to summarize")
        return
    median_in = statistics.median(i for i, _ in fixes)
    median_out = statistics.median(o for _, o in fixes)
    verdict = "meets" if median_in <= GOAL_MEDIAN_INPUT_TOKENS else "MISSES"
    contexts = [c for row in rows for c in row.context_chars]
    print(f"accepted fixes: {len(fixes)} of {len(rows)} fixtures")
    print(f"median input tokens per accepted fix:  {median_in:g} "
          f"({verdict} the goal <= {GOAL_MEDIAN_INPUT_TOKENS})")
    print(f"median output tokens per accepted fix: {median_out:g}")
    print(f"context (user message) characters: median {statistics.median(contexts):g}, "
          f"max {max(contexts)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bugs", nargs="*", default=list(BUG_NAMES),
                        help="fixture names under tests/fixtures/bugs (default: the five bugs)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mendflow-bench-llm-") as tmp:
        rows = [run_bug(bug, Path(tmp)) for bug in args.bugs]
    print_table(rows)
    print_summary(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
