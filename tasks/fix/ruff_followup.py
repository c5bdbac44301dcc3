"""What a ruff fix leaves behind: the follow-on findings it creates, fixed in the same patch.

Some safe fixes strand an import: ``UP006`` turns ``List[int]`` into
``list[int]`` and leaves ``from typing import List`` unused (``F401``);
``UP035`` moves an import and may leave the block unsorted (``I001``). The
candidate would then bring a new finding and fail the ``no-new-findings``
gate, although ruff can fix that finding too.

:func:`follow_on_rules` finds out, without writing to the worktree, which of
:data:`FOLLOW_ON_RULES` the fix of one rule *creates* in the files it touches
(ruff reads each file's fixed text from stdin, with ``--stdin-filename`` so
that the repository's configuration, per-file ignores included, applies). A
follow-on rule is only added when none of the touched files has a finding of
it already: fixing ``UP006,F401`` together then changes exactly what the
``UP006`` fix made unused, and nothing the patch does not claim.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from mendflow.errors import ToolError
from mendflow.models import Sandbox
from tasks.detect.ruff_run import ruff_config_args, ruff_executable
from tasks.process import run_process

FOLLOW_ON_RULES = ("F401", "I001")
"""Rules a fix may create and ruff can fix after it: unused imports, unsorted imports."""
TIMEOUT_S = 120.0
"""Seconds one ruff call may take before its process group is killed."""


def follow_on_rules(sandbox: Sandbox, rule: str, files: Sequence[str], env: Mapping[str, str],
                    unsafe_fixes: bool = False) -> tuple[str, ...]:
    """The follow-on rules that fixing ``rule`` creates in ``files`` and that may be fixed with it.

    Args:
        sandbox: the worktree (read, never written).
        rule: the rule being fixed (``UP006``).
        files: the POSIX paths the rule's fix changes, relative to the worktree.
        env: the environment ruff runs with.
        unsafe_fixes: apply ruff's unsafe fixes for ``rule`` too (as the fixer does).

    Returns:
        The rules of :data:`FOLLOW_ON_RULES` (sorted) that the repository's own ruff
        configuration reports in the fixed text of some file but in none of the
        files before the fix; empty when the fix leaves nothing behind.

    Raises:
        ToolError: ruff failed (exit status 2) or timed out.
    """
    candidates = [r for r in FOLLOW_ON_RULES if r != rule]
    before = _lint(sandbox, env, files)
    if any(before[path][r] for path in files for r in candidates):
        return ()  # fixing the rule would also change findings the patch does not claim
    created: set[str] = set()
    for path in files:
        try:
            text = (sandbox.path / path).read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # ruff's own diff run reports what it can't read
        fixed = _ruff(sandbox, env, ["--fix", "--select", rule,
                                     *(["--unsafe-fixes"] if unsafe_fixes else [])],
                      stdin=(path, text)).stdout
        after = _lint(sandbox, env, [path], stdin_text=fixed)[path]
        created.update(r for r in candidates if after[r])
    return tuple(sorted(created))


def _lint(sandbox: Sandbox, env: Mapping[str, str], files: Sequence[str],
          stdin_text: str | None = None) -> dict[str, Counter[str]]:
    """Count the findings of the repository's own ruff config per file and rule (JSON output)."""
    stdin = (files[0], stdin_text) if stdin_text is not None else None
    result = _ruff(sandbox, env, ["--output-format", "json"],
                   files=() if stdin else files, stdin=stdin)
    counts: dict[str, Counter[str]] = {path: Counter() for path in files}
    try:
        diagnostics = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        raise ToolError(f"ruff's JSON output is unreadable: {result.tail(5)}", subject="ruff",
                        hint="report this with the ruff version (`ruff --version`)") from None
    root = sandbox.path.resolve()
    for item in diagnostics:
        name = Path(item.get("filename") or "")
        path = name.resolve() if name.is_absolute() else root / name
        key = path.relative_to(root).as_posix() if path.is_relative_to(root) else None
        if key in counts and item.get("code"):
            counts[key][item["code"]] += 1
    return counts


def _ruff(sandbox: Sandbox, env: Mapping[str, str], args: Sequence[str],
          files: Sequence[str] = (), stdin: tuple[str, str] | None = None):
    """Run ``ruff check`` with the detector's config arguments, on files or on stdin."""
    argv = [ruff_executable(), "check", "--no-cache", "--force-exclude",
            *ruff_config_args(sandbox.path), *args]
    argv += ["--stdin-filename", stdin[0], "-"] if stdin else ["--", *files]
    result = run_process(argv, cwd=sandbox.path, timeout_s=TIMEOUT_S, env=env,
                         input_text=stdin[1] if stdin else None, keep_line_endings=True)
    if result.timed_out or result.returncode not in (0, 1):
        raise ToolError(f"ruff failed looking for follow-on findings ({result.tail(5)})",
                        subject="ruff", hint="run `ruff check` in the repository to see why")
    return result
