"""Which reads go to the streaming replica; everything else on the primary.

Writes, wallet detail, idempotency and every view that has not opted in read and
write the primary ("default"). A read-only view opts in with `@replica_reads` on
its handler (DRF's `get`/`list`, a lean `lean_get`, an admin `changelist_view`)
or, for an admin class, with `ReplicaChangelistMixin`. The handler then runs
with `read_alias()` set to what `replica_alias(request)` decides:

- the primary when there is no replica (DATABASE_REPLICA_URL unset), for any
  unsafe method, and for a user pinned by a write: `ReplicaPinMiddleware` pins
  the user of every unsafe request for REPLICA_PIN_SECONDS (a key in the shared
  cache, so every web node sees it; a cache that cannot answer counts as pinned);
- the primary while the replica's replay lag is above REPLICA_MAX_LAG_SECONDS or
  the replica cannot be reached (the lag is read at most once a second per
  process, on the replica itself);
- else the replica.

On the replica, ORM reads follow `read_alias()` through the router
(wallet_project/db_router.py), and raw reads pass `using=read_alias()`
(wallet_project.db). A handler that
fails on the replica with a connection error runs again on the primary (and the
replica is left alone for a few seconds), so a replica going down costs latency,
never a 5xx; one that answers 404 there runs again on the primary too (a row the
replica has not replayed yet, e.g. a wallet created a moment ago by someone who
has not written since).

Opting a view in:

    class StatementView(APIView):
        @replica_reads
        def get(self, request, wallet_id): ...     # ORM: nothing else to change

        # raw SQL through wallet_project.db: prepared_fetchall(sql, params,
        # using=read_alias())

    class EventAdmin(ReplicaChangelistMixin, admin.ModelAdmin): ...
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import (
    DEFAULT_DB_ALIAS,
    InterfaceError,
    OperationalError,
    connections,
)
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import SimpleTemplateResponse
from rest_framework.exceptions import NotFound

from wallet_project.db_router import REPLICA, reading_from
from wallet_project.lean import bearer_user_id

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ROUTING_HEADER = "X-Database-Served-By"

# How long one lag reading is trusted, and how long a replica that could not be
# reached is left alone, per process.
LAG_CHECK_SECONDS = 1.0
DOWN_RETRY_SECONDS = 5.0

# Replay lag in seconds: 0 while everything received is replayed (an idle primary
# sends nothing, and the last replayed commit then only looks old), else the age
# of the last replayed commit.
_LAG_SQL = (
    "SELECT CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM "
    "pg_last_wal_replay_lsn() THEN 0 ELSE COALESCE(EXTRACT(EPOCH FROM now() - "
    "pg_last_xact_replay_timestamp()), 'Infinity') END::float8, pg_is_in_recovery()"
)


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


# --- Read-your-writes ---------------------------------------------------------------------


def _pin_key(user_id: Any) -> str:
    return f"replica-pin:{user_id}"


def pin_to_primary(user_id: Any) -> None:
    """Send `user_id`'s reads to the primary for REPLICA_PIN_SECONDS."""
    try:
        cache.set(_pin_key(user_id), 1, timeout=settings.REPLICA_PIN_SECONDS)
    except Exception:  # the cache down: the write itself has happened
        logger.warning("replica pin for user %s not stored", user_id, exc_info=True)


def _pinned(user_id: Any) -> bool:
    try:
        return cache.get(_pin_key(user_id)) is not None
    except Exception:  # cannot tell: the primary is always right
        return True


def _user_id(request: HttpRequest) -> Any:
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return user.pk
    # A lean handler runs before DRF authenticates (wallet_project.lean).
    return bearer_user_id(request)


class ReplicaPinMiddleware:
    """Pins the user of every unsafe request (API or admin) to the primary, once
    the response is ready: before the client can send its next request. With
    DATABASE_ROUTING_HEADER it also tells which aliases ran the queries."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not replica_configured():
            return self.get_response(request)
        if settings.DATABASE_ROUTING_HEADER:
            with _served_by() as served:
                response = self.get_response(request)
            response[ROUTING_HEADER] = ",".join(sorted(served))
        else:
            response = self.get_response(request)
        if request.method not in SAFE_METHODS:
            user_id = _user_id(request)
            if user_id is not None:
                pin_to_primary(user_id)
        return response


@contextmanager
def _served_by() -> Iterator[set[str]]:
    served: set[str] = set()
    with ExitStack() as stack:
        for alias in (DEFAULT_DB_ALIAS, REPLICA):

            def record(
                execute: Callable[..., Any],
                sql: str,
                params: Any,
                many: bool,
                context: dict[str, Any],
                alias: str = alias,
            ) -> Any:
                result = execute(sql, params, many, context)
                served.add(alias)  # answered (a failed query answered nothing)
                return result

            stack.enter_context(connections[alias].execute_wrapper(record))
        yield served


# --- Replica health -----------------------------------------------------------------------


@dataclass
class _Health:
    checked_at: float = float("-inf")
    usable_until: float = float("-inf")  # lag fine at the last reading
    checking: bool = False


_health = _Health()


def _replica_usable() -> bool:
    """Replay lag within REPLICA_MAX_LAG_SECONDS at a reading at most
    LAG_CHECK_SECONDS old (taken now when it is older; while another request of
    this process takes it, the primary answers)."""
    now = time.monotonic()
    if now >= _health.checked_at + LAG_CHECK_SECONDS and not _health.checking:
        _health.checking = True
        try:
            lag = _replica_lag()
        finally:
            _health.checking = False
        now = time.monotonic()
        _health.checked_at = now
        if lag is None:
            replica_down()
        elif lag <= settings.REPLICA_MAX_LAG_SECONDS:
            _health.usable_until = now + LAG_CHECK_SECONDS
        else:
            _health.usable_until = float("-inf")
    return now < _health.usable_until


def _replica_lag() -> float | None:
    """Seconds the replica is behind; None if it cannot be reached."""
    connection = connections[REPLICA]
    try:
        connection.ensure_connection()
        with connection.wrap_database_errors:
            # On psycopg's connection itself (autocommit): not one of the
            # request's queries (DATABASE_ROUTING_HEADER).
            lag, in_recovery = connection.connection.execute(_LAG_SQL).fetchone()
    except (OperationalError, InterfaceError) as exc:
        logger.warning("replica unreachable, reading from the primary: %s", exc)
        _close(connection)
        return None
    # A promoted replica is no replica of this primary any more.
    return float(lag) if in_recovery else None


def replica_down() -> None:
    """Leave the replica alone for DOWN_RETRY_SECONDS (this process)."""
    now = time.monotonic()
    _health.usable_until = float("-inf")
    _health.checked_at = now + DOWN_RETRY_SECONDS - LAG_CHECK_SECONDS


def _close(connection: BaseDatabaseWrapper) -> None:
    with suppress(Exception):  # already broken
        connection.close()


def replica_alias(request: HttpRequest) -> str:
    """The alias a read-only handler of `request` should read from (above)."""
    if not replica_configured() or request.method not in SAFE_METHODS:
        return DEFAULT_DB_ALIAS
    user_id = _user_id(request)
    if user_id is not None and _pinned(user_id):
        return DEFAULT_DB_ALIAS
    return REPLICA if _replica_usable() else DEFAULT_DB_ALIAS


def _not_found(exc: BaseException) -> bool:
    return (
        isinstance(exc, Http404 | NotFound) or getattr(exc, "status_code", None) == 404
    )


def on_replica(request: HttpRequest, call: Callable[[], Any]) -> Any:
    """`call()` reading from `replica_alias(request)`; again on the primary if it
    fails to reach the replica or finds nothing there (a 404)."""
    alias = replica_alias(request)
    if alias == DEFAULT_DB_ALIAS:
        return call()
    try:
        with reading_from(alias):
            result = call()
            if isinstance(result, SimpleTemplateResponse):
                result.render()  # the admin's lazy querysets, on the replica
    except (OperationalError, InterfaceError) as exc:
        logger.warning("read on the replica failed, reading the primary: %s", exc)
        _close(connections[REPLICA])
        replica_down()
        return call()
    except Exception as exc:
        if _not_found(exc):
            return call()
        raise
    if getattr(result, "status_code", None) == 404:
        return call()
    return result


def replica_reads(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for a read-only handler `(self, request, *args, **kwargs)`: a view
    method (`get`, `list`, `lean_get`) or an admin `changelist_view`."""

    @functools.wraps(handler)
    def wrapper(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        django_request = getattr(request, "_request", request)  # DRF's Request
        return on_replica(
            django_request, lambda: handler(self, request, *args, **kwargs)
        )

    return wrapper


class ReplicaChangelistMixin:
    """For a ModelAdmin: its list page (GET) reads from the replica; its actions
    (a POST to the same page) and every other page stay on the primary."""

    @replica_reads
    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(request, extra_context)  # type: ignore[misc]  # a mixin of ModelAdmin
