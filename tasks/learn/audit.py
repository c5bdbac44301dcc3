"""Tasks that append to the audit trail (:mod:`mendflow.infra.audit`) at commit, approval,
merge and push time, and when a repository's config changes.

An audit log that cannot be written is reported (one progress line) and the mission goes on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from filelock import Timeout
from prefect import task
from prefect.cache_policies import NO_CACHE

from mendflow.core.config import MendflowConfig
from mendflow.core.models import MissionResult, PatchOutcome
from mendflow.infra import audit
from mendflow.infra.progress import report_progress


def _append(state_root: Path, **entry: Any) -> bool:
    try:
        audit.append(state_root, **entry)
        return True
    except (OSError, Timeout, ValueError) as error:
        report_progress("learn", f"audit trail not written ({type(error).__name__}: {error}); "
                        "the mission goes on")
        return False


@task(name="audit-commit", cache_policy=NO_CACHE, timeout_seconds=60)
def audit_commit(state_root: Path, mission_id: str, repository: str, branch: str,
                 outcome: PatchOutcome) -> bool:
    """Record an accepted patch committed on the mission branch (who: mendflow).

    A commit the trail already records for this mission and patch (a resumed
    mission's replay re-uses its commits) is not written again.

    Returns:
        True when written or already there (False: reported, the mission goes on).
    """
    try:
        if outcome.commit and audit.has_commit(state_root, mission_id, outcome.id, outcome.commit):
            return True
    except OSError:
        pass  # the append below reports an unusable log
    gates = tuple(f"{g.gate}: {'passed' if g.passed else 'failed'}"
                  for g in (outcome.validation.gates if outcome.validation else ()))
    return _append(state_root, who=audit.AUTOMATION, what="commit",
                   why=audit.Why(finding_ids=outcome.finding_ids, gates=gates,
                                 reason=outcome.title),
                   mission=mission_id, repository=repository,
                   details={"commit": outcome.commit, "patch_id": outcome.id,
                            "fixer": outcome.fixer, "branch": branch, "files": list(outcome.files)})


@task(name="audit-delivery", cache_policy=NO_CACHE, timeout_seconds=60)
def audit_delivery(state_root: Path, result: MissionResult) -> int:
    """Record the approval decision, the merge into the target branch and the push.

    Returns:
        Entries written.
    """
    record = result.approval
    if record is None or record.decision == "none":
        return 0
    human = record.decision != "auto" and record.approver and record.required
    who = audit.Actor(kind="approver", name=record.approver) if human else audit.AUTOMATION
    patches = {p.id: p for p in result.patches}
    findings = tuple(fid for pid in record.patch_ids for fid in
                     (patches[pid].finding_ids if pid in patches else ()))
    common = {"mission": result.mission_id, "repository": result.repository}
    written = _append(state_root, who=who, what="approval",
                      why=audit.Why(finding_ids=findings, reason=record.comment or record.decision),
                      details={"decision": record.decision, "autonomy": record.autonomy,
                               "approved": list(record.patch_ids),
                               "asked": list(record.pending_patch_ids),
                               "timed_out": record.timed_out}, **common)
    if record.delivered_commits:
        written += _append(state_root, who=who, what="merge",
                           why=audit.Why(finding_ids=findings, reason=record.delivery),
                           details={"target_branch": record.target_branch,
                                    "commits": list(record.delivered_commits),
                                    "mode": record.delivery}, **common)
    if record.pushed_to:
        written += _append(state_root, who=audit.AUTOMATION, what="push",
                           why=audit.Why(reason=f"approved delivery to {record.target_branch}"),
                           details={"remote": record.pushed_to,
                                    "target_branch": record.target_branch}, **common)
    return int(written)


def config_digest(config: MendflowConfig) -> str:
    """SHA-256 of the config's JSON, without the per-run places (state and report dirs)."""
    data = config.model_dump(mode="json", exclude={"mission": {"state_dir", "report_dir"}})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@task(name="audit-config", cache_policy=NO_CACHE, timeout_seconds=60)
def audit_config(state_root: Path, mission_id: str, repository: str,
                 config: MendflowConfig) -> bool:
    """Record a config change: the first mission on a repository, or a different config.

    Returns:
        True when an entry was written.
    """
    digest = config_digest(config)
    previous = None
    try:
        for entry in audit.read(state_root):
            if entry.get("what") == "config-change" and entry.get("repository") == repository:
                previous = (entry.get("details") or {}).get("config_sha256")
    except OSError:
        previous = None
    if previous == digest:
        return False
    return _append(state_root, who=audit.current_user(), what="config-change",
                   why=audit.Why(reason="first mission on this repository" if previous is None
                                 else "the mission's config differs from the last one"),
                   mission=mission_id, repository=repository,
                   details={"config_sha256": digest, "previous_sha256": previous})
