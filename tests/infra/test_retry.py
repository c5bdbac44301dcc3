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
