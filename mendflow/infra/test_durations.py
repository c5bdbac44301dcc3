"""How long each test of a repository took when it last passed, kept for its next baseline.

A first baseline knows nothing about the suite, so every test runs with
``tools.pytest.first_timeout_s`` and an honest slow test runs twice: stopped at
the first timeout, then again alone as its second chance (see README,
"Hanging tests"). Its next baseline, or the next mission's, gives each test
that passed a timeout learned from this file instead
(:func:`mendflow.core.hangs.plan_from_durations`), so it runs once.

The file is ``<state>/history/<repo key>.tests.json``: node id -> seconds,
read from pytest's JUnit XML through :class:`~mendflow.core.models.TestRun`.
It is this host's own: with ``$MENDFLOW_HISTORY_URL`` (a fleet's shared
history) each worker learns from the runs it made itself.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from mendflow.core.models import TestRun
from mendflow.infra.files import write_atomic
from mendflow.infra.layout import StateLayout
from mendflow.infra.lock import repo_key

log = logging.getLogger(__name__)

MAX_TESTS = 100_000
"""The most node ids kept: past it, the oldest entries go first (a suite of that
size is rare; this only bounds a history that renamed tests would grow)."""

_DURATIONS = TypeAdapter(dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]])


def durations_path(repo_root: Path, layout: StateLayout) -> Path:
    """Return ``<state>/history/<repo key>.tests.json`` (see :func:`mendflow.infra.lock.repo_key`)."""
    return layout.history / f"{repo_key(repo_root)}.tests.json"


def load_test_durations(repo_root: Path, layout: StateLayout) -> dict[str, float]:
    """Read the seconds each test of a repository took when it last passed.

    Args:
        repo_root: the repository.
        layout: mendflow's state directory, resolved.

    Returns:
        Node id -> seconds. Empty when nothing was recorded yet, or when the
        file is unreadable or corrupt (a warning is logged; the next run writes
        it again).
    """
    path = durations_path(repo_root, layout)
    try:
        return _DURATIONS.validate_json(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValidationError) as err:
        log.warning("ignoring the unreadable test durations %s (%s); they are learned again",
                    path, str(err).splitlines()[0])
        return {}


def record_test_durations(repo_root: Path, run: TestRun, layout: StateLayout) -> None:
    """Merge a test run into the repository's test durations.

    A test that passed gets its new duration; a test that failed, errored or
    hung loses its entry (its next run gets the first timeout and a second
    chance again); a test the run did not run (a selective run, a skip) keeps
    its entry. Never raises for a problem of the file: it is logged as a warning.

    Args:
        repo_root: the repository the run was made on.
        run: the test run (its cases' outcomes and durations, seconds).
        layout: mendflow's state directory, resolved.
    """
    durations = load_test_durations(repo_root, layout)
    for case in run.cases:
        if case.outcome == "skipped" and not case.timed_out:
            continue
        durations.pop(case.nodeid, None)  # re-inserted last: the newest stay past the bound
        if case.outcome == "passed" and not case.timed_out:
            durations[case.nodeid] = round(case.duration_s, 3)
    kept = dict(list(durations.items())[-MAX_TESTS:])
    path = durations_path(repo_root, layout)
    try:
        write_atomic(path, json.dumps(kept))
    except OSError as err:
        log.warning("could not write the test durations %s: %s", path, err)
