"""Benchmark one model call per defect: a default mission on N independent one-line bugs.

Usage::

    .venv/bin/python bench/oracle.py [--bugs 30] [--seed 7] [--keep]

It generates a repository (``shop/`` with N functions, each with one one-line
bug, over several modules; 2 to 5 failing tests per bug in different styles:
a direct assertion, a value kept in a variable, a loop, an exception raised
inside the library, a bug in a private helper the public function calls;
plus passing tests), commits it, and runs ``mendflow mission run --json`` as a
real process with the Claude fixer pointed at the fake Messages API of the
test suite (``tests/fakes/fake_messages_api.py``) on 127.0.0.1. The fake is
scripted as an oracle: for each request it serves the correct edits of every
bug whose failing test ids appear in the request (the ``propose_fix`` input a
perfect model would send), and declines when none does. The mission config
sets only the environment (this interpreter) and the fixer: iterations and
patches per iteration are the defaults.

It prints the bugs, the candidates attempted, the bugs fixed on the mission
branch (every failing test of the bug passes in the final measurement), the
model calls and calls / bugs (goal: every bug attempted and fixed, calls <=
1.2 x bugs). It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes import fake_messages_api as api  # noqa: E402
from tests.fakes.server import RecordedRequest, ScriptedReply  # noqa: E402

CLI = [sys.executable, "-m", "mendflow.cli"]
MODULES = ("pricing", "inventory", "orders", "shipping", "customers", "reports")


@dataclass
class Bug:
    """One generated bug: where it is, its fix and the tests that fail because of it."""

    name: str
    path: str
    good: str
    bad: str
    code: str
    tests: list[str] = field(default_factory=list)
    test_ids: list[str] = field(default_factory=list)


def _make_bug(kind: int, module: str, index: int, rng: random.Random) -> tuple[Bug, list[str]]:
    """One function with a one-line bug (5 kinds) and its tests' source."""
    k = rng.randint(2, 9) + index  # distinct constants keep every buggy line unique
    name = f"{module[:4]}_{index}"
    if kind == 0:
        good, bad = f"    return a + b * {k}\n", f"    return a - b * {k}\n"
        code = f"def {name}(a, b):\n{{line}}"
        tests = [f"assert {name}(1, 2) == {1 + 2 * k}",
                 f"result = {name}(0, 1)\n    assert result == {k}",
                 f"for a in range(3):\n        assert {name}(a, 1) == a + {k}"]
    elif kind == 1:
        good, bad = f"    return items[-1] + {k}\n", f"    return items[len(items)] + {k}\n"
        code = f"def {name}(items):\n{{line}}"
        tests = [f"assert {name}([1, 2]) == {2 + k}", f"assert {name}([5]) == {5 + k}"]
    elif kind == 2:
        good, bad = f"    return x >= {k}\n", f"    return x > {k}\n"
        code = f"def {name}(x):\n{{line}}"
        tests = [f"assert {name}({k})", f"flag = {name}({k})\n    assert flag is True"]
    elif kind == 3:
        good, bad = f"    return text.upper() + \"{k}\"\n", f"    return text.lower() + \"{k}\"\n"
        code = f"def {name}(text):\n{{line}}"
        tests = [f"assert {name}(\"ab\") == \"AB{k}\"",
                 f"words = [{name}(w) for w in (\"x\", \"y\")]\n    assert words == [\"X{k}\", \"Y{k}\"]",
                 f"assert {name}(\"\") == \"{k}\""]
    else:
        good, bad = f"    return x * {k}\n", f"    return x * {k} + 1\n"
        code = (f"def _{name}_scale(x):\n{{line}}\n\ndef {name}(values):\n"
                f"    return [_{name}_scale(v) - 1 for v in values]\n")
        tests = [f"assert {name}([1]) == [{k - 1}]",
                 f"assert {name}([1, 2]) == [{k - 1}, {2 * k - 1}]",
                 f"out = {name}([])\n    assert out == []\n    assert {name}([0]) == [-1]"]
    bug = Bug(name=name, path=f"shop/{module}.py", good=good, bad=bad, code=code)
    return bug, tests


def generate(count: int, seed: int) -> tuple[dict[str, str], list[Bug]]:
    """The repository's files and its bugs (every bug's failing test ids filled in)."""
    rng = random.Random(seed)
    bugs: list[Bug] = []
    sources: dict[str, list[str]] = {}
    tests: dict[str, list[str]] = {}
    for i in range(count):
        module = MODULES[i % len(MODULES)]
        bug, statements = _make_bug(rng.randrange(5), module, i, rng)
        bugs.append(bug)
        sources.setdefault(module, []).append(bug.code.replace("{line}", bug.bad))
        for n, statement in enumerate(statements):
            test_name = f"test_{bug.name}_{n}"
            tests.setdefault(module, []).append(f"def {test_name}():\n    {statement}\n")
            bug.test_ids.append(f"tests/test_{module}.py::{test_name}")
        tests[module].append(f"def test_{bug.name}_exists():\n    assert callable({bug.name})\n")
    files = {"pyproject.toml": '[project]\nname = "shop"\nversion = "0.1"\n',
             "shop/__init__.py": "", "tests/__init__.py": ""}
    for module, functions in sources.items():
        files[f"shop/{module}.py"] = "\n\n".join(functions)
        names = ", ".join(b.name for b in bugs if b.path == f"shop/{module}.py")
        files[f"tests/test_{module}.py"] = (f"from shop.{module} import {names}\n\n\n"
                                            + "\n\n".join(tests[module]))
    return files, bugs


def oracle(bugs: list[Bug]):
    """The fake model: the correct edits of every bug whose failing tests the request names."""
    def respond(request: RecordedRequest) -> ScriptedReply:
        content = request.json["messages"][0]["content"]
        text = content if isinstance(content, str) else "".join(
            b.get("text", "") for b in content)
        named = [b for b in bugs if any(t in text for t in b.test_ids)]
        if not named:
            return api.tool_reply(api.analysis(fixable=False, root_cause="not a bug I know"), [])
        edits = [{"path": b.path, "search": b.bad, "replace": b.good} for b in named]
        return api.tool_reply(api.analysis(affected_files=sorted({b.path for b in named})),
                              edits, explanation="restore the intended expression")
    return respond


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def make_repo(path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(textwrap.dedent(text), encoding="utf-8")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "shop with bugs")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bugs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    opts = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mendflow-bench-oracle-"))
    files, bugs = generate(opts.bugs, opts.seed)
    repo = make_repo(work / "shop", files)
    env = {**os.environ, "MENDFLOW_HOME": str(work / "mendflow"),
           "PREFECT_HOME": str(work / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "ANTHROPIC_API_KEY": "sk-ant-bench-oracle-000000"}
    env.pop("PREFECT_API_URL", None)
    with api.FakeMessagesAPI() as fake:
        fake.respond_with(oracle(bugs))
        config = work / "mendflow.json"
        config.write_text(json.dumps({
            "environment": {"type": "interpreter", "python": sys.executable},
            "fixer": {"type": "anthropic", "base_url": fake.root_url, "model": "oracle"}}))
        start = time.monotonic()
        proc = subprocess.run([*CLI, "mission", "run", str(repo), "--config", str(config),
                               "--mission-id", "oracle", "--json"], env=env,
                              capture_output=True, text=True)
        wall = time.monotonic() - start
        calls = len(fake.requests)
    if proc.returncode not in (0, 2):
        sys.exit(f"mission failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout)
    still = {f["test_id"] for f in result["final_findings"] if f.get("test_id")}
    fixed = sum(all(t not in still for t in b.test_ids) for b in bugs)
    failing = sum(len(b.test_ids) for b in bugs)
    attempted = [p for p in result["patches"] if p["status"] != "declined"]
    accepted = [p for p in attempted if p["status"] == "accepted"]
    print(f"repository        {repo} ({opts.bugs} bugs, {failing} failing tests)")
    print(f"mission           {wall:.1f} s, {result['iterations']} iteration(s), "
          f"stop: {result['stop_reason']}")
    print(f"candidates        {len(attempted)} attempted, {len(accepted)} accepted")
    print(f"bugs fixed        {fixed} of {opts.bugs}")
    print(f"model calls       {calls}  (calls / bugs {calls / opts.bugs:.2f}; goal <= 1.2)")


if __name__ == "__main__":
    main()
