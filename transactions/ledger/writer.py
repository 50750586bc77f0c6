"""The one writer of balances, transactions, entries (and idempotency keys).

Every path that moves money comes here: a lone posting (`ledger_post`), a
group-commit batch, the fee run's set-based debits. Each does the same three
steps, in one DB transaction:

1. `Book.lock`: lock every user wallet involved with one
   `SELECT ... ORDER BY id FOR UPDATE` (id order: two writers never wait on each
   other in a cycle) and read its balance and status;
2. `Book.apply`: check each posting's legs with the one rule
   (`rules.leg_refusal`) against the balances the previous postings left, in
   id order and credits first (so a commission can come out of the money that
   arrives with it); a refused posting changes nothing;
3. `Writes.execute`: ONE statement adds each wallet's net change (of its
   balance and of the money held on it, `held`) by a conditional UPDATE that
   carries the same rule (`rules.GUARD_SQL`), inserts
   the transactions, their entries (with `balance_after`), the events of the
   change (the outbox: events.py) and the idempotency keys, and checks that
   every wallet moved, every key was claimed and every event written, or
   divides by zero, which rolls the whole statement back. A batch sends it
   together with its COMMIT (one round trip).

What protects a balance: the row lock held from step 1 to the COMMIT, the
Python rule in step 2, the UPDATE's own condition in step 3, and the database's
CHECKs (balance >= 0, balance >= held) and deferred trigger (each transaction
sums to zero per currency). System wallets are never updated: their balance is the sum of their
entries.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DataError, connection

from transactions.ledger.errors import InvalidAmount
from transactions.ledger.events import EventRows, entry_event_data
from transactions.ledger.rules import GUARD_SQL, leg_refusal
from transactions.models import Event, Transaction
from wallet_project.db import execute_and_commit, prepared_fetchall, prepared_fetchone
from wallet_project.errors import DomainError
from wallets.models import Wallet


@dataclass(frozen=True)
class Leg:
    """One side of a posting: a signed amount on a wallet, in its currency, and
    a signed change of the money held on it (`hold`: > 0 reserves, < 0
    releases; user wallets only). A leg with no amount writes no entry: a hold
    made or released moves no money.

    `allow_blocked` lets a debit (or a new hold) take money from a blocked
    wallet: only the fee, an operator's adjustment and the capture or release
    of a hold made before the wallet was blocked use it.
    """

    wallet: Wallet | WalletRef
    amount: Decimal
    allow_blocked: bool = False
    hold: Decimal = Decimal(0)


@dataclass
class Posting:
    transaction: Transaction
    # Each user wallet's balance once everything in this DB transaction is done.
    balances: dict[UUID, Decimal] = field(default_factory=dict)


def legs_check_balanced(legs: Sequence[Leg]) -> None:
    """Every leg moving something and each currency summing to zero (a
    programming error otherwise; the database's trigger would refuse it at
    commit too)."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for leg in legs:
        if leg.amount == 0 and leg.hold == 0:
            raise InvalidAmount()
        totals[leg.wallet.currency] += leg.amount
    if not legs or any(total != 0 for total in totals.values()):
        raise ValueError(f"unbalanced posting: {dict(totals)}")


_LOCK_SQL = """
SELECT {columns} FROM wallets_wallet
 WHERE kind = 'user'
   AND (id = ANY(string_to_array(%s, ',')::uuid[])
        OR number = ANY(string_to_array(%s, ',')::varchar[]))
 ORDER BY id
   FOR UPDATE
"""
# The ids and numbers travel as one comma-separated string each: an array
# parameter is quoted element by element on the client (numbers are digits).

_WALLET_COLUMNS = [f.column for f in Wallet._meta.concrete_fields]
_WALLET_FIELDS = [f.attname for f in Wallet._meta.concrete_fields]
_ID, _CURRENCY, _STATUS, _BALANCE, _HELD = (
    _WALLET_COLUMNS.index(column)
    for column in ("id", "currency", "status", "balance", "held")
)


@functools.cache
def _lock_sql() -> str:
    return _LOCK_SQL.format(columns=", ".join(_WALLET_COLUMNS))


@dataclass(frozen=True)
class WalletRef:
    """What a leg needs of a locked user wallet, without building the model
    instance (the fee run posts thousands at once)."""

    id: UUID
    currency: str
    kind: str = Wallet.Kind.USER


@dataclass
class Book:
    """The locked user wallets (their rows as read) and their balances and
    statuses as the postings go. The model instances are built when first
    asked for."""

    rows: dict[UUID, tuple]
    balances: dict[UUID, Decimal]
    held: dict[UUID, Decimal]
    statuses: dict[UUID, str]

    @classmethod
    def lock(cls, *, ids: Iterable[UUID] = (), numbers: Iterable[str] = ()) -> Book:
        rows = prepared_fetchall(
            _lock_sql(),
            [",".join(map(str, sorted(set(ids)))), ",".join(sorted(set(numbers)))],
        )
        return cls(
            rows={row[_ID]: row for row in rows},
            balances={row[_ID]: row[_BALANCE] for row in rows},
            held={row[_ID]: row[_HELD] for row in rows},
            statuses={row[_ID]: row[_STATUS] for row in rows},
        )

    @functools.cached_property
    def by_id(self) -> dict[UUID, Wallet]:
        return {
            wallet_id: Wallet.from_db(connection.alias, _WALLET_FIELDS, row)
            for wallet_id, row in self.rows.items()
        }

    @functools.cached_property
    def by_number(self) -> dict[str, Wallet]:
        return {wallet.number: wallet for wallet in self.by_id.values()}

    def ref(self, wallet_id: UUID) -> WalletRef | None:
        row = self.rows.get(wallet_id)
        return None if row is None else WalletRef(wallet_id, row[_CURRENCY])

    def apply(self, legs: Sequence[Leg]) -> list[Decimal | None]:
        """Check `legs` and move the book's balances and holds; each leg's
        balance_after (None on system wallets).

        Each wallet's legs apply in id order, credits first; a refused leg (by
        the one rule) refuses the posting, and the error raised is that of the
        first refused leg in the posting's own order (the source before the
        destination), whatever the wallets' ids. The book is then as it was.
        """
        balances: dict[UUID, Decimal] = {}
        held: dict[UUID, Decimal] = {}
        after: list[Decimal | None] = [None] * len(legs)
        refused: dict[int, DomainError] = {}
        stopped: set[UUID] = set()
        user = [i for i, leg in enumerate(legs) if leg.wallet.kind == Wallet.Kind.USER]
        for i in sorted(user, key=lambda i: (legs[i].wallet.id, -legs[i].amount)):
            leg = legs[i]
            wallet_id = leg.wallet.id
            if wallet_id in stopped:
                continue
            status = self.statuses.get(wallet_id)
            balance = balances.get(wallet_id, self.balances.get(wallet_id))
            held_now = held.get(wallet_id, self.held.get(wallet_id))
            refusal = leg_refusal(
                found=status is not None,
                balance=balance or Decimal(0),
                held=held_now or Decimal(0),
                status=status or "",
                amount=leg.amount,
                hold=leg.hold,
                allow_blocked=leg.allow_blocked,
            )
            if refusal is not None:
                refused[i] = refusal
                stopped.add(wallet_id)
                continue
            assert balance is not None and held_now is not None
            balances[wallet_id] = after[i] = balance + leg.amount
            held[wallet_id] = held_now + leg.hold
        if refused:
            raise refused[min(refused)]
        self.balances.update(balances)
        self.held.update(held)
        return after

    def status(self, wallet_id: UUID) -> str:
        return self.statuses[wallet_id]


_WRITE_SQL = """
WITH d AS (
    SELECT *
      FROM unnest(string_to_array(%(wallet_ids)s, ',')::uuid[],
                  string_to_array(%(deltas)s, ',')::numeric[],
                  string_to_array(%(held_deltas)s, ',')::numeric[],
                  string_to_array(%(allow_blocked)s, ',')::boolean[],
                  string_to_array(%(event_counts)s, ',')::int[])
           AS d (id, delta, held_delta, allow_blocked, events)
),
w AS (
    UPDATE wallets_wallet AS w
       SET balance = w.balance + d.delta, held = w.held + d.held_delta,
           event_sequence = w.event_sequence + d.events, updated_at = %(now)s
      FROM d
     WHERE w.id = d.id AND w.kind = 'user' AND {guard}
 RETURNING w.id, w.owner_id, w.event_sequence - d.events AS event_base
),
t AS (
    INSERT INTO transactions_transaction
           (id, kind, status, initiator_id, description, created_at, posted_at,
            metadata, reverses_id)
    SELECT v.id, v.kind, 'posted', v.initiator_id, v.description, %(now)s, %(now)s,
           v.metadata, v.reverses_id
      FROM jsonb_to_recordset(%(transactions)s::jsonb)
           AS v (id uuid, kind varchar, initiator_id uuid, description varchar,
                 metadata jsonb, reverses_id uuid)
),
e AS (
    INSERT INTO transactions_entry
           (transaction_id, wallet_id, currency, amount, balance_after, created_at)
    SELECT v.transaction_id, v.wallet_id, v.currency, v.amount, v.balance_after,
           %(now)s
      FROM unnest(string_to_array(%(entry_txns)s, ',')::uuid[],
                  string_to_array(%(entry_wallets)s, ',')::uuid[],
                  string_to_array(%(entry_currencies)s, ',')::varchar[],
                  string_to_array(%(entry_amounts)s, ',')::numeric[],
                  string_to_array(%(entry_balances)s, ',', 'NULL')::numeric[])
           WITH ORDINALITY
           AS v (transaction_id, wallet_id, currency, amount, balance_after, n)
     ORDER BY v.n
 RETURNING id, transaction_id, wallet_id, balance_after
),
ev AS (
    INSERT INTO transactions_event (type, wallet_id, user_id, sequence, data, created_at)
    SELECT v.type, v.wallet_id, w.owner_id, w.event_base + v.n,
           CASE WHEN v.txn IS NULL THEN v.data
                ELSE jsonb_build_object('id', e.id) || v.data END,
           %(now)s
      FROM jsonb_to_recordset(%(events)s::jsonb)
           AS v (wallet_id uuid, type varchar, data jsonb, n int, txn uuid,
                 balance_after numeric)
      JOIN w ON w.id = v.wallet_id
      LEFT JOIN e ON e.transaction_id = v.txn AND e.wallet_id = v.wallet_id
                 AND e.balance_after = v.balance_after
     ORDER BY v.wallet_id, v.n
 RETURNING 1
),
k AS (
    INSERT INTO transactions_idempotencykey
           (user_id, key, fingerprint, response_status, response_body, created_at)
    SELECT v.user_id, v.key, v.fingerprint, 201, v.body, %(now)s
      FROM jsonb_to_recordset(%(keys)s::jsonb)
           AS v (user_id uuid, key varchar, fingerprint varchar, body text)
        ON CONFLICT (user_id, key) DO NOTHING
 RETURNING 1
)
SELECT 1 / CASE WHEN (SELECT count(*) FROM w) = %(wallet_count)s
                   AND (SELECT count(*) FROM k) = %(key_count)s
                   AND (SELECT count(*) FROM ev) = %(event_count)s THEN 1 ELSE 0 END
"""
_WRITE_SQL = _WRITE_SQL.replace("{guard}", GUARD_SQL)
# The last line is the statement's guard: a batch sends it together with its
# COMMIT, so whatever it finds must abort the transaction by itself. Every wallet
# updated (its UPDATE's condition held), every idempotency key claimed and every
# event written, or a division by zero (the one division here) rolls the whole
# statement back. The events (the outbox, events.py) are numbered from the
# wallet's `event_sequence` as the UPDATE found it, under its row lock; a
# `transaction.posted` event takes its entry's id from `e` (a user wallet's
# entries in one transaction differ in balance_after).
# Nothing travels as an array parameter, which psycopg quotes element by element
# on the client (it cost the fee run a fifth of its time): transactions and keys
# (free text: descriptions, metadata, response bodies) as one JSON document each,
# the wallets' changes and the entries (ids, codes, numbers) as one
# comma-separated string per column, split by the server.

_ENTRY_COLUMNS = (
    "entry_txns",
    "entry_wallets",
    "entry_currencies",
    "entry_amounts",
    "entry_balances",
)


def _text(value: Any) -> str:
    return "NULL" if value is None else str(value)


class GuardFailed(Exception):
    """The statement's guard rolled it back: a wallet did not move (its rule
    refused what the caller's check accepted) or a key was already taken."""

    def __init__(self, keys: list[tuple[UUID, str]]) -> None:
        super().__init__("ledger write: guard failed")
        self.keys = keys


@dataclass
class Writes:
    """What one statement writes: the user wallets' net changes, the
    transactions, their entries and the idempotency keys."""

    now: Any
    columns: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    transactions: list[dict[str, Any]] = field(default_factory=list)
    key_rows: list[dict[str, Any]] = field(default_factory=list)
    deltas: dict[UUID, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    held_deltas: dict[UUID, Decimal] = field(
        default_factory=lambda: defaultdict(Decimal)
    )
    allow_blocked: dict[UUID, bool] = field(default_factory=dict)
    keys: list[tuple[UUID, str]] = field(default_factory=list)
    events: EventRows = field(default_factory=EventRows)

    def add(
        self,
        txn: Transaction,
        legs: Sequence[Leg],
        balance_after: Sequence[Decimal | None],
        *,
        insert_transaction: bool = True,
    ) -> None:
        """`txn` (POSTED, its id set) with one entry per leg, in leg order.
        Without `insert_transaction` the row exists already (a claimed pending
        transaction) and only its entries are written."""
        self.add_posted(
            txn.id,
            kind=txn.kind,
            initiator_id=txn.initiator_id,
            description=txn.description,
            metadata=txn.metadata,
            reverses_id=txn.reverses_id,
            legs=legs,
            balance_after=balance_after,
            insert_transaction=insert_transaction,
        )

    def add_posted(
        self,
        txn_id: UUID,
        *,
        kind: str,
        initiator_id: UUID | None,
        description: str,
        metadata: dict,
        legs: Sequence[Leg],
        balance_after: Sequence[Decimal | None],
        insert_transaction: bool = True,
        reverses_id: UUID | None = None,
    ) -> None:
        """`add` from the transaction's fields, for a caller that has no model
        instance to build (the fee run posts thousands at once)."""
        rows = self.columns
        if insert_transaction:
            self.transactions.append(
                {
                    "id": str(txn_id),
                    "kind": kind,
                    "initiator_id": initiator_id and str(initiator_id),
                    "description": description,
                    "metadata": metadata,
                    "reverses_id": reverses_id and str(reverses_id),
                }
            )
        for leg, after in zip(legs, balance_after, strict=True):
            if leg.amount:
                wallet = leg.wallet
                rows["entry_txns"].append(txn_id)
                rows["entry_wallets"].append(wallet.id)
                rows["entry_currencies"].append(wallet.currency)
                rows["entry_amounts"].append(leg.amount)
                rows["entry_balances"].append(after)
                if after is not None:
                    self.events.add(
                        wallet.id,
                        Event.Type.TRANSACTION_POSTED,
                        entry_event_data(
                            transaction_id=txn_id,
                            wallet_id=wallet.id,
                            kind=kind,
                            amount=leg.amount,
                            currency=str(wallet.currency),
                            balance_after=after,
                            metadata=metadata,
                            description=description,
                            reverses_id=reverses_id,
                            created_at=self.now,
                        ),
                        entry_of=txn_id,
                        balance_after=after,
                    )
        self.add_balances(legs)

    def add_balances(self, legs: Sequence[Leg]) -> None:
        """The user wallets' changes of balance and of money held, with no
        transaction: alone, a hold made or released."""
        for leg in legs:
            wallet = leg.wallet
            if wallet.kind == Wallet.Kind.USER:
                self.deltas[wallet.id] += leg.amount
                self.held_deltas[wallet.id] += leg.hold
                allowed = (leg.amount >= 0 and leg.hold <= 0) or leg.allow_blocked
                self.allow_blocked[wallet.id] = (
                    self.allow_blocked.get(wallet.id, True) and allowed
                )

    def add_event(self, wallet_id: UUID, type: str, data: dict[str, Any]) -> None:
        """An event on a user wallet (locked by this DB transaction's Book),
        written by the same statement; the wallet is updated (its sequence)
        even when nothing else of it changes."""
        self.events.add(wallet_id, type, data)
        self.deltas[wallet_id] += 0
        self.held_deltas[wallet_id] += 0
        self.allow_blocked.setdefault(wallet_id, True)

    def add_key(self, user_id: UUID, key: str, fingerprint: str, body: bytes) -> None:
        """Claim an idempotency key with its answer in the same statement."""
        self.key_rows.append(
            {
                "user_id": str(user_id),
                "key": key,
                "fingerprint": fingerprint,
                "body": body.decode(),
            }
        )
        self.keys.append((user_id, key))

    def execute(self, *, commit: bool = False) -> None:
        """The statement (prepared); with `commit`, together with the COMMIT
        of the outermost atomic block, in one round trip. GuardFailed if its
        guard rolled it back."""
        params: dict[str, Any] = {
            name: ",".join(map(_text, self.columns[name])) for name in _ENTRY_COLUMNS
        }
        params.update(
            transactions=json.dumps(self.transactions, cls=DjangoJSONEncoder),
            keys=json.dumps(self.key_rows),
            now=self.now,
            wallet_ids=",".join(map(str, self.deltas)),
            deltas=",".join(map(str, self.deltas.values())),
            held_deltas=",".join(str(self.held_deltas[w]) for w in self.deltas),
            allow_blocked=",".join(
                "t" if self.allow_blocked[w] else "f" for w in self.deltas
            ),
            max_balance=settings.MAX_WALLET_BALANCE,
            event_counts=",".join(str(self.events.counts[w]) for w in self.deltas),
            events=self.events.json(),
            wallet_count=len(self.deltas),
            key_count=len(self.keys),
            event_count=len(self.events.rows),
        )
        try:
            if commit:
                execute_and_commit(_WRITE_SQL, params)
            else:
                prepared_fetchone(_WRITE_SQL, params)
        except DataError as exc:
            if isinstance(exc.__cause__, psycopg.errors.DivisionByZero):
                raise GuardFailed(self.keys) from exc
            raise
