"""Approval and delivery: the last step of a mission (issue: human approval).

Placeholder until approval lands: the mission only prepares its branch and
never merges into a target branch.
"""

from __future__ import annotations

from mendflow.config import MendflowConfig
from mendflow.models import MissionResult, RepoTarget, Sandbox


def approve_and_deliver(result: MissionResult, config: MendflowConfig, target: RepoTarget,
                        sandbox: Sandbox, autonomy: str | None = None) -> MissionResult:
    """Ask for approval as the autonomy level demands, then deliver to the target branch.

    Returns:
        The result, with patch statuses and ``status`` updated.
    """
    return result
