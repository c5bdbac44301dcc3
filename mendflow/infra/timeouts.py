"""Adaptive timeouts: learn how long each step takes on a repository.

The durations of the steps of earlier runs (``pytest``, ``ruff``, ``mypy``,
``bandit``, ``llm`` ...) are kept per repository in mendflow's state directory,
never in the user's repository::

    <state>/history/<repo key>.json    {"pytest": [12.1, 11.8, ...], "ruff": [...]}

with the newest :data:`~mendflow.core.config.HISTORY_SIZE` durations per step. A
step's timeout is then ``clamp(percentile(history) * factor, floor_s,
ceiling_s)`` (see :class:`~mendflow.core.config.TimeoutsConfig`), so a test suite
that takes 20 s is stopped after minutes, not after the 30-minute default,
while a slow one is not killed early. A model call's timeout
(:func:`llm_timeout`) is never below ``llm_floor_s``.

Writes go to a temporary file that replaces the history (``os.replace``):
two processes writing at once never leave a corrupt file (the last writer
wins). A corrupt file is treated as empty, with a warning.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

from mendflow.core.config import HISTORY_SIZE, TimeoutsConfig
from mendflow.infra import shared_history
from mendflow.infra.files import write_atomic
from mendflow.infra.layout import StateLayout
from mendflow.infra.lock import repo_key

log = logging.getLogger(__name__)

LLM_STEP = "llm"
"""The history step of one model HTTP call (recorded by :mod:`mendflow.tasks.fix.llm`)."""


def history_path(repo_root: Path, layout: StateLayout) -> Path:
    """Return ``<state>/history/<repo key>.json`` (see :func:`mendflow.infra.lock.repo_key`)."""
    return layout.history / f"{repo_key(repo_root)}.json"


def _valid(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and value >= 0


def load_history(repo_root: Path, layout: StateLayout) -> dict[str, list[float]]:
    """Read the recorded durations of a repository.

    Args:
        repo_root: the repository.
        layout: mendflow's state directory, resolved.

    Returns:
        Step name -> durations in seconds, oldest first. Empty when there is no
        history yet or the file is corrupt (a warning is logged). With
        ``$MENDFLOW_HISTORY_URL`` set, read from that shared database instead
        (:mod:`mendflow.infra.shared_history`).
    """
    url = shared_history.configured_url()
    if url:
        return shared_history.load(url, repo_root, HISTORY_SIZE)
    path = history_path(repo_root, layout)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("ignoring the corrupt duration history %s (%s); it starts again", path, err)
        return {}
    if not isinstance(data, dict):
        log.warning("ignoring the corrupt duration history %s (not a mapping)", path)
        return {}
    return {str(step): [float(v) for v in values if _valid(v)]
            for step, values in data.items() if isinstance(values, list)}


def _write_atomic(path: Path, data: dict[str, list[float]]) -> None:
    write_atomic(path, json.dumps(data))


def record_duration(repo_root: Path, step: str, seconds: float, *,
                    layout: StateLayout) -> None:
    """Add one duration of ``step`` to the repository's history (the newest 50 are kept).

    Never raises for a problem of the history: a negative or non-finite
    duration, or a file that cannot be written, is logged as a warning.

    Args:
        repo_root: the repository the step ran on.
        step: the step's name (``pytest``, ``ruff``, ``mypy``, ``bandit``, ``llm`` ...).
        seconds: its wall time, seconds.
        layout: mendflow's state directory, resolved.
    """
    if not _valid(seconds):
        log.warning("not recording the invalid duration %r of %s", seconds, step)
        return
    url = shared_history.configured_url()
    if url:  # one database that every worker shares
        shared_history.record(url, repo_root, step, seconds, HISTORY_SIZE)
        return
    path = history_path(repo_root, layout)
    history = load_history(repo_root, layout)
    history[step] = [*history.get(step, []), float(seconds)][-HISTORY_SIZE:]
    try:
        _write_atomic(path, history)
    except OSError as err:
        log.warning("could not write the duration history %s: %s", path, err)


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile of ``values`` (linear interpolation between ranks).

    Args:
        values: at least one number.
        q: the percentile, 0-100.

    Returns:
        The value at rank ``(n - 1) * q / 100`` of the sorted values (numpy's default method).

    Raises:
        ValueError: ``values`` is empty or ``q`` is outside 0-100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def clamp(value: float, config: TimeoutsConfig) -> float:
    """Return ``value`` limited to ``[config.floor_s, config.ceiling_s]``."""
    return min(max(value, config.floor_s), config.ceiling_s)


def adaptive_timeout(repo_root: Path, step: str, *, default_s: float, config: TimeoutsConfig,
                     layout: StateLayout) -> float:
    """Return the timeout of ``step`` on a repository, in seconds.

    Args:
        repo_root: the repository.
        step: the step's name (as given to :func:`record_duration`).
        default_s: the configured timeout of the step, seconds.
        config: the ``timeouts`` section.
        layout: mendflow's state directory, resolved.

    Returns:
        ``default_s`` when ``config.adaptive`` is off; ``default_s`` clamped to
        ``[floor_s, ceiling_s]`` with fewer than ``min_samples`` recorded
        durations; else ``percentile(history, config.percentile) * config.factor``, clamped.
    """
    if not config.adaptive:
        return default_s
    samples = load_history(repo_root, layout).get(step, [])
    if len(samples) < config.min_samples:
        return clamp(default_s, config)
    return clamp(percentile(samples, config.percentile) * config.factor, config)


def llm_timeout(repo_root: Path, *, default_s: float, config: TimeoutsConfig,
                layout: StateLayout) -> float:
    """Return the timeout of one model HTTP call on a repository, in seconds.

    Args:
        repo_root: the repository the fixer works on.
        default_s: the fixer's configured ``timeout_s``, seconds.
        config: the ``timeouts`` section.
        layout: mendflow's state directory, resolved.

    Returns:
        ``default_s`` when ``config.adaptive`` is off; else
        :func:`adaptive_timeout` of step :data:`LLM_STEP`, raised to at least
        ``config.llm_floor_s`` (never above ``ceiling_s``: the config checks
        ``llm_floor_s <= ceiling_s``).
    """
    if not config.adaptive:
        return default_s
    learned = adaptive_timeout(repo_root, LLM_STEP, default_s=default_s, config=config,
                               layout=layout)
    return max(learned, config.llm_floor_s)
