"""The offline, deterministic fixer: ruff's own autofixes, one candidate patch per rule.

``RuffFixer.propose`` asks mendflow's ruff (``ruff check --fix --diff``) what
it *would* change for one rule in the group's files. That command never
writes to the tree: it prints a unified diff (then a summary line such as
``Would fix 2 errors.``). The diff is parsed with :mod:`unidiff` and
re-emitted in git format (``a/<path>`` / ``b/<path>``, POSIX paths relative
to the worktree root) so that ``git apply`` accepts it.

ruff reads the repository's own configuration (``pyproject.toml``,
``ruff.toml``, ``.ruff.toml``: per-file-ignores, ``unfixable`` ...);
``--select`` only narrows the run to the one rule being fixed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from unidiff import PatchSet
from unidiff.constants import (
    LINE_TYPE_ADDED,
    LINE_TYPE_CONTEXT,
    LINE_TYPE_NO_NEWLINE,
    LINE_TYPE_REMOVED,
)
from unidiff.errors import UnidiffParseError

from mendflow.core.config import RuffFixerConfig
from mendflow.core.errors import ToolError
from mendflow.core.models import Declined, Finding, Patch, Patched, Proposal, Sandbox
from mendflow.infra.runner import run_process
from mendflow.tasks.detect.common import tool_environ
from mendflow.tasks.detect.python_floor import (
    RUFF_OLDEST,
    declared_requires_python,
    oldest_python,
)
from mendflow.tasks.detect.ruff_run import ruff_executable
from mendflow.tasks.fix.base import Fixer
from mendflow.tasks.fix.ruff_followup import fix_only, preview_fix, run_ruff_check

RUFF_TIMEOUT_S = 300.0
"""Seconds one ``ruff check --fix --diff`` may run before its process group is killed."""

_RULE_CODE = re.compile(r"^[A-Z]{1,10}[0-9]{1,6}$")
_DIFF_LINE_TYPES = (LINE_TYPE_CONTEXT, LINE_TYPE_REMOVED, LINE_TYPE_ADDED, LINE_TYPE_NO_NEWLINE)
_NOT_PATCHABLE = (".ipynb",)  # ruff diffs notebooks per cell: not something `git apply` takes
VERSION_DEPENDENT_PREFIXES = ("UP", "FLY")
"""Rules that rewrite code for a newer Python (pyupgrade, flynt's f-strings)."""


class RuffFixer(Fixer):
    """Candidate patches from ruff's autofixes (safe ones unless ``unsafe_fixes`` is set).

    Args:
        config: the ``fixer`` section of the mission config.
    """

    name = "ruff"
    config_type = RuffFixerConfig

    def __init__(self, config: RuffFixerConfig | None = None):
        self.config = config if config is not None else RuffFixerConfig.model_validate({})

    def plan(self, findings: Sequence[Finding]) -> list[tuple[Finding, ...]]:
        """Group the fixable ruff findings by rule code, one group per rule.

        Args:
            findings: the ranked queue (most important first).

        Returns:
            One group per rule, ordered by each group's first finding in the
            queue; findings in notebooks (``.ipynb``) are left out.
        """
        groups: dict[str, list[Finding]] = {}
        for finding in findings:
            if (finding.source == "ruff" and finding.fixable
                    and not finding.path.endswith(_NOT_PATCHABLE)):
                groups.setdefault(finding.rule, []).append(finding)
        return [tuple(group) for group in groups.values()]

    def propose(self, sandbox: Sandbox, group: Sequence[Finding], *, feedback: str | None = None,
                attempt: int = 1) -> Proposal:
        """Ask ruff for its fix of one rule in the group's files, as a git-format patch.

        Args:
            sandbox: the worktree; ruff runs there and does not write to it.
            group: findings of one rule, as planned by :meth:`plan`.
            feedback: why a previous attempt was rejected. ruff is deterministic,
                so a retry would repeat the rejected patch: the fixer declines.
            attempt: 1 for the first attempt.

        Returns:
            A :class:`Patched` proposal, or :class:`Declined` when ruff
            had nothing to fix (no fix, only unsafe fixes, the repository's
            config excludes the files ...).

        Raises:
            ToolError: ruff is missing, timed out, or failed (exit status 2).
        """
        ids = tuple(f.id for f in group)
        rules = sorted({f.rule for f in group})
        if len(rules) != 1 or not _RULE_CODE.match(rules[0]):
            return self._declined(ids, attempt, f"not one ruff rule code: {', '.join(rules)}")
        rule = rules[0]
        if feedback is not None:
            return self._declined(ids, attempt, f"ruff's fix for {rule} is deterministic and "
                                                "was already rejected")
        too_old = _python_too_old(sandbox, rule)
        if too_old is not None:
            return self._declined(ids, attempt, too_old)
        files = [p for p in dict.fromkeys(f.path for f in group) if (sandbox.path / p).is_file()]
        if not files:
            return self._declined(ids, attempt, f"the files of the {rule} findings are gone")
        diff = git_format_diff(self._ruff_diff(sandbox, rule, files), sandbox.path)
        if not diff.text:
            return self._declined(ids, attempt, f"ruff had nothing to fix for {rule}")
        preview = preview_fix(sandbox, rule, diff.files, self._env(sandbox),
                              self.config.unsafe_fixes)
        extra = preview.follow_on
        if extra:  # fix what the rule's fix leaves behind (an import it made unused) with it
            diff = git_format_diff(self._ruff_diff(sandbox, ",".join((rule, *extra)), diff.files),
                                   sandbox.path)
        claimed = _claimed(group, set(diff.files), preview.remaining)
        if not claimed:
            return self._declined(ids, attempt, f"ruff's fix for {rule} leaves every one of "
                                                "these findings in place")
        fixed = tuple(f.id for f in claimed)
        name = rule_name(group[0]) or self._ruff_rule_name(sandbox, rule)
        label = f"{rule} ({name})" if name else rule
        if extra:
            label += f" and the {', '.join(extra)} it leaves behind"
        count = len(diff.files)
        patch = Patch(
            id=hashlib.sha256(diff.text.encode("utf-8")).hexdigest()[:12],
            fixer=self.name, finding_ids=fixed, diff=diff.text, files=diff.files,
            title=f"ruff: fix {label} in {count} file{'s' if count != 1 else ''}",
            description=_describe(rule, claimed, self.config.unsafe_fixes, extra),
            confidence="high",
        )
        return Patched(fixer=self.name, finding_ids=fixed, patch=patch, attempt=attempt)

    def _declined(self, ids: tuple[str, ...], attempt: int, reason: str) -> Declined:
        return Declined(fixer=self.name, finding_ids=ids, reason=reason, attempt=attempt)

    def _ruff_rule_name(self, sandbox: Sandbox, rule: str) -> str | None:
        """Ask ``ruff rule <code> --output-format json`` for the rule's name."""
        result = run_process([ruff_executable(), "rule", rule, "--output-format", "json"],
                             cwd=sandbox.path, timeout_s=60, env=tool_environ(sandbox))
        try:
            name = json.loads(result.stdout).get("name") if result.returncode == 0 else None
        except (json.JSONDecodeError, AttributeError):
            return None
        return name if isinstance(name, str) else None

    @staticmethod
    def _env(sandbox: Sandbox) -> dict[str, str]:
        """ruff's environment: the tools' one, without user overrides of ruff's output."""
        return {k: v for k, v in tool_environ(sandbox).items() if not k.startswith("RUFF_")}

    def _ruff_diff(self, sandbox: Sandbox, rule: str, files: Sequence[str]) -> str:
        """Run ``ruff check --fix --diff`` for one rule; return its stdout (diff + summary).

        The arguments that choose ruff's configuration are the detector's
        (:func:`mendflow.tasks.detect.ruff_run.ruff_config_args`), so the fixer fixes
        exactly what the detector reported.
        """
        args = [*fix_only(rule), "--diff"]
        if self.config.unsafe_fixes:
            args.append("--unsafe-fixes")
        return run_ruff_check(sandbox, self._env(sandbox), args, files=files,
                              what=f"fixing {rule}", timeout_s=RUFF_TIMEOUT_S).stdout


class GitDiff(NamedTuple):
    """A git-format diff and the POSIX paths it touches (sorted)."""

    text: str
    files: tuple[str, ...]


def git_format_diff(ruff_output: str, root: Path) -> GitDiff:
    """Turn ruff's ``--diff`` output into a git-format diff that ``git apply`` accepts.

    Args:
        ruff_output: stdout of ``ruff check --fix --diff`` (unified diffs whose
            headers name the file on both sides, then a summary line).
        root: the directory ruff ran in (the worktree root); absolute paths in
            the headers are made relative to it.

    Returns:
        The diff (files sorted by path, so that equal fixes give equal text) and
        the touched paths; empty when ruff would change nothing.

    Raises:
        ToolError: the output is not a parseable diff, or names a file outside ``root``.
    """
    try:
        patch_set = PatchSet(_diff_part(ruff_output))
    except UnidiffParseError as err:
        raise ToolError(f"cannot parse ruff's diff: {err}", subject="ruff",
                        hint="report this with the ruff version (`ruff --version`)") from None
    chunks: dict[str, str] = {}
    for patched in patch_set:
        path = _relative(patched.source_file, root)
        quoted_a, quoted_b = _git_quote(f"a/{path}"), _git_quote(f"b/{path}")
        lines = [f"diff --git {quoted_a} {quoted_b}\n", f"--- {quoted_a}\n", f"+++ {quoted_b}\n"]
        for hunk in patched:
            header = (f"@@ -{hunk.source_start},{hunk.source_length} "
                      f"+{hunk.target_start},{hunk.target_length} @@")
            lines.append(f"{header} {hunk.section_header}".rstrip(" ") + "\n")
            for line in hunk:
                if line.line_type in _DIFF_LINE_TYPES:
                    text = f"{line.line_type}{line.value}"
                    lines.append(text if text.endswith("\n") else text + "\n")
        chunks[path] = "".join(lines)
    files = tuple(sorted(chunks))
    return GitDiff("".join(chunks[p] for p in files), files)


def _diff_part(output: str) -> str:
    """Drop ruff's trailing summary ('Would fix 2 errors.', 'No errors would be fixed')."""
    lines = output.splitlines(keepends=True)
    while lines and (not lines[-1].strip("\r\n") or lines[-1][0] not in " +-@\\"):
        lines.pop()
    return "".join(lines)


def _relative(name: str, root: Path) -> str:
    path = Path(name)
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(root.resolve())
        except ValueError:
            raise ToolError(f"ruff's diff names a file outside the worktree: {name}",
                            subject="ruff", hint="report this with the ruff version") from None
    posix = PurePosixPath(path.as_posix())
    if ".." in posix.parts:
        raise ToolError(f"ruff's diff names a file outside the worktree: {name}", subject="ruff",
                        hint="report this with the ruff version")
    return str(posix)


def _git_quote(name: str) -> str:
    """Quote a path the way git does when it holds a quote, backslash or control character."""
    if not any(c in name for c in '"\\') and all(ord(c) >= 32 and c != "\x7f" for c in name):
        return name
    escapes = {'"': '\\"', "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
    body = "".join(escapes.get(c, f"\\{ord(c):03o}" if ord(c) < 32 or c == "\x7f" else c)
                   for c in name)
    return f'"{body}"'


def _claimed(group: Sequence[Finding], touched: set[str],
             remaining: dict[str, Counter[str]]) -> list[Finding]:
    """The group's findings the fix removes: in a touched file, and not one ruff leaves there.

    A finding that is left is recognised by its message (lines move with the fix).
    """
    left = {path: Counter(messages) for path, messages in remaining.items()}
    claimed = []
    for finding in group:
        if finding.path not in touched:
            continue
        messages = left.get(finding.path, Counter())
        if messages[finding.message] > 0:
            messages[finding.message] -= 1
        else:
            claimed.append(finding)
    return claimed


def rule_name(finding: Finding) -> str | None:
    """Return ruff's rule name (``unused-import``) from the finding's documentation URL."""
    if finding.url and "/rules/" in finding.url:
        return finding.url.rstrip("/").rsplit("/", 1)[-1] or None
    return None


def _describe(rule: str, fixed: Sequence[Finding], unsafe: bool,
              extra: Sequence[str] = ()) -> str:
    kind = "fixes (unsafe ones included)" if unsafe else "safe fixes"
    select = ",".join((rule, *extra))
    lines = [f"Applies ruff's {kind} for {rule} (`ruff check {' '.join(fix_only(select))}`) to:"]
    lines += [f"- {f.path}:{f.line or '?'}: {f.message}" for f in fixed[:50]]
    if len(fixed) > 50:
        lines.append(f"- ... and {len(fixed) - 50} more")
    if extra:
        lines.append(f"The {rule} fix leaves {', '.join(extra)} findings behind (none were "
                     "there before in these files); ruff fixes them in the same patch.")
    return "\n".join(lines)


def _python_too_old(sandbox: Sandbox, rule: str) -> str | None:
    """Why ruff's fix of ``rule`` may break a Python the project declares, or None.

    ruff's oldest target is 3.7: under it, its fixes may use newer syntax. A Python 2
    project (six 1.16.0: ``exec_ = moves.builtins.exec``) gets none; a 3.0-3.6 one
    (inflection 0.5.1, >=3.5: UP032 made f-strings) no syntax upgrades (pyupgrade UP,
    flynt FLY).
    """
    oldest = oldest_python(sandbox.path)
    if oldest is None or not (oldest < (3, 0) or (
            oldest < RUFF_OLDEST and rule.startswith(VERSION_DEPENDENT_PREFIXES))):
        return None
    return (f"the project supports Python {oldest[0]}.{oldest[1]} (requires-python "
            f"{declared_requires_python(sandbox.path)!r}); ruff's "
            f"{'fixes assume' if oldest < (3, 0) else f'{rule} fix may need'} Python 3.7+")
