"""The Fixer protocol: what every fixer (ruff, Claude, OpenAI-compatible ...) implements.

mendflow's own fixers subclass :class:`Fixer` and declare the config section they are
built from as a class attribute, ``config_type = RuffFixerConfig``: the fixer registry
(:func:`mendflow.tasks.fix.fixer_classes`) is collected from those subclasses.
``config_type`` is not part of the protocol, so any object with ``name``, ``plan`` and
``propose`` can still be put in a chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from mendflow.core.models import Finding, Proposal, Sandbox


@runtime_checkable
class Fixer(Protocol):
    """A source of candidate patches.

    A mission asks a fixer to ``plan`` the ranked findings into groups (one
    candidate patch per group), then calls ``propose`` for one group at a time,
    always against the sandbox's *current* tree, so that a patch never
    conflicts with one accepted just before it. When validation rejects a
    candidate, the mission may call ``propose`` again with ``feedback`` (the
    concrete gate output) up to ``max_attempts`` times.
    """

    name: str

    def plan(self, findings: Sequence[Finding]) -> list[tuple[Finding, ...]]:
        """Split the findings this fixer can handle into groups, in fixing order.

        Args:
            findings: the ranked queue (most important first).

        Returns:
            Groups of findings; findings the fixer cannot handle are left out.
        """
        ...

    def propose(self, sandbox: Sandbox, group: Sequence[Finding], *, feedback: str | None = None,
                attempt: int = 1) -> Proposal:
        """Propose one patch for one group against the sandbox's current tree.

        Args:
            sandbox: the worktree to read (a fixer never writes to it).
            group: the findings to fix, one of the groups from :meth:`plan`.
            feedback: why the previous attempt was rejected, or None.
            attempt: 1 for the first attempt, 2 for the next, ...

        Returns:
            A :data:`Proposal`: :class:`Patched` (a patch to validate),
            :class:`Declined` (why not), :class:`OutputRejected` (the guard that
            refused the fixer's output) or :class:`CallFailed`.

        Raises:
            PatchRejected: the fixer's output was unusable (a fixer may raise it
                instead of returning :class:`OutputRejected`; the mission's task
                turns it into one).
            LLMError: a model call failed.
        """
        ...
