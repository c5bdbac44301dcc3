"""The error classifier: only transient failures are retried."""

from __future__ import annotations

import errno
import sqlite3

import httpx
import pytest
from prefect.states import Completed, Failed

from mendflow.core.errors import ConfigError, LLMError, PatchRejected, ToolError
from mendflow.infra.retry import is_transient, retry_if_transient


def _status(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/api/task_runs/")
    return httpx.HTTPStatusError("x", request=request, response=httpx.Response(code, request=request))


@pytest.mark.parametrize("exc", [
    LLMError("overloaded", retryable=True), _status(429), _status(503), _status(500),
    httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
    sqlite3.OperationalError("database is locked"), TimeoutError(), ConnectionResetError(),
    OSError(errno.EAGAIN, "try again"), OSError(errno.EBUSY, "busy"),
])
def test_transient(exc):
    assert is_transient(exc)
    assert retry_if_transient(None, None, Failed(data=exc))


@pytest.mark.parametrize("exc", [
    LLMError("bad request"), LLMError("key refused", auth=True), ConfigError("bad field"),
    PatchRejected("no", reason="syntax"), ToolError("ruff crashed"), _status(400), _status(401),
    _status(404), sqlite3.OperationalError("no such table"), OSError(errno.ENOENT, "missing"),
    ValueError("bug"), KeyError("bug"),
])
def test_permanent(exc):
    assert not is_transient(exc)
    assert not retry_if_transient(None, None, Failed(data=exc))


def test_completed_state_is_not_retried():
    assert not retry_if_transient(None, None, Completed(data=None))


def test_every_retrying_task_uses_the_one_preset():
    """Retries everywhere: only classified errors, exponential backoff, jitter."""
    import importlib
    import pkgutil

    from prefect import Task

    import mendflow.tasks
    from mendflow.infra.retry import transient_retries

    retrying = []
    for module in pkgutil.walk_packages(mendflow.tasks.__path__, "mendflow.tasks."):
        for value in vars(importlib.import_module(module.name)).values():
            if isinstance(value, Task) and value.retries:
                retrying.append(value)
    assert len(retrying) > 20
    for task in retrying:
        assert task.retry_jitter_factor == 0.5, task.name
        assert task.retry_condition_fn is not None, task.name
        delays = task.retry_delay_seconds
        assert len(delays) == task.retries and delays == sorted(delays), task.name
    assert transient_retries(3, first_delay_s=1)["retry_delay_seconds"] == [1, 2, 4]
