"""The error classifier: which failures a later attempt may survive.

Prefect retries a task only when its ``retry_condition_fn`` says so; every
mendflow task that retries uses :func:`retry_if_transient`, so a bad config,
a rejected patch or an auth failure fails at once, while a network blip, an
HTTP 429/5xx, a database-locked 503 from Prefect's SQLite, a timeout or a
temporary filesystem error is retried with backoff and jitter.
"""

from __future__ import annotations

import errno
import sqlite3
from typing import Any

import httpx

from mendflow.core.errors import LLMError, MendflowError

_TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.ECONNRESET,
                     errno.ECONNREFUSED, errno.ECONNABORTED, errno.ETXTBSY, errno.ENETUNREACH,
                     errno.EHOSTUNREACH, errno.EPIPE}


def is_transient(exc: BaseException) -> bool:
    """Classify an exception as transient (worth retrying) or permanent.

    Args:
        exc: the exception a task raised.

    Returns:
        True for: a retryable :class:`LLMError`; httpx transport errors and
        timeouts; HTTP 408/409/429/5xx responses (the Prefect client's
        errors included, so SQLite's "database is locked" 503 is retried);
        ``sqlite3.OperationalError`` "database is locked"; ``TimeoutError``,
        ``ConnectionError``; ``OSError`` with a temporary errno (EAGAIN,
        EBUSY, EINTR, ETIMEDOUT, ...). False for everything else, every other
        :class:`MendflowError` included (bad config, rejected patch, auth).
    """
    if isinstance(exc, LLMError):
        return exc.retryable
    if isinstance(exc, MendflowError):
        return False
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return code in (408, 409, 429) or code >= 500
    if isinstance(exc, (httpx.TransportError, httpx.TimeoutException)):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return "locked" in str(exc) or "busy" in str(exc)
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, OSError):
        return exc.errno in _TRANSIENT_ERRNOS
    return False


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only transient failures (see :func:`is_transient`).

    Args:
        task: the Prefect task (unused).
        task_run: the task run (unused).
        state: the failed state; its result is the exception.

    Returns:
        True when the task should be retried.
    """
    if not state.is_failed():
        return False
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_transient(exc)


def transient_retries(retries: int = 2, *, first_delay_s: float = 2.0,
                      condition: Any = None) -> dict[str, Any]:
    """The one retry preset of mendflow's tasks: ``@task(..., **transient_retries(2))``.

    Only transient errors are retried (:func:`retry_if_transient`), with exponential
    backoff (``first_delay_s``, then ×2 each attempt) and ±50 % jitter, so that
    parallel tasks that failed together do not retry in lockstep.

    Args:
        retries: how many retries after the first attempt.
        first_delay_s: seconds before the first retry.
        condition: a narrower ``retry_condition_fn`` (default :func:`retry_if_transient`).

    Returns:
        The keyword arguments of Prefect's ``@task`` for retries.
    """
    return {"retries": retries,
            "retry_delay_seconds": [first_delay_s * 2 ** n for n in range(retries)],
            "retry_jitter_factor": 0.5,
            "retry_condition_fn": condition or retry_if_transient}
