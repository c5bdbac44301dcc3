"""What a ruff fix leaves behind, previewed without writing to the worktree.

Some safe fixes create a finding of another rule: ``UP006`` turns
``List[int]`` into ``list[int]`` and leaves ``from typing import List``
unused (``F401``); ``UP035`` moves an import and leaves the block unsorted
(``I001``); ``UP032`` writes an f-string that ``RUF010`` wants written with a
conversion flag. The candidate would then fail the ``no-new-findings`` gate,
although ruff can fix those findings too. And some fixes leave a finding of
their own rule in place (``UP035`` on a name with no modern equivalent): the
patch must not claim it.

:func:`preview_fix` lints each touched file's fixed text (ruff reads it from
stdin, with ``--stdin-filename`` so that the repository's configuration,
per-file ignores included, applies). A follow-on rule is fixed with the
patch only when all of its new findings are fixable and none of the touched
files had a finding of it before: fixing ``UP006,F401`` together then
changes exactly what the ``UP006`` fix made unused, and nothing the patch
does not claim.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from mendflow.core.errors import ToolError
from mendflow.core.models import Sandbox
from mendflow.infra.runner import ProcessResult, run_process
from mendflow.tasks.detect.common import relative_posix
from mendflow.tasks.detect.ruff_run import ruff_config_args, ruff_executable

TIMEOUT_S = 120.0
"""Seconds one ruff call may take before its process group is killed."""


class Diagnostic(NamedTuple):
    """One ruff finding, as ``ruff check --output-format json`` reports it."""

    code: str
    message: str
    fixable: bool


class FixPreview(NamedTuple):
    """What fixing one rule would leave behind.

    Attributes:
        follow_on: the rules (sorted) the fix creates and that may be fixed with it.
        remaining: per touched file, the messages of the rule's own findings the fix leaves.
    """

    follow_on: tuple[str, ...]
    remaining: dict[str, Counter[str]]


def preview_fix(sandbox: Sandbox, rule: str, files: Sequence[str], env: Mapping[str, str],
                unsafe_fixes: bool = False) -> FixPreview:
    """Lint the text that fixing ``rule`` gives each file, against the files as they are.

    Args:
        sandbox: the worktree (read, never written).
        rule: the rule being fixed (``UP006``).
        files: the POSIX paths the rule's fix changes, relative to the worktree.
        env: the environment ruff runs with.
        unsafe_fixes: the fixer applies ruff's unsafe fixes too.

    Returns:
        A :class:`FixPreview`. A rule is a follow-on when the repository's own
        ruff configuration reports it in some fixed text, each of those new
        findings is fixable (safely, unless ``unsafe_fixes``), and none of
        the files has a finding of it now.

    Raises:
        ToolError: ruff failed (exit status 2) or timed out.
    """
    unsafe = ["--unsafe-fixes"] if unsafe_fixes else []
    before = _lint(sandbox, env, files, unsafe)
    present = {d.code for path in files for d in before[path]}
    created: dict[str, bool] = {}
    remaining: dict[str, Counter[str]] = {}
    for path in files:
        try:
            text = (sandbox.path / path).read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # ruff's own diff run reports what it can't read
        fixed = run_ruff_check(sandbox, env, [*fix_only(rule), *unsafe],
                               stdin=(path, text), what=f"previewing the fix of {rule}").stdout
        after = _lint(sandbox, env, [path], unsafe, stdin_text=fixed)[path]
        remaining[path] = Counter(d.message for d in after if d.code == rule)
        for d in after:
            if d.code != rule and d.code not in present:
                created[d.code] = created.get(d.code, True) and d.fixable
    return FixPreview(tuple(sorted(code for code, ok in created.items() if ok)), remaining)


def _lint(sandbox: Sandbox, env: Mapping[str, str], files: Sequence[str], unsafe: list[str],
          stdin_text: str | None = None) -> dict[str, list[Diagnostic]]:
    """The findings of the repository's own ruff config per file (JSON output)."""
    stdin = (files[0], stdin_text) if stdin_text is not None else None
    result = run_ruff_check(sandbox, env, ["--output-format", "json"], what="linting a fix",
                            files=() if stdin else files, stdin=stdin)
    found: dict[str, list[Diagnostic]] = {path: [] for path in files}
    try:
        diagnostics = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        raise ToolError(f"ruff's JSON output is unreadable: {result.tail(5)}", subject="ruff",
                        hint="report this with the ruff version (`ruff --version`)") from None
    for item in diagnostics:
        key = relative_posix(sandbox.path, str(item.get("filename") or ""))
        if key in found and item.get("code"):
            applicability = (item.get("fix") or {}).get("applicability")
            fixable = applicability == "safe" or (bool(unsafe) and applicability == "unsafe")
            found[key].append(Diagnostic(item["code"], item.get("message") or "", fixable))
    return found


def fix_only(rules: str) -> list[str]:
    """ruff's options that fix ``rules`` (``"UP006"`` or ``"UP006,F401"``) and nothing else.

    ``--fixable`` limits the fixes while the repository's own rule set stays
    enabled (``--extend-select`` adds the rules if only ``tools.ruff.args``
    enabled them): with ``--select RUF100`` every ``# noqa`` of another rule
    would look unused and be removed.
    """
    return ["--fix", "--extend-select", rules, "--fixable", rules]


def run_ruff_check(sandbox: Sandbox, env: Mapping[str, str], args: Sequence[str], *, what: str,
                   files: Sequence[str] = (), stdin: tuple[str, str] | None = None,
                   timeout_s: float = TIMEOUT_S) -> ProcessResult:
    """Run ``ruff check`` with the detector's config arguments, on files or on one file's text.

    Args:
        sandbox: the worktree ruff runs in (never written: no ``--fix`` without ``--diff``
            or stdin).
        env: the environment ruff runs with.
        args: ruff's options (``--fix --diff --select UP006``, ``--output-format json`` ...).
        what: what the run is for, for errors ("fixing UP006").
        files: the POSIX paths to check, relative to the worktree.
        stdin: ``(path, text)``: check ``text`` as if it were ``path`` (``--stdin-filename``).
        timeout_s: seconds before ruff's process group is killed.

    Returns:
        The finished process (exit status 0 or 1); stdout keeps CRLF line endings.

    Raises:
        ToolError: ruff timed out or failed (exit status 2).
    """
    # the repository's `fix = true` / `unsafe-fixes = true` must not change what this run does
    pinned = ([] if "--fix" in args else ["--no-fix"]) + (
        [] if "--unsafe-fixes" in args else ["--no-unsafe-fixes"])
    argv = [ruff_executable(), "check", "--no-cache", "--force-exclude",
            *ruff_config_args(sandbox.path), *pinned, *args]
    argv += ["--stdin-filename", stdin[0], "-"] if stdin else ["--", *files]
    result = run_process(argv, cwd=sandbox.path, timeout_s=timeout_s, env=env,
                         input_text=stdin[1] if stdin else None, keep_line_endings=True)
    if result.timed_out:
        raise ToolError(f"ruff timed out after {timeout_s:.0f} s {what}", subject="ruff",
                        hint="check ruff's configuration in the repository")
    if result.returncode not in (0, 1):
        raise ToolError(f"ruff failed {what} (exit status {result.returncode}): "
                        f"{result.tail(10)}", subject="ruff",
                        hint="run the command shown above in the repository to see why")
    return result
