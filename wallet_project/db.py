"""Prepared statements for hot reads (and the group commit's two statements).

A short read by primary key costs PostgreSQL more to plan than to run (a
three-table lookup: 0.5-1 ms of planning for 0.02 ms of execution, on every
request). Django sends every query with client-side binding and psycopg's
automatic preparing off (`prepare_threshold=None`, for the sake of
transaction-mode poolers). Where Django's own pool talks to PostgreSQL,
`prepared_fetchone` / `prepared_fetchall` run a fixed statement
as a server-side prepared statement instead: planned once per connection and
reused for as long as the pooled connection lives.

Use them for the few hot, fixed statements of a lean path, with `%s`
placeholders and parameters whose types do not vary (wrap ints in
`psycopg.types.numeric.Int8`): psycopg keeps one statement per (SQL, parameter
types). The queries go through Django's cursor wrapper: database errors are
Django's, and execute wrappers and the query log see them like any other (the
log has no SQL text for them: Django reads it from psycopg's client-side query).

Behind PgBouncer in transaction pooling mode (`DATABASE_POOLER=pgbouncer`) a
statement prepared on one server connection is unknown on the next one the
client gets (Debian's PgBouncer 1.18 does not track them), so there the same
helpers execute without preparing: server-side binding and binary rows still,
with the unnamed statement of the extended protocol (parsed, planned and run in
one round trip, as PgBouncer allows). `make bench` measures what that costs.

`using` names the connection (`wallet_project.db_router.read_alias()` for a read
that may go to the replica); the default is the primary.
"""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from weakref import WeakKeyDictionary

import psycopg
from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    InternalError,
    OperationalError,
    connection,
    connections,
)
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper


class _PreparedCursor(psycopg.Cursor):
    """Server-side binding; every query prepared; rows in binary format (psycopg's
    binary loaders: no text parsing of timestamps and numerics, and jsonb comes
    back as Python values)."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True, binary=True)


class _UnpreparedCursor(psycopg.Cursor):
    """The same, never prepared: for transaction-mode poolers."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=False, binary=True)


# A threshold no query reaches: Django's own queries (client-side binding, never
# prepared) stay as they are, and `_PreparedCursor` prepares explicitly.
_EXPLICIT_PREPARE_ONLY = 2**31 - 1

# One cursor per connection, kept open: a new cursor looks up its column loaders
# again on every query. A connection serves one request (greenlet) at a time.
_cursors: "WeakKeyDictionary[psycopg.Connection, psycopg.Cursor]" = WeakKeyDictionary()


def prepared_statements() -> bool:
    """Whether server-side prepared statements are safe: not behind a
    transaction-mode pooler (DATABASE_POOLER)."""
    return settings.DATABASE_POOLER != "pgbouncer"


def _cursor(using: str) -> CursorWrapper:
    connection = connections[using]
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = connection.connection
        cursor = _cursors.get(raw)
        if cursor is None or cursor.closed:
            if not prepared_statements():
                cursor = _cursors[raw] = _UnpreparedCursor(raw)
            else:
                if raw.prepare_threshold is None:
                    raw.prepare_threshold = _EXPLICIT_PREPARE_ONLY
                cursor = _cursors[raw] = _PreparedCursor(raw)
        connection.validate_thread_sharing()
        wrapper = CursorDebugWrapper if connection.queries_logged else CursorWrapper
        return wrapper(cursor, connection)


def prepared_fetchone(
    sql: str,
    params: Sequence[Any] | Mapping[str, Any],
    *,
    using: str = DEFAULT_DB_ALIAS,
) -> tuple | None:
    cursor = _cursor(using)
    cursor.execute(sql, params)
    return cursor.fetchone()


def prepared_fetchall(
    sql: str,
    params: Sequence[Any] | Mapping[str, Any],
    *,
    using: str = DEFAULT_DB_ALIAS,
) -> list[tuple]:
    cursor = _cursor(using)
    cursor.execute(sql, params)
    return cursor.fetchall()


def execute_and_commit(sql: str, params: Sequence[Any] | Mapping[str, Any]) -> None:
    """Run `sql` (prepared) and COMMIT the current transaction in one round trip
    (psycopg's pipeline mode), inside the outermost `transaction.atomic()` block,
    which then has nothing left to commit. `sql` must decide by itself: an error
    it raises aborts the transaction and comes out of here as Django's database
    error (the block then rolls back), like an error at COMMIT."""
    cursor = _cursor(DEFAULT_DB_ALIAS)
    connection = connections[DEFAULT_DB_ALIAS]
    raw = connection.connection
    with connection.wrap_database_errors, raw.pipeline():
        cursor.execute(sql, params)
        raw.commit()


@contextmanager
def long_running_timeouts() -> Iterator[None]:
    """The statement and lock timeouts of a long job (the fee run, reconcile:
    settings.DATABASE_LONG_TIMEOUTS) for this connection's session, then back to
    the process's own (RESET returns to the connection's startup options).
    Outside any transaction: a SET inside one that rolls back is undone.
    Behind PgBouncer (transaction pooling) a session setting would outlive the
    transaction on a server connection others share: there the job keeps the
    process's timeouts (each of its transactions is short)."""
    if settings.DATABASE_POOLER:
        yield
        return
    with connection.cursor() as cursor:
        for name, seconds in settings.DATABASE_LONG_TIMEOUTS.items():
            cursor.execute(
                "SELECT set_config(%s, %s, false)", [name, f"{round(seconds * 1000)}"]
            )
    try:
        yield
    finally:
        if connection.connection is not None and connection.is_usable():
            with connection.cursor() as cursor:
                for name in settings.DATABASE_LONG_TIMEOUTS:
                    cursor.execute(f"RESET {name}")


def _lost_connection(execute, sql, params, many, context):
    try:
        return execute(sql, params, many, context)
    except InternalError as exc:
        raw = context["connection"].connection
        if raw is not None and raw.closed:
            raise OperationalError(*exc.args) from exc
        raise


def connection_lost_is_unavailable(sender, connection, **kwargs) -> None:
    """`connection_created` (behind a pooler): a query whose connection broke
    under it is the database being unavailable (a 503), however psycopg words
    it. PgBouncer answers a query sent to a server connection that was killed
    with that server's FATAL error and then its own ("server conn crashed?"),
    both for one command: psycopg's InternalError "received 2 results"."""
    if settings.DATABASE_POOLER and _lost_connection not in connection.execute_wrappers:
        # First: `execute_wrapper()` blocks open now pop the last one.
        connection.execute_wrappers.insert(0, _lost_connection)
