"""A chain of fixers: each one handles what the fixers before it did not plan.

``fixer: {type: chain, fixers: [{type: ruff}, {type: anthropic}]}`` fixes
what ruff can fix offline first, then asks Claude about what is left. The
chain is stateless, so it may be rebuilt for every proposal: the owner of a
group is the first fixer whose own ``plan`` of that group returns it.
"""

from __future__ import annotations

from collections.abc import Sequence

from mendflow.core.config import ChainFixerConfig
from mendflow.core.errors import ConfigError
from mendflow.core.models import Finding, Proposal, Sandbox
from mendflow.tasks.fix.base import Fixer


class ChainFixer(Fixer):
    """Several fixers in order (implements :class:`~mendflow.tasks.fix.base.Fixer`).

    Args:
        config: the ``fixer`` section (``type: chain``); its fixers are built
            with :func:`mendflow.tasks.fix.build_fixer`.
        fixers: ready fixers instead (tests, embedding); overrides ``config``.
    """

    name = "chain"
    config_type = ChainFixerConfig

    def __init__(self, config: ChainFixerConfig | None = None, *,
                 fixers: Sequence[Fixer] | None = None):
        if fixers is None:
            if config is None:
                raise ConfigError("a chain needs fixers", subject="fixer.fixers",
                                  hint="list at least one fixer under fixers")
            from mendflow.tasks.fix import build_fixer  # late: tasks.fix imports the fixer modules

            fixers = [build_fixer(item) for item in config.fixers]
        self.fixers = list(fixers)

    def plan(self, findings: Sequence[Finding]) -> list[tuple[Finding, ...]]:
        """Each fixer plans what the previous ones left; their groups in chain order.

        Args:
            findings: the ranked queue (most important first).

        Returns:
            The first fixer's groups, then the second's, ...
        """
        remaining = list(findings)
        groups: list[tuple[Finding, ...]] = []
        for fixer in self.fixers:
            planned = fixer.plan(remaining)
            groups.extend(planned)
            claimed = {f.id for group in planned for f in group}
            remaining = [f for f in remaining if f.id not in claimed]
        return groups

    def owner(self, group: Sequence[Finding]) -> Fixer:
        """The fixer of the chain that plans this group.

        Raises:
            ConfigError: no fixer of the chain handles the group.
        """
        ids = sorted(f.id for f in group)
        for fixer in self.fixers:
            if any(sorted(f.id for f in planned) == ids for planned in fixer.plan(group)):
                return fixer
        raise ConfigError("no fixer of the chain handles this group", subject=",".join(ids),
                          hint="pass only groups returned by the chain's plan()")

    def propose(self, sandbox: Sandbox, group: Sequence[Finding], *, feedback: str | None = None,
                attempt: int = 1) -> Proposal:
        """Delegate to the fixer that owns the group (see :class:`~mendflow.tasks.fix.base.Fixer`).

        Raises:
            ConfigError: no fixer of the chain handles the group.
            PatchRejected: the owner's output was unusable.
            LLMError: the owner's model call failed.
        """
        return self.owner(group).propose(sandbox, group, feedback=feedback, attempt=attempt)
