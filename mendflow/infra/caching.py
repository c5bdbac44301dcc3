"""The cache policy that makes missions resumable.

Prefect's default cache policy includes the flow-run id, so a new run re-uses
nothing (Prefect 3.8 and 3.9: the default policy hashes the run id). mendflow's
expensive steps (each tool run, each model call) are cached by their real inputs
instead: the task's source, the sandbox (which carries the mission id), and the
content hash of the tree they look at
(and, for a fixer, the findings, the feedback and the attempt number). Their
results are persisted in Prefect's result storage, so a re-run of the same
mission, after a crash or a suspend, shows them as Cached and repeats no tool
run and no LLM call. Editing a task's code invalidates its cache entries.
"""

from __future__ import annotations

from prefect.cache_policies import INPUTS, TASK_SOURCE

MISSION_STEP = INPUTS + TASK_SOURCE
"""Cache key: every input of the call plus the task's source code."""
