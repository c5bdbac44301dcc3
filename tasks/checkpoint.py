"""Tasks that write and read a mission's ledger checkpoint (:mod:`mendflow.core.checkpoint`).

The checkpoint is one JSON file, ``<state>/missions/<id>/checkpoint.json``,
replaced atomically (a temporary file, then a rename): a reader sees the last
complete checkpoint or none. A checkpoint that cannot be written is reported and
the mission goes on (a resume then replays more steps from the cache). A
checkpoint that is missing, unreadable, of another schema, of another mission,
base commit, config or environment, or whose commit is no longer on the mission
branch is not restored: the resume replays the mission from its base commit, as
without checkpoints.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import ValidationError

from mendflow.core.checkpoint import CHECKPOINT_FILE, LedgerCheckpoint, checkpoint_problem
from mendflow.core.measurements import Contract
from mendflow.core.models import Sandbox
from mendflow.infra.files import write_atomic
from mendflow.infra.gitops import is_ancestor, replay_ref, rev_parse
from mendflow.infra.layout import StateLayout
from mendflow.infra.progress import report_progress
from mendflow.infra.retry import transient_retries


class CheckpointRead(Contract):
    """What :func:`load_checkpoint` found: a checkpoint to restore, or why there is none."""

    checkpoint: LedgerCheckpoint | None = None
    problem: str | None = None


def checkpoint_path(layout: StateLayout, mission_id: str) -> Path:
    """``<state>/missions/<mission_id>/checkpoint.json``."""
    return layout.mission(mission_id) / CHECKPOINT_FILE


@task(name="save-checkpoint", cache_policy=NO_CACHE, timeout_seconds=60,
      **transient_retries(1, first_delay_s=0.5))
def save_checkpoint(layout: StateLayout, sandbox: Sandbox, checkpoint: LedgerCheckpoint) -> bool:
    """Replace the mission's checkpoint file with ``checkpoint`` at the branch's HEAD (atomically).

    Args:
        layout: mendflow's state directory, resolved.
        sandbox: the mission's sandbox; its HEAD becomes ``checkpoint.commit``.
        checkpoint: the ledger at a settled point of the cycle (nothing pending).

    Returns:
        True when written; False when the file could not be written (reported as one
        progress line; the mission goes on and a resume falls back to a longer replay).
    """
    head = rev_parse(sandbox.path, "HEAD")
    if head is None:
        return False
    path = checkpoint_path(layout, checkpoint.mission_id)
    try:
        write_atomic(path, checkpoint.model_copy(update={"commit": head}).model_dump_json())
        return True
    except OSError as error:
        report_progress("mission", f"checkpoint not written ({error}); a resume will replay "
                        "the mission from its base commit")
        return False


@task(name="load-checkpoint", cache_policy=NO_CACHE, timeout_seconds=60)
def load_checkpoint(layout: StateLayout, sandbox: Sandbox, config_hash: str) -> CheckpointRead:
    """Read the mission's checkpoint and decide whether it may be restored.

    Valid when: the file parses as this schema's :class:`LedgerCheckpoint`, its
    identity matches (:func:`checkpoint_problem`: mission, base commit, config
    hash), and its commit is the mission branch's HEAD or one of its ancestors,
    or lies on the tip a rewind kept in ``refs/mendflow/<id>/replay``.

    Args:
        layout: mendflow's state directory, resolved.
        sandbox: the mission's sandbox (its worktree is on the mission branch).
        config_hash: :func:`mendflow.core.checkpoint.config_digest` of this run.

    Returns:
        A :class:`CheckpointRead`: the checkpoint, or None with the reason (None
        too when there is no file: a mission that never reached one).
    """
    path = checkpoint_path(layout, sandbox.mission_id)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return CheckpointRead()
    except (OSError, UnicodeDecodeError) as error:
        return CheckpointRead(problem=f"{path} cannot be read ({error})")
    try:
        checkpoint = LedgerCheckpoint.model_validate_json(text)
    except ValidationError as error:
        return CheckpointRead(problem=f"{path} is not a valid checkpoint "
                                      f"({error.error_count()} errors, first: "
                                      f"{error.errors()[0]['msg']})")
    problem = checkpoint_problem(checkpoint, mission_id=sandbox.mission_id,
                                 base_commit=sandbox.base_commit, config_hash=config_hash)
    if problem is None and not _on_branch(sandbox, checkpoint.commit):
        problem = f"its commit {checkpoint.commit[:10]} is not on branch {sandbox.branch}"
    if problem is not None:
        return CheckpointRead(problem=problem)
    return CheckpointRead(checkpoint=checkpoint)


def _on_branch(sandbox: Sandbox, commit: str) -> bool:
    """``commit`` is in the history of the mission branch, or of the tip a rewind kept."""
    if rev_parse(sandbox.path, commit) is None:
        return False
    tips = [rev_parse(sandbox.path, "HEAD"), rev_parse(sandbox.path, replay_ref(sandbox.mission_id))]
    return any(tip is not None and is_ancestor(sandbox.path, commit, tip) for tip in tips)
