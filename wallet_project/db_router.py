"""Where a query goes: the database router and the alias of the current read.

Writes and migrations always go to the primary ("default"). Reads go where the
current handler reads: the replica inside a handler that `wallet_project.replica`
sent there (`reading_from`), else the primary. Raw SQL asks `read_alias()`
(wallet_project.db: `prepared_fetchall(sql, params, using=read_alias())`).
Everything about deciding (read-your-writes, lag, fallback) and how a view opts
in is in wallet_project/replica.py.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import DEFAULT_DB_ALIAS

REPLICA = "replica"

# The alias ORM reads go to inside an opted-in handler; None elsewhere (Django's
# default: the primary, or the database an instance was read from).
_read_alias: ContextVar[str | None] = ContextVar("wallet_read_alias", default=None)


class PrimaryReplicaRouter:
    """DATABASE_ROUTERS: writes and migrations on the primary; reads where the
    current handler reads (`read_alias()`)."""

    def db_for_read(self, model, **hints) -> str | None:
        return _read_alias.get()

    def db_for_write(self, model, **hints) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        return True  # one database, two copies

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool:
        return db != REPLICA


def read_alias() -> str:
    """Where a read of the current handler goes: the replica inside an opted-in
    handler that was sent there, else the primary."""
    return _read_alias.get() or DEFAULT_DB_ALIAS


@contextmanager
def reading_from(alias: str) -> Iterator[str]:
    """ORM reads (and `read_alias()`) go to `alias` inside."""
    token = _read_alias.set(alias)
    try:
        yield alias
    finally:
        _read_alias.reset(token)
