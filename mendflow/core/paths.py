"""Path patterns: one matcher for every glob mendflow takes (gitignore-style, pathspec).

``gates.test_globs``, the fixers' ``policy.denylist``, the approval policy's
sensitive files and the test-file gate all match repository-relative POSIX
paths with the same rules (:class:`pathspec.GitIgnoreSpec`, git's wildmatch):

- ``*``, ``?`` and ``[...]`` stay within one path segment; ``**`` spans any
  number of directories (``tests/**``, ``**/test_*.py``);
- a pattern without a ``/`` matches at any depth (``*.pem``, ``conftest.py``);
- a pattern that matches a directory matches everything below it (``secrets/``).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import pathspec


@lru_cache(maxsize=256)
def _spec(patterns: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines(patterns)


def matches_any(path: str, patterns: Iterable[str]) -> bool:
    """True when a repository-relative POSIX path matches one of the patterns.

    Args:
        path: a path relative to the repository root, with ``/`` separators.
        patterns: gitignore-style patterns (see the module docstring).

    Returns:
        Whether any pattern matches (a negated ``!pattern`` can exclude again).
    """
    patterns = tuple(patterns)
    return bool(patterns) and _spec(patterns).match_file(path.strip("/"))
