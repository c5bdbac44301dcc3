"""Missions' locks as Prefect global concurrency limits (shared by every worker of a server).

A fleet mission holds two slots for its whole run, taken in one request (all or
nothing, so a mission waiting for its repository holds no fleet slot):

* ``mendflow-repo-<repository key>``: limit 1, one mission per repository,
  whichever worker, fleet or host runs it (created on demand);
* ``mendflow-fleet-<fleet name>``: the fleet's ``limits.concurrent_missions``.

The slots are held under a lease that the holder renews in the background
(``prefect.concurrency.sync.concurrency``). A worker killed mid-mission stops
renewing: the server's repossessor frees its slots when the lease expires
(:data:`LEASE_S` seconds, Prefect's minimum, plus up to its 15 s loop), so the
same mission, resumed on another worker, gets them back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import httpx

from mendflow.core.errors import EngineUnavailable
from mendflow.infra.retry import is_transient

OUTAGE_S = 180.0
"""How long a mission waiting for its slots rides out an unreachable API, seconds."""
LEASE_S = 60.0
"""Lease of held slots, seconds (the API's minimum is 60); renewed while the mission lives."""
REPO_PREFIX = "mendflow-repo-"
FLEET_PREFIX = "mendflow-fleet-"


def repository_limit(key: str) -> str:
    """The concurrency limit name of a repository (``key``: :func:`~mendflow.core.fleet.repository_key`)."""
    return f"{REPO_PREFIX}{key}"


def fleet_limit(name: str) -> str:
    """The concurrency limit name of a fleet."""
    return f"{FLEET_PREFIX}{name}"


def engine_error(error: Exception, what: str) -> EngineUnavailable:
    """The typed error for a Prefect API that cannot be reached or cannot answer."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value() or "the ephemeral Prefect API"
    return EngineUnavailable(
        f"cannot {what}: {type(error).__name__}: {error}".strip(), subject=str(url),
        hint="check that the Prefect server is running and that its database is reachable "
             "(PREFECT_API_DATABASE_CONNECTION_URL on the server), then re-run; "
             "`mendflow fleet status` shows what was already submitted")


def ensure_limit(name: str, limit: int, *, update: bool = False) -> None:
    """Create the global concurrency limit ``name`` with ``limit`` slots if it is missing.

    Args:
        name: the limit's name.
        limit: its slots.
        update: also change an existing limit's slot count to ``limit``.

    Raises:
        EngineUnavailable: the Prefect API cannot be reached or failed.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            if update:
                client.upsert_global_concurrency_limit_by_name(name, limit)
                return
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                try:
                    client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(name=name, limit=limit))
                except (ObjectAlreadyExists, httpx.HTTPStatusError):
                    # another worker created it meanwhile (the server may answer that race
                    # with a 500 on PostgreSQL's unique violation): it must exist now
                    client.read_global_concurrency_limit_by_name(name)
    except httpx.HTTPError as err:
        raise engine_error(err, f"create the concurrency limit {name}") from None


@contextmanager
def mission_slots(repository_key: str, fleet: str | None, flow_run_id: str | None,
                  *, timeout_s: float | None = None) -> Iterator[list[str]]:
    """Hold the repository's slot (and the fleet's) for the ``with`` block.

    Waits (polling the server) while another mission, on any worker, holds the
    repository, or while the fleet is at its limit.

    Args:
        repository_key: the repository's key.
        fleet: the fleet's name, or None (no fleet-wide limit).
        flow_run_id: the holding flow run (recorded as the lease's holder), or None.
        timeout_s: give up waiting after this many seconds (None: wait as long as it takes).

    Yields:
        The names of the limits held.

    Raises:
        EngineUnavailable: the Prefect API cannot be reached.
        TimeoutError: ``timeout_s`` passed before the slots were free.
    """
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.concurrency.sync import concurrency

    names = [repository_limit(repository_key)]
    if fleet:
        names.append(fleet_limit(fleet))
    holder = ConcurrencyLeaseHolder(type="flow_run", id=UUID(flow_run_id)) if flow_run_id else None

    def take() -> Any:
        ensure_limit(names[0], 1)
        if fleet:  # normally created by `fleet run` with the fleet's limit
            ensure_limit(names[1], 1)
        slots = concurrency(names, occupy=1, timeout_seconds=timeout_s, lease_duration=LEASE_S,
                            strict=True, holder=holder, raise_on_lease_renewal_failure=False)
        slots.__enter__()
        return slots

    slots = ride_out_outage(take, "take the repository's concurrency slot")
    try:
        yield names
    except BaseException as error:
        if not slots.__exit__(type(error), error, error.__traceback__):
            raise
    else:
        slots.__exit__(None, None, None)


def ride_out_outage(call: Callable[[], Any], what: str, outage_s: float = OUTAGE_S) -> Any:
    """``call()``, tried again while the API is down or answers a retryable error.

    A server restarted during a fleet is down for seconds to a minute; the missions waiting for
    their slots (with a client that has not connected yet, which Prefect does not retry) wait
    it out instead of failing. Waits 1, 2, 4 ... 16 s between attempts, ``outage_s`` in all.

    Args:
        call: the API calls to make (no argument); its value is returned.
        what: what the calls do, for the error ("take the repository's concurrency slot").
        outage_s: how long to keep trying, seconds.

    Raises:
        EngineUnavailable: the API stayed unreachable for ``outage_s`` seconds, or
            answered an error that no retry can change.
    """
    # (where Prefect defines it; prefect.concurrency.sync raises it without exporting it)
    from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError

    deadline, wait_s = time.monotonic() + outage_s, 1.0
    while True:
        try:
            return call()
        except (EngineUnavailable, ConcurrencySlotAcquisitionError, httpx.HTTPError) as error:
            # what went wrong underneath: Prefect's error wraps the client's, ours hides it
            cause = error if isinstance(error, httpx.HTTPError) else (
                error.__cause__ or error.__context__ or error)
            if not is_transient(cause) or time.monotonic() + wait_s > deadline:
                if isinstance(error, EngineUnavailable):
                    raise
                raise engine_error(error, what) from None
        time.sleep(wait_s)
        wait_s = min(wait_s * 2, 16.0)


MEMORY_LEASES = "prefect.server.concurrency.lease_storage.memory"
LEASE_STORAGE_ENV = "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"


def lease_storage_warning() -> str | None:
    """A warning when the server keeps concurrency leases in memory (Prefect's default).

    A server restart then forgets the leases of the missions in flight: their slots are never
    given back (the release of an unknown lease is a no-op on the server) and their
    repositories wait forever. The server's settings come from ``GET /admin/settings``.

    Returns:
        One line naming the setting to change, or None when the storage persists (or the
        server does not say).
    """
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            settings = client.request("GET", "/admin/settings").json()
    except (httpx.HTTPError, ValueError):
        return None
    storage = ((settings.get("server") or {}).get("concurrency") or {}).get("lease_storage")
    if storage != MEMORY_LEASES:
        return None
    return (f"the Prefect server keeps concurrency leases in memory: a server restart during a "
            f"fleet would leave repository slots taken forever; start it with "
            f"{LEASE_STORAGE_ENV}=prefect.server.concurrency.lease_storage.filesystem (or a "
            f"Redis lease storage)")
