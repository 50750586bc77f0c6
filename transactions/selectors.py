import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Prefetch, QuerySet
from psycopg.types.numeric import Int8

from accounts.models import User
from transactions.models import Entry, Transaction
from wallet_project.db import prepared_fetchall
from wallet_project.db_router import read_alias
from wallet_project.errors import NotFound
from wallets.models import Wallet


class EntryRow(NamedTuple):
    """One leg as its wallet's owner sees it (`counterparty`: the other wallet's
    number from the transaction's metadata, or None)."""

    id: int
    transaction_id: str
    kind: str
    amount: Decimal
    currency: str
    balance_after: Decimal | None
    counterparty: Any
    description: str
    reverses: str | None
    created_at: datetime


def _entry_page_sql(
    *,
    position: str,
    ascending: bool,
    kind: bool,
    since: bool,
    until: bool,
    limit: int,
    offset: int,
) -> str:
    # LIMIT and OFFSET are written into the statement, not bound: with a bound
    # LIMIT the generic plan cannot know the page is small, PostgreSQL never
    # chose it (pg_prepared_statements: 0 generic, 1041 custom plans) and planned
    # every page again: 0.8 ms a page's round trip, 0.56 with the one generic
    # plan. Two ints the paginator has range-checked (1-201, 0-1000): a few
    # statements per connection, each planned once.
    before, after = _entry_page_sql_around_limit(
        position=position, ascending=ascending, kind=kind, since=since, until=until
    )
    return f"{before} LIMIT {limit:d} OFFSET {offset:d}{after}"


@functools.cache
def _entry_page_sql_around_limit(
    *, position: str, ascending: bool, kind: bool, since: bool, until: bool
) -> tuple[str, str]:
    """The keyset page query, as the text before and after its LIMIT/OFFSET: the
    wallet row (it must be a user wallet of the given, active user) joined to at
    most LIMIT of its entries after OFFSET, in id order, from the (wallet_id, id
    DESC) index. No entries: one row of NULLs; not the user's wallet: no row."""
    entry, txn = Entry._meta.db_table, Transaction._meta.db_table
    user_table = User._meta.db_table
    order = "ASC" if ascending else "DESC"
    # Only entry_wallet_history_idx (wallet_id, id DESC) may serve the page,
    # whatever the planner guesses about the wallet's share of all entries: with
    # `wallet_id = w.id` it may walk the primary key backwards filtering on the
    # wallet, which reads the whole ledger for a wallet with few or old entries
    # (190 ms at 2M entries, EXPLAIN ANALYZE). `= ANY (ARRAY[...])` keeps
    # wallet_id a sort key (an equality would make it a constant and drop it), so
    # ORDER BY (wallet_id, id) can only come from that index, and the cursor's id
    # bound stays an index condition: every page reads LIMIT index entries.
    where = ["e.wallet_id = ANY (ARRAY[w.id])"]
    if position:
        where.append(f"e.id {position} %(position)s")
    if kind:
        where.append("t.kind = %(kind)s")
    if since:
        where.append("e.created_at >= %(since)s")
    if until:
        where.append("e.created_at < %(until)s")
    return (
        "SELECT x.id, x.transaction_id, x.kind, x.amount, x.currency,"  # noqa: S608 - model names
        " x.balance_after, x.counterparty, x.description, x.reverses, x.created_at"
        f" FROM {Wallet._meta.db_table} w"
        f" JOIN {user_table} u ON u.id = w.owner_id AND u.is_active"
        " LEFT JOIN LATERAL ("
        "SELECT e.id, e.transaction_id::text AS transaction_id, t.kind, e.amount,"
        " e.currency, e.balance_after, CASE WHEN e.amount < 0"
        " THEN t.metadata -> 'to_wallet' ELSE t.metadata -> 'from_wallet' END"
        " AS counterparty, t.description, t.reverses_id::text AS reverses,"
        " e.created_at"
        f" FROM {entry} e JOIN {txn} t ON t.id = e.transaction_id"
        f" WHERE {' AND '.join(where)}"
        f" ORDER BY e.wallet_id {'DESC' if ascending else 'ASC'}, e.id {order}",
        ") x ON TRUE"
        " WHERE w.id = %(wallet)s AND w.owner_id = %(user)s AND w.kind = %(user_kind)s"
        f" ORDER BY x.id {order}",
    )


def entry_page_for_user_wallet(
    *,
    user_id: UUID,
    wallet_id: UUID,
    before: int | None = None,
    after: int | None = None,
    kind: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int,
    offset: int = 0,
) -> list[EntryRow] | None:
    """A page of a wallet's legs in one query, newest first (or oldest first when
    `after` is given: ids above it, as a cursor going back needs), filtered by
    transaction kind and created_at in [since, until). None when the wallet is not
    a user wallet of `user_id` or that user is no longer active."""
    position = "<" if before is not None else ">" if after is not None else ""
    rows = prepared_fetchall(
        _entry_page_sql(
            position=position,
            ascending=after is not None,
            kind=bool(kind),
            since=since is not None,
            until=until is not None,
            limit=limit,
            offset=offset,
        ),
        {
            "position": Int8(before if before is not None else after or 0),
            "kind": kind,
            "since": since,
            "until": until,
            "wallet": wallet_id,
            "user": user_id,
            "user_kind": Wallet.Kind.USER.value,
        },
        using=read_alias(),
    )
    if not rows:
        return None
    if rows[0][0] is None:
        return []
    return [EntryRow._make(row) for row in rows]


def entry_list_for_user(*, user: User) -> QuerySet[Entry]:
    """All legs on the user's wallets, newest first."""
    wallet_ids = Wallet.objects.filter(owner=user, kind=Wallet.Kind.USER).values("id")
    return (
        Entry.objects.filter(wallet_id__in=wallet_ids)
        .select_related("transaction")
        .order_by("-id")
    )


def transaction_get_for_user(*, user: User, transaction_id: UUID | str) -> Transaction:
    """A transaction with a leg on one of the user's wallets, with only those
    legs; any other is a 404."""
    own = Entry.objects.filter(wallet__owner=user).select_related("wallet")
    try:
        return (
            Transaction.objects.filter(pk=transaction_id, entries__wallet__owner=user)
            .prefetch_related(
                Prefetch("entries", queryset=own, to_attr="own_entries"),
                Prefetch(
                    "reversals",
                    queryset=Transaction.objects.filter(
                        status=Transaction.Status.POSTED
                    ).order_by("posted_at", "id"),
                ),
            )
            .distinct()
            .get()
        )
    except (Transaction.DoesNotExist, ValidationError, ValueError):
        raise NotFound() from None


# --- Reconciliation ---------------------------------------------------------------------


@dataclass
class ReconcileReport:
    wallets_checked: int = 0
    balance_mismatches: list[str] = field(default_factory=list)
    unbalanced_transactions: list[str] = field(default_factory=list)
    negative_balances: list[str] = field(default_factory=list)
    held_mismatches: list[str] = field(default_factory=list)
    event_gaps: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.balance_mismatches
            or self.unbalanced_transactions
            or self.negative_balances
            or self.held_mismatches
            or self.event_gaps
        )

    @property
    def problems(self) -> list[str]:
        return (
            self.balance_mismatches
            + self.negative_balances
            + self.unbalanced_transactions
            + self.held_mismatches
            + self.event_gaps
        )

    @property
    def summary(self) -> str:
        if self.clean:
            return (
                f"Ledger clean: {self.wallets_checked} wallets, "
                "every transaction balanced."
            )
        return (
            f"Ledger NOT clean: {len(self.balance_mismatches)} balance mismatches, "
            f"{len(self.negative_balances)} negative balances, "
            f"{len(self.unbalanced_transactions)} unbalanced transactions, "
            f"{len(self.held_mismatches)} held mismatches, "
            f"{len(self.event_gaps)} wallets with event gaps."
        )


_WALLET_BATCH_SQL = """
SELECT w.id, w.number, w.kind, w.currency, w.balance, COALESCE(SUM(e.amount), 0),
       w.held,
       (SELECT COALESCE(SUM(h.amount), 0) FROM transactions_hold h
         WHERE h.wallet_id = w.id AND h.status = 'active'),
       w.event_sequence,
       (SELECT count(*) || ',' || COALESCE(max(ev.sequence), 0)
          FROM transactions_event ev WHERE ev.wallet_id = w.id)
  FROM wallets_wallet w
  LEFT JOIN transactions_entry e ON e.wallet_id = w.id
 WHERE w.id > %s
 GROUP BY w.id, w.number, w.kind, w.currency, w.balance, w.held, w.event_sequence
 ORDER BY w.id
 LIMIT %s
"""

_UNBALANCED_SQL = """
SELECT transaction_id, currency, SUM(amount)
  FROM transactions_entry
 GROUP BY transaction_id, currency
HAVING SUM(amount) <> 0
"""


def ledger_reconcile(
    *, batch_size: int = 2000, progress: Callable[[int], None] | None = None
) -> ReconcileReport:
    """Check the ledger's invariants: every user wallet's cached balance equals
    the sum of its entries and is not negative, its money held equals the sum
    of its active holds and is within the balance, its events are numbered
    1..event_sequence with no gap (unique per wallet, so count = last =
    event_sequence), system wallets keep no cached balance, and every
    transaction balances per currency."""
    report = ReconcileReport()
    last_id: Any = _db_uuid(UUID(int=0))
    with connection.cursor() as cursor:
        while True:
            cursor.execute(_WALLET_BATCH_SQL, [last_id, batch_size])
            rows = cursor.fetchall()
            if not rows:
                break
            for _wallet_id, number, kind, currency, balance, total, *rest in rows:
                balance, total = Decimal(str(balance)), Decimal(str(total))
                held_cached, held_sum, sequence, events = rest
                if events != f"{sequence},{sequence}":
                    count, last = events.split(",")
                    report.event_gaps.append(
                        f"wallet {number}: event_sequence {sequence}, "
                        f"{count} events, the last numbered {last}"
                    )
                if held_cached != held_sum or held_cached > balance:
                    report.held_mismatches.append(
                        f"wallet {number} ({kind}, {currency}): held {held_cached}, "
                        f"active holds sum to {held_sum}, balance {balance}"
                    )
                expected = total if kind == Wallet.Kind.USER else Decimal(0)
                if balance != expected:
                    report.balance_mismatches.append(
                        f"wallet {number} ({kind}, {currency}): balance {balance}, "
                        f"entries sum to {total}"
                    )
                if kind == Wallet.Kind.USER and balance < 0:
                    report.negative_balances.append(
                        f"wallet {number} ({currency}): balance {balance}"
                    )
            report.wallets_checked += len(rows)
            last_id = rows[-1][0]
            if progress:
                progress(report.wallets_checked)
        cursor.execute(_UNBALANCED_SQL)
        for transaction_id, currency, total in cursor.fetchall():
            report.unbalanced_transactions.append(
                f"transaction {transaction_id}: {currency} legs sum to {total}"
            )
    return report


def _db_uuid(value: UUID) -> Any:
    return Wallet._meta.pk.get_db_prep_value(value, connection)
