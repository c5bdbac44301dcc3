"""Turning a model's search/replace edits into a git-format patch, with guards.

Everything happens in memory: files are read from the worktree, edited as
strings and diffed with :func:`difflib.unified_diff` into a git-format diff
(``diff --git a/… b/…``) that ``git apply`` accepts. Nothing is ever written
to the worktree; applying the patch is the job of the validation stage.

Every refusal raises :class:`PatchRejected` with one of these reasons:
``no-edits``, ``path-escape``, ``denylisted``, ``search-not-found``,
``search-ambiguous``, ``binary``, ``native-source``, ``bidi``, ``too-large``, ``syntax``,
``dangerous-code``
(see :mod:`mendflow.tasks.fix.code_guards`), ``invalid-diff``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from mendflow.core.config import LLMPolicy
from mendflow.core.errors import PatchRejected
from mendflow.core.findings import fingerprint
from mendflow.core.models import Finding, Patch, Sandbox
from mendflow.tasks.fix.code_guards import added_dangerous_uses, bidi_characters
from mendflow.tasks.fix.context import matches_denylist
from mendflow.tasks.fix.llm_protocol import FileEdit, FixReply

_BAD_PATH_CHARS = re.compile(r'[\x00-\x1f\x7f"\\]')
_NO_EOL = "\\ No newline at end of file\n"
_NUMBERED = re.compile(r"^ *\d+ \| ")


def _unnumber(text: str) -> str:
    """Remove context line-number prefixes (``"   12 | "``) from every line that has one."""
    return "".join(_NUMBERED.sub("", line, count=1) for line in text.splitlines(keepends=True))


NATIVE_SUFFIXES = (".c", ".h", ".cc", ".cpp", ".cxx", ".hh", ".hpp", ".pyx", ".pxd", ".pxi",
                   ".rs", ".f", ".f90", ".cu", ".m", ".mm")
"""Sources compiled into extension modules (C, C++, Cython, Rust, Fortran, CUDA, Objective-C).
The target's environment builds them once, when it is made: validation would run the
tests against the old build, so a change to one could never be proven."""


def _reject(reason: str, message: str, subject: str | None = None,
            hint: str = "the model's edits are unusable; a new attempt may do better") -> PatchRejected:
    return PatchRejected(message, reason=reason, subject=subject, hint=hint)


def check_edit_path(root: Path, path: str, denylist: Sequence[str]) -> str:
    """Validate a path from a model reply and return it normalized.

    Args:
        root: the resolved worktree root.
        path: the repository-relative POSIX path the model named.
        denylist: globs no patch may touch.

    Returns:
        The normalized relative POSIX path.

    Raises:
        PatchRejected: ``path-escape`` (absolute, ``..``, ``.git``, a symlink,
            a control character, or outside the worktree), ``denylisted``, or
            ``native-source`` (:data:`NATIVE_SUFFIXES`).
    """
    if not path.strip() or _BAD_PATH_CHARS.search(path) or re.match(r"^[A-Za-z]:", path):
        raise _reject("path-escape", "the path is empty or has forbidden characters", repr(path))
    pure = PurePosixPath(path)
    if (pure.is_absolute() or ".." in pure.parts or not pure.parts
            or any(part.lower() == ".git" for part in pure.parts)):
        raise _reject("path-escape", "the path is absolute, climbs with '..' or enters .git",
                      path)
    rel = pure.as_posix()
    if matches_denylist(rel, denylist):
        raise _reject("denylisted", "the path matches the policy denylist", rel,
                      hint="edit policy.denylist if this file may really be changed")
    if pure.suffix.lower() in NATIVE_SUFFIXES:
        raise _reject("native-source", "the path is a native extension's source: validation "
                      "runs the tests against the extension built with the environment, so "
                      "this change could not be proven", rel,
                      hint="fix native code by hand; mendflow fixes Python files only")
    current = root
    for part in pure.parts:
        current = current / part
        if current.is_symlink():
            raise _reject("path-escape", f"the path goes through a symlink ({current.name})", rel)
    try:
        (root / rel).resolve().relative_to(root)
    except ValueError:
        raise _reject("path-escape", "the path resolves outside the worktree", rel) from None
    return rel


def _read_original(root: Path, rel: str) -> str | None:
    target = root / rel
    if not target.exists():
        return None
    if not target.is_file():
        raise _reject("path-escape", "the path is not a regular file", rel)
    data = target.read_bytes()
    if b"\0" in data:
        raise _reject("binary", "the file is binary (it holds NUL bytes)", rel)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _reject("binary", "the file is not UTF-8 text", rel) from None


def apply_edit(text: str | None, edit: FileEdit, rel: str) -> str:
    """Apply one search/replace edit to a file's text (None: the file does not exist).

    Raises:
        PatchRejected: ``search-not-found`` or ``search-ambiguous``.
    """
    if text is None:
        if edit.search:
            raise _reject("search-not-found", "the file does not exist", rel)
        return edit.replace
    if not edit.search:
        raise _reject("search-ambiguous", "an empty search text on an existing file", rel,
                      hint="an empty search creates a new file; quote the text to replace")
    search, replace = edit.search, edit.replace
    if text.count(search) == 0 and _NUMBERED.match(search):
        # the model copied the "   12 | " prefixes of the context: drop them
        search, replace = _unnumber(search), _unnumber(replace)
    if text.count(search) == 0 and "\r\n" in text and "\r\n" not in search:
        search, replace = search.replace("\n", "\r\n"), replace.replace("\n", "\r\n")
    count = text.count(search)
    if count == 0:
        raise _reject("search-not-found", f"the search text was not found: {edit.search[:80]!r}",
                      rel)
    if count > 1:
        raise _reject("search-ambiguous", f"the search text occurs {count} times", rel,
                      hint="the search text must be unique; include more surrounding lines")
    return text.replace(search, replace, 1)


def _check_python(rel: str, before: str | None, after: str) -> None:
    """Reject a .py result that does not compile, unless the original did not either."""
    if not rel.endswith((".py", ".pyi")):
        return
    try:
        compile(after, rel, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as err:
        if before is not None and not _compiles(before, rel):
            return  # this interpreter cannot judge this file; validation will
        line = getattr(err, "lineno", None)
        raise _reject("syntax", f"the edited file does not compile: {err.__class__.__name__}: "
                      f"{getattr(err, 'msg', err)}" + (f" (line {line})" if line else ""), rel) from None


def _compiles(text: str, rel: str) -> bool:
    try:
        compile(text, rel, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def file_diff(rel: str, before: str | None, after: str) -> str:
    """A git-format unified diff of one file (``before`` None: a new file)."""
    a_lines = (before or "").splitlines(keepends=True)
    b_lines = after.splitlines(keepends=True)
    body = difflib.unified_diff(a_lines, b_lines,
                                fromfile="/dev/null" if before is None else f"a/{rel}",
                                tofile=f"b/{rel}")
    out = [f"diff --git a/{rel} b/{rel}\n"]
    if before is None:
        out.append("new file mode 100644\n")
    for line in body:
        out.append(line if line.endswith("\n") else line + "\n" + _NO_EOL)
    return "".join(out)


def edits_to_patch(sandbox: Sandbox, reply: FixReply, group: Sequence[Finding],
                   fixer_name: str, policy: LLMPolicy) -> Patch:
    """Turn a validated model reply into a git-format :class:`Patch`, in memory.

    Args:
        sandbox: the worktree the edits refer to (read, never written).
        reply: the validated ``propose_fix`` input.
        group: the findings the patch claims to fix.
        fixer_name: the fixer to name in the patch (``anthropic`` ...).
        policy: the denylist and the size limit (``max_edit_bytes``).

    Returns:
        The patch; its diff parses with unidiff and applies with ``git apply``
        to the worktree's current tree.

    Raises:
        PatchRejected: a guard refused the edits (see the module docstring
            for the reasons); the worktree is unchanged.
    """
    if not reply.edits:
        raise _reject("no-edits", "the reply holds no edits")
    size = sum(len(e.search.encode()) + len(e.replace.encode()) for e in reply.edits)
    if size > policy.max_edit_bytes:
        raise _reject("too-large", f"the edits hold {size} bytes, more than "
                      f"max_edit_bytes={policy.max_edit_bytes}",
                      hint="raise policy.max_edit_bytes if such fixes are expected")
    root = sandbox.path.resolve()
    originals, current = _apply_edits(root, reply, policy)
    diffs = []
    for rel, after in current.items():
        assert after is not None  # every path got at least one edit
        if after == originals[rel]:
            continue
        _check_python(rel, originals[rel], after)
        if rel.endswith((".py", ".pyi")) and (added := added_dangerous_uses(originals[rel], after)):
            raise _reject("dangerous-code", f"the edits add {', '.join(added)}: a fix may not run "
                          "commands, open connections or load code dynamically", rel,
                          hint="model-written code runs sandboxed; such a change needs a human")
        diffs.append(file_diff(rel, originals[rel], after))
    if not diffs:
        raise _reject("no-edits", "the edits change nothing")
    diff = "".join(diffs)
    files = tuple(rel for rel in current if current[rel] != originals[rel])
    _check_parses(diff, files)
    finding_ids = tuple(f.id for f in group)
    analysis = reply.analysis
    return Patch(
        id=fingerprint(fixer_name, *finding_ids, diff),
        fixer=fixer_name, finding_ids=finding_ids, diff=diff, files=files,
        title=_title(analysis.root_cause, group, files),
        description=f"Root cause ({analysis.category}): {analysis.root_cause.strip()}\n\n"
                    f"{reply.explanation.strip()}",
        confidence=analysis.confidence,
    )


def _apply_edits(root: Path, reply: FixReply, policy: LLMPolicy
                 ) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """Apply the reply's edits in memory (:func:`edits_to_patch`), each path and
    replacement checked first.

    Returns:
        ``(originals, current)``: each edited path's text before (None: a new file)
        and after every edit.

    Raises:
        PatchRejected: a denied path, NUL bytes, bidirectional controls, or an edit
            whose search text is not found once.
    """
    originals: dict[str, str | None] = {}
    current: dict[str, str | None] = {}
    for edit in reply.edits:
        rel = check_edit_path(root, edit.path, policy.denylist)
        if "\0" in edit.replace:
            raise _reject("binary", "the replacement text holds NUL bytes", rel)
        if bidi := bidi_characters(edit.replace):
            raise _reject("bidi", f"the replacement text holds bidirectional control "
                          f"characters ({', '.join(bidi)}): code that reads differently "
                          "from how it runs", rel)
        if rel not in originals:
            originals[rel] = current[rel] = _read_original(root, rel)
        current[rel] = apply_edit(current[rel], edit, rel)
    return originals, current


def _check_parses(diff: str, files: tuple[str, ...]) -> None:
    try:
        parsed = PatchSet(diff)
    except UnidiffParseError as err:
        raise _reject("invalid-diff", f"the generated diff does not parse: {err}",
                      hint="this is a mendflow bug; please report it") from None
    if sorted(p.path for p in parsed) != sorted(files):
        raise _reject("invalid-diff", "the generated diff names other files than the edits",
                      hint="this is a mendflow bug; please report it")


def _looks_like_test(path: str) -> bool:
    parts = path.split("/")
    name = parts[-1]
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py" \
        or bool({"tests", "test", "testing"} & set(parts[:-1]))


def _title(root_cause: str, group: Sequence[Finding], files: tuple[str, ...]) -> str:
    """``Fix test-failure (6 findings) in pkg/core.py: <root cause>``: the file the patch
    changes, not the finding's (a failing test's finding lies in the test file)."""
    first = group[0] if group else None
    count = f" ({len(group)} findings)" if len(group) > 1 else ""
    files = tuple(sorted(files, key=_looks_like_test))  # the code first: heal adds a test
    where = f" in {files[0]}" + (f" and {len(files) - 1} more" if len(files) > 1 else "") \
        if files else (f" in {first.path}" if first else "")
    summary = " ".join(root_cause.split())
    if len(summary) > 72:
        summary = summary[:69].rstrip() + "..."
    return f"Fix {first.rule if first else 'finding'}{count}{where}: {summary}"
