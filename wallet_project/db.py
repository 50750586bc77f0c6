"""Prepared statements for hot reads (and the group commit's two statements).

A short read by primary key costs PostgreSQL more to plan than to run (a
three-table lookup: 0.5-1 ms of planning for 0.02 ms of execution, on every
request). Django sends every query with client-side binding and psycopg's
automatic preparing off (`prepare_threshold=None`, for the sake of
transaction-mode poolers, which this stack does not have: Django's own pool talks
to PostgreSQL). `prepared_fetchone` / `prepared_fetchall` run a fixed statement
as a server-side prepared statement instead: planned once per connection and
reused for as long as the pooled connection lives.

Use them for the few hot, fixed statements of a lean path, with `%s`
placeholders and parameters whose types do not vary (wrap ints in
`psycopg.types.numeric.Int8`): psycopg keeps one statement per (SQL, parameter
types). The queries go through Django's cursor wrapper: database errors are
Django's, and execute wrappers and the query log see them like any other (the
log has no SQL text for them: Django reads it from psycopg's client-side query).
"""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from weakref import WeakKeyDictionary

import psycopg
from django.conf import settings
from django.db import connection
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper


class _PreparedCursor(psycopg.Cursor):
    """Server-side binding; every query prepared; rows in binary format (psycopg's
    binary loaders: no text parsing of timestamps and numerics, and jsonb comes
    back as Python values)."""

    def execute(self, query, params=None, *, prepare=None, binary=None):  # type: ignore[override]
        return super().execute(query, params, prepare=True, binary=True)


# A threshold no query reaches: Django's own queries (client-side binding, never
# prepared) stay as they are, and `_PreparedCursor` prepares explicitly.
_EXPLICIT_PREPARE_ONLY = 2**31 - 1

# One cursor per connection, kept open: a new cursor looks up its column loaders
# again on every query. A connection serves one request (greenlet) at a time.
_cursors: "WeakKeyDictionary[psycopg.Connection, _PreparedCursor]" = WeakKeyDictionary()


def _cursor() -> CursorWrapper:
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = connection.connection
        cursor = _cursors.get(raw)
        if cursor is None or cursor.closed:
            if raw.prepare_threshold is None:
                raw.prepare_threshold = _EXPLICIT_PREPARE_ONLY
            cursor = _cursors[raw] = _PreparedCursor(raw)
        connection.validate_thread_sharing()
        wrapper = CursorDebugWrapper if connection.queries_logged else CursorWrapper
        return wrapper(cursor, connection)


def prepared_fetchone(
    sql: str, params: Sequence[Any] | Mapping[str, Any]
) -> tuple | None:
    cursor = _cursor()
    cursor.execute(sql, params)
    return cursor.fetchone()


def prepared_fetchall(
    sql: str, params: Sequence[Any] | Mapping[str, Any]
) -> list[tuple]:
    cursor = _cursor()
    cursor.execute(sql, params)
    return cursor.fetchall()


def execute_and_commit(sql: str, params: Sequence[Any] | Mapping[str, Any]) -> None:
    """Run `sql` (prepared) and COMMIT the current transaction in one round trip
    (psycopg's pipeline mode), inside the outermost `transaction.atomic()` block,
    which then has nothing left to commit. `sql` must decide by itself: an error
    it raises aborts the transaction and comes out of here as Django's database
    error (the block then rolls back), like an error at COMMIT."""
    cursor = _cursor()
    raw = connection.connection
    with connection.wrap_database_errors, raw.pipeline():
        cursor.execute(sql, params)
        raw.commit()


@contextmanager
def long_running_timeouts() -> Iterator[None]:
    """The statement and lock timeouts of a long job (the fee run, reconcile:
    settings.DATABASE_LONG_TIMEOUTS) for this connection's session, then back to
    the process's own (RESET returns to the connection's startup options).
    Outside any transaction: a SET inside one that rolls back is undone."""
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
