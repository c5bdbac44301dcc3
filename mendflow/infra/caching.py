"""The cache policy that makes missions resumable, on this host or on another one.

Prefect's default cache policy includes the flow-run id, so a new run re-uses
nothing (Prefect 3.8 and 3.9: the default policy hashes the run id). mendflow's
expensive steps (each tool run, each model call) are cached by their real inputs
instead: the task's source, the sandbox (which carries the mission id), and the
content hash of the tree they look at
(and, for a fixer, the findings, the feedback and the attempt number). Their
results are persisted in Prefect's result storage, so a re-run of the same
mission, after a crash or a suspend, shows them as Cached and repeats no tool
run and no LLM call. Editing a task's code invalidates its cache entries.

Host-neutral keys: a worker of a fleet keeps its clones, worktrees and environments
under its own state directory (``$MENDFLOW_HOME``), so the same mission step's inputs
name different absolute paths on two hosts (``/home/a/.mendflow/worktrees/m-1`` and
``/var/lib/mendflow/worktrees/m-1``). :class:`HostNeutralInputs` hashes every path (or
string) under the state directory relative to it, so a run resumed on another worker
finds the steps the first worker finished, provided both use one result storage (an
S3/NFS location or a shared ``PREFECT_LOCAL_STORAGE_PATH``). Everything else a key
holds (the tree's content hash, the mission id, the findings, the config) is the same
on every host. The results replayed this way hold no host-local path the resumed run
relies on: tool results and proposals hold paths relative to the repository, and the
test-impact map (a file beside the worktree) reaches validation through a cached task
(:func:`~mendflow.tasks.detect.impact_record.read_impact_map`), so it comes from the
shared result storage too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from prefect.cache_policies import TASK_SOURCE, CachePolicy, Inputs
from pydantic import BaseModel

STATE_MARK = "<mendflow-state>"
"""What the state directory's absolute path becomes in a cache key."""

_ROOT_ARGS = ("state_root", "state", "state_dir")


def host_roots(inputs: dict[str, Any]) -> list[str]:
    """The host-local state directories a task's inputs may name, longest first.

    ``$MENDFLOW_HOME`` (default ``~/.mendflow``), a ``state_root`` / ``state`` /
    ``state_dir`` argument, and ``mission.state_dir`` of a config argument; each as given
    and with symbolic links resolved.
    """
    found: list[Path] = [Path(os.environ.get("MENDFLOW_HOME") or Path.home() / ".mendflow")]
    for name, value in inputs.items():
        if name in _ROOT_ARGS and isinstance(value, (str, PurePath)) and value:
            found.append(Path(value))
        state_dir = getattr(getattr(value, "mission", None), "state_dir", None)
        if isinstance(state_dir, (str, PurePath)) and state_dir:
            found.append(Path(state_dir))
    roots: set[str] = set()
    for path in found:
        path = path.expanduser()
        roots.add(str(path).rstrip("/"))
        roots.add(os.path.realpath(path).rstrip("/"))
    return sorted((r for r in roots if r), key=len, reverse=True)


def neutral(value: Any, roots: Iterable[str]) -> Any:
    """``value`` with every path under one of ``roots``, alone or inside a string, made
    relative to it (``<mendflow-state>/worktrees/m-1``); pydantic models as their JSON form
    and type name, containers element by element, anything else as is.

    Args:
        value: a task input.
        roots: :func:`host_roots`.

    Returns:
        A value Prefect's ``hash_objects`` hashes the same on every host.
    """
    roots = list(roots)
    if isinstance(value, BaseModel):
        try:
            dumped = value.model_dump(mode="json")
        except ValueError:  # a field with no JSON form: hashed as Prefect would
            return value
        return {"__model__": type(value).__qualname__, "fields": neutral(dumped, roots)}
    if isinstance(value, PurePath):
        return {"__path__": neutral(str(value), roots)}
    if isinstance(value, str):  # a path, or a message quoting one (a traceback's file)
        for root in roots:
            if value == root:
                return STATE_MARK
            value = value.replace(root + "/", STATE_MARK + "/")
        return value
    if isinstance(value, dict):
        return {key: neutral(item, roots) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [neutral(item, roots) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted((neutral(item, roots) for item in value), key=repr)
    return value


@dataclass
class HostNeutralInputs(CachePolicy):
    """Prefect's ``INPUTS`` policy over :func:`neutral` inputs: the key of a step is the same
    on every host that runs the mission.

    Not a subclass of :class:`~prefect.cache_policies.Inputs`: Prefect's compound policy
    replaces every ``Inputs`` it holds by one plain ``Inputs`` (which would hash the host's
    paths again). To leave an argument out, build ``HostNeutralInputs(exclude=["arg"]) +
    TASK_SOURCE``.
    """

    exclude: list[str] = field(default_factory=list)

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        """The key of :class:`~prefect.cache_policies.Inputs`, computed on the host-neutral
        form of the inputs (same arguments and return as Prefect's)."""
        inputs = inputs or {}
        roots = host_roots(inputs)
        kept = {key: neutral(value, roots) for key, value in inputs.items()
                if key not in self.exclude}
        return Inputs().compute_key(task_ctx, kept, flow_parameters, **kwargs)


MISSION_STEP = HostNeutralInputs() + TASK_SOURCE
"""Cache key: every input of the call (host-neutral paths) plus the task's source code."""
