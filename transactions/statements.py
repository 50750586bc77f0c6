"""Balances in the past and statements: reads of a user wallet's entries by time.

Every entry carries `balance_after`, the wallet's balance right after it, so the
balance at a moment is the `balance_after` of the wallet's last entry at or
before it: one probe of `entry_wallet_created_idx` (wallet_id, created_at DESC,
id DESC), whatever the wallet's size. A statement for [from, to) is its opening
balance (the balance just before `from`), its entries with created_at in
[from, to) oldest first (one range scan of the same index, read in keyset
chunks), and its closing balance (just before `to`): the closing balance of one
period is the opening balance of the next.

"Last" and "oldest first" are in (created_at, id) order. Entries of one wallet
are written under its row lock, so that order is their balance order as long as
created_at grows with the lock order (see the report of issue 20: the writer
stamps `now` just before taking the lock).

Each read is scoped to its owner in the same query: a wallet that is not a user
wallet of that (active) user reads as None, as for the history.
"""

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from psycopg.types.numeric import Int8

from accounts.models import User
from transactions.ledger import StatementTooLarge
from transactions.models import Entry, Transaction
from transactions.selectors import EntryRow
from wallet_project.db import prepared_fetchall, prepared_fetchone
from wallet_project.db_router import read_alias
from wallets.models import Wallet

# Rows per keyset chunk of a streamed statement: one round trip each, and all a
# streamed export holds in memory at a time.
STATEMENT_CHUNK = 2000


@dataclass(frozen=True)
class BalanceAsOf:
    currency: str
    # The wallet's balance now (its row), and the balance after its last entry
    # at or before the moment asked (0 before its first entry).
    balance: Decimal
    balance_as_of: Decimal


@dataclass(frozen=True)
class StatementHead:
    """A wallet and its owner as a statement names them, and the balances at
    the period's two ends."""

    wallet_id: UUID
    number: str
    name: str
    currency: str
    owner_email: str
    owner_name: str
    opening_balance: Decimal
    closing_balance: Decimal


@dataclass(frozen=True)
class Statement:
    head: StatementHead
    since: datetime
    until: datetime
    entries: list[EntryRow]
    total_in: Decimal
    total_out: Decimal


def _tables() -> dict[str, str]:
    return {
        "wallet": Wallet._meta.db_table,
        "user": User._meta.db_table,
        "entry": Entry._meta.db_table,
        "txn": Transaction._meta.db_table,
    }


# The balance after the wallet's last entry at or before / before a moment: the
# one index probe every read here starts from.
_LAST_BALANCE = (
    "(SELECT e.balance_after FROM {entry} e WHERE e.wallet_id = w.id"
    " AND e.created_at {op} %(at_{name})s ORDER BY e.created_at DESC, e.id DESC"
    " LIMIT 1)"
)

# The wallet row: a user wallet of this user, who is still active.
_OWN_WALLET = (
    " FROM {wallet} w JOIN {user} u ON u.id = w.owner_id AND u.is_active"
    " WHERE w.id = %(wallet)s AND w.owner_id = %(user)s AND w.kind = %(user_kind)s"
)


@functools.cache
def _balance_sql() -> str:
    tables = _tables()
    last = _LAST_BALANCE.format(op="<=", name="as_of", **tables)
    return f"SELECT w.currency, w.balance, COALESCE({last}, 0)" + _OWN_WALLET.format(
        **tables
    )


def _owner(user_id: UUID, wallet_id: UUID) -> dict:
    return {
        "wallet": wallet_id,
        "user": user_id,
        "user_kind": Wallet.Kind.USER.value,
    }


def balance_as_of_for_user(
    *, user_id: UUID, wallet_id: UUID, as_of: datetime
) -> BalanceAsOf | None:
    """The wallet's balance now and right after its last entry at or before
    `as_of` (aware), in one query; None when it is not a user wallet of that
    active user."""
    row = prepared_fetchone(
        _balance_sql(),
        {"at_as_of": as_of, **_owner(user_id, wallet_id)},
        using=read_alias(),
    )
    if row is None:
        return None
    currency, balance, balance_as_of = row
    return BalanceAsOf(currency, balance, balance_as_of)


@functools.cache
def _head_sql() -> str:
    tables = _tables()
    opening = _LAST_BALANCE.format(op="<", name="since", **tables)
    closing = _LAST_BALANCE.format(op="<", name="until", **tables)
    return (
        "SELECT w.id, w.number, w.name, w.currency, u.email,"
        " btrim(u.first_name || ' ' || u.last_name),"
        f" COALESCE({opening}, 0), COALESCE({closing}, 0)"
        + _OWN_WALLET.format(**tables)
    )


def statement_head_for_user(
    *, user_id: UUID, wallet_id: UUID, since: datetime, until: datetime
) -> StatementHead | None:
    """The wallet, its owner and its balances just before `since` and just
    before `until` (two index probes), in one query; None when it is not a user
    wallet of that active user."""
    row = prepared_fetchone(
        _head_sql(),
        {"at_since": since, "at_until": until, **_owner(user_id, wallet_id)},
        using=read_alias(),
    )
    return None if row is None else StatementHead(*row)


@functools.cache
def _entries_sql(limit: int) -> str:
    # The columns of EntryRow, in its order (the history's; a test holds the
    # two representations together). LIMIT written into the statement (as for the history's pages): a generic
    # plan then knows the chunk is small. A few values per process.
    tables = _tables()
    return (
        "SELECT e.id, e.transaction_id::text, t.kind, e.amount, e.currency,"  # noqa: S608 - model names
        " e.balance_after, CASE WHEN e.amount < 0 THEN t.metadata -> 'to_wallet'"
        " ELSE t.metadata -> 'from_wallet' END, t.description,"
        " t.reverses_id::text, e.created_at"
        " FROM {entry} e JOIN {txn} t ON t.id = e.transaction_id"
        " WHERE e.wallet_id = %(wallet)s"
        " AND (e.created_at, e.id) > (%(after_at)s, %(after_id)s)"
        " AND e.created_at < %(until)s"
        " ORDER BY e.created_at, e.id"
        f" LIMIT {limit:d}"
    ).format(**tables)


def _entries_after(
    *, wallet_id: UUID, after_at: datetime, after_id: int, until: datetime, limit: int
) -> list[EntryRow]:
    rows = prepared_fetchall(
        _entries_sql(limit),
        {
            "wallet": wallet_id,
            "after_at": after_at,
            "after_id": Int8(after_id),
            "until": until,
        },
        using=read_alias(),
    )
    return [EntryRow._make(row) for row in rows]


def statement_entries_iter(
    *,
    wallet_id: UUID,
    since: datetime,
    until: datetime,
    chunk: int = STATEMENT_CHUNK,
) -> Iterator[list[EntryRow]]:
    """The wallet's entries with created_at in [since, until), oldest first, in
    chunks of at most `chunk` rows, each read by its own keyset query (after
    the previous chunk's last (created_at, id)): memory stays one chunk however
    long the period, and no query or transaction stays open between chunks.
    The wallet must already be known to be the caller's (statement_head_for_user)."""
    # Entry ids start at 1: (since, 0) is just before the period's first entry.
    after_at, after_id = since, 0
    while True:
        rows = _entries_after(
            wallet_id=wallet_id,
            after_at=after_at,
            after_id=after_id,
            until=until,
            limit=chunk,
        )
        if rows:
            yield rows
        if len(rows) < chunk:
            return
        after_at, after_id = rows[-1].created_at, rows[-1].id


def statement_for_user(
    *,
    user_id: UUID,
    wallet_id: UUID,
    since: datetime,
    until: datetime,
    max_entries: int,
    format_name: str,
) -> Statement | None:
    """A whole statement for [since, until): its head, every entry and the
    totals in and out. `StatementTooLarge` when the period has more than
    `max_entries` entries (read: at most one more); None when the wallet is not
    a user wallet of that active user."""
    head = statement_head_for_user(
        user_id=user_id, wallet_id=wallet_id, since=since, until=until
    )
    if head is None:
        return None
    entries = _entries_after(
        wallet_id=wallet_id,
        after_at=since,
        after_id=0,
        until=until,
        limit=max_entries + 1,
    )
    if len(entries) > max_entries:
        raise StatementTooLarge(limit=max_entries, format=format_name)
    total_in = sum((e.amount for e in entries if e.amount > 0), Decimal(0))
    total_out = -sum((e.amount for e in entries if e.amount < 0), Decimal(0))
    return Statement(
        head=head,
        since=since,
        until=until,
        entries=entries,
        total_in=total_in,
        total_out=total_out,
    )
