"""The concurrency slots of a fleet mission ride out an API that is down for a while."""

from __future__ import annotations

import socket

import httpx
import pytest
from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError

from mendflow.core.errors import EngineUnavailable
from mendflow.infra.engine_limits import ride_out_outage


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nobody listens there once the socket is closed


def _acquire_from(url: str, attempts: list[int], up_after: int):
    """What Prefect's acquisition raises while the server is down: its own error, from the
    client's real ConnectError; the slots once the server is back."""
    def call() -> str:
        attempts.append(1)
        if len(attempts) <= up_after:
            try:
                httpx.get(url, timeout=2)
            except httpx.HTTPError as exc:
                raise ConcurrencySlotAcquisitionError("Unable to acquire concurrency slots") from exc
        return "slots"
    return call


def test_an_api_down_for_a_while_is_waited_out():
    attempts: list[int] = []
    call = _acquire_from(f"http://127.0.0.1:{_closed_port()}/api", attempts, up_after=2)
    assert ride_out_outage(call, "take the slot", outage_s=30) == "slots"
    assert len(attempts) == 3


def test_an_api_down_for_longer_than_the_bound_is_a_typed_error():
    attempts: list[int] = []
    call = _acquire_from(f"http://127.0.0.1:{_closed_port()}/api", attempts, up_after=99)
    with pytest.raises(EngineUnavailable) as error:
        ride_out_outage(call, "take the slot", outage_s=2.5)
    assert len(attempts) == 2  # at 0 s and 1 s; the next wait (2 s) would pass the bound
    assert "cannot take the slot" in str(error.value) and error.value.hint


def test_an_error_no_retry_changes_fails_at_once():
    attempts: list[int] = []

    def call():
        attempts.append(1)
        raise ConcurrencySlotAcquisitionError("Concurrency limits ['x'] must be created first")

    with pytest.raises(EngineUnavailable):
        ride_out_outage(call, "take the slot", outage_s=30)
    assert len(attempts) == 1
