"""The ledger: the ONLY code that moves money.

Every balance change is one conditional UPDATE on the wallet row, in the same DB
transaction as the entries that explain it:

    UPDATE wallet SET balance = balance + :amount
     WHERE id = :id AND balance + :amount BETWEEN 0 AND :max
       AND (status = 'active' OR :amount > 0)

There is no read-modify-write. When several user wallets move together they are
updated in id order, so two transactions never wait on each other in a cycle.
System wallets (external, fees, fx, provider) are never updated: their balance
is the sum of their entries.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DataError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from djmoney.money import Money

from accounts.models import User
from transactions.batching import Coalescer, Pending
from transactions.models import Entry, IdempotencyKey, TopUp, Transaction
from transactions.money import minor_digits, money_str, quantum
from wallet_project.db import execute_and_commit, prepared_fetchall
from wallet_project.errors import (
    BalanceLimitExceeded,
    Conflict,
    DomainError,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    InvalidCommission,
    SameWallet,
    TopupAlreadyDecided,
    TopupExpired,
    TopupNotFound,
    UnsupportedCurrency,
    WalletBlocked,
    WalletNotFound,
)
from wallet_project.rendering import json_bytes
from wallets.models import Wallet
from wallets.selectors import (
    CONVERSION_ROUNDING,
    Conversion,
    conversion_quote,
    system_wallet,
    wallet_get_by_number,
)

T = TypeVar("T")


def amount_validate(amount: Decimal, currency: str) -> Decimal:
    """A positive, finite amount with no more digits than the currency allows.

    Never rounds: `1.001` KZT is an error, not 1.00.
    """
    if currency not in settings.WALLET_CURRENCIES:
        raise UnsupportedCurrency()
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise InvalidAmount()
    if amount <= 0:
        raise InvalidAmount(_("The amount must be greater than zero."))
    if amount > settings.MAX_OPERATION_AMOUNT:
        raise InvalidAmount(
            _("The amount must not exceed %(max)s."), max=settings.MAX_OPERATION_AMOUNT
        )
    if amount.as_tuple().exponent < -minor_digits(currency):  # type: ignore[operator]
        raise InvalidAmount(
            _("%(currency)s amounts have at most %(digits)s decimal places."),
            currency=currency,
            digits=minor_digits(currency),
        )
    return amount.quantize(quantum(currency))


@dataclass(frozen=True)
class Leg:
    """One side of a posting: a signed amount on a wallet, in its currency.

    `allow_blocked` lets a debit take money from a blocked wallet: only the fee
    service uses it, to charge and collect debt.
    """

    wallet: Wallet
    amount: Decimal
    allow_blocked: bool = False


@dataclass
class Posting:
    transaction: Transaction
    entries: list[Entry]
    # Each user wallet's balance once everything in this DB transaction is done.
    balances: dict[UUID, Decimal] = field(default_factory=dict)


def _db_uuid(value: UUID) -> Any:
    return Wallet._meta.pk.get_db_prep_value(value, connection)  # type: ignore[union-attr]


_APPLY_SQL = """
UPDATE wallets_wallet
   SET balance = balance + %s, updated_at = %s
 WHERE id = %s AND kind = 'user'
   AND balance + %s >= 0 AND balance + %s <= %s
   {status_clause}
RETURNING balance, status
"""


_WHY_SQL = "SELECT balance, status FROM wallets_wallet WHERE id = %s AND kind = 'user'"
_WHY_SQL_LOCKING = _WHY_SQL + " FOR UPDATE"


def _apply_sql(leg: Leg, now) -> tuple[str, list[Any]]:
    amount = leg.amount
    status_clause = "" if amount > 0 or leg.allow_blocked else "AND status = 'active'"
    wallet_id = _db_uuid(leg.wallet.id)
    update = _APPLY_SQL.format(status_clause=status_clause)
    return update, [amount, now, wallet_id, amount, amount, settings.MAX_WALLET_BALANCE]


def _apply(leg: Leg, now) -> tuple[Decimal, str]:
    """Move one user wallet's balance, or raise why it cannot move."""
    update, params = _apply_sql(leg, now)
    wallet_id = params[2]
    with connection.cursor() as cursor:
        cursor.execute(update, params)
        row = cursor.fetchone()
        if row is None:
            # Find out why under the row lock: a plain re-read could see a state
            # committed after our UPDATE looked, and blame the wrong rule.
            # (SQLite's IMMEDIATE transactions already hold the write lock.)
            locking = connection.features.has_select_for_update
            cursor.execute(_WHY_SQL_LOCKING if locking else _WHY_SQL, [wallet_id])
            _raise_why_refused(leg, cursor.fetchone())
            # The locked state allows the move after all: it will succeed now.
            cursor.execute(update, params)
            row = cursor.fetchone()
    return Decimal(str(row[0])).quantize(quantum(leg.wallet.currency)), row[1]


def _raise_why_refused(leg: Leg, current: tuple | None) -> None:
    if current is None:
        raise WalletNotFound()
    balance, status = Decimal(str(current[0])), current[1]
    amount = leg.amount
    if amount < 0 and status != Wallet.Status.ACTIVE and not leg.allow_blocked:
        raise WalletBlocked()
    if balance + amount < 0:
        raise InsufficientFunds()
    if balance + amount > settings.MAX_WALLET_BALANCE:
        raise BalanceLimitExceeded()


def ledger_post(
    *,
    kind: str,
    legs: Sequence[Leg],
    initiator: User | None = None,
    description: str = "",
    metadata: dict | None = None,
    pending: Transaction | None = None,
) -> Posting:
    """Post one balanced transaction: every leg or none.

    Raises a domain error (and rolls back) when a wallet is missing, blocked for
    a debit, short of funds or would pass its balance limit.

    With `pending`, that PENDING transaction (of the same kind) is the one that
    gets posted, claimed by a conditional UPDATE so it is posted at most once;
    `TransactionNotPending` when someone else decided it first.

    Called directly inside a durable block (a service boundary such as
    `idempotency_execute`), it takes no savepoint of its own: an error here then
    aborts that whole block, which is what every such caller does anyway, and
    the two round trips (SAVEPOINT, RELEASE) would be spent holding the wallet's
    row lock. Anywhere else a failed posting rolls back to its own savepoint.
    """
    blocks = connection.atomic_blocks
    savepoint = not (blocks and blocks[-1].durable)
    with transaction.atomic(savepoint=savepoint):
        return _ledger_post(
            kind=kind,
            legs=legs,
            initiator=initiator,
            description=description,
            metadata=metadata,
            pending=pending,
        )


def _ledger_post(
    *,
    kind: str,
    legs: Sequence[Leg],
    initiator: User | None,
    description: str,
    metadata: dict | None,
    pending: Transaction | None,
) -> Posting:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for leg in legs:
        if leg.amount == 0:
            raise InvalidAmount()
        totals[leg.wallet.currency] += leg.amount
    if not legs or any(total != 0 for total in totals.values()):
        raise ValueError(f"unbalanced posting: {dict(totals)}")

    now = timezone.now()
    if pending is None:
        txn = Transaction(
            kind=kind,
            status=Transaction.Status.POSTED,
            initiator=initiator,
            description=description,
            metadata=metadata or {},
            created_at=now,
            posted_at=now,
        )
    else:
        txn = _pending_post(pending, kind, description, metadata, now)
    posting = Posting(transaction=txn, entries=[])
    # Id order avoids deadlocks; credits before debits on the same wallet so a
    # commission can come out of the money that just arrived.
    order = sorted(range(len(legs)), key=lambda i: (legs[i].wallet.id, -legs[i].amount))
    user_legs = [i for i in order if legs[i].wallet.kind == Wallet.Kind.USER]
    # On PostgreSQL the last balance change, the transaction row and all the
    # entries are one statement (_apply_and_record): the last row lock taken is
    # held for that statement and the COMMIT only.
    last = user_legs[-1] if user_legs and connection.vendor == "postgresql" else None
    if pending is None and last is None:
        txn.save(force_insert=True)
    balance_after: dict[int, Decimal | None] = dict.fromkeys(range(len(legs)))
    credited_blocked: list[Wallet] = []

    def applied(i: int, new_balance: Decimal, status: str) -> None:
        balance_after[i] = new_balance
        posting.balances[legs[i].wallet.id] = new_balance
        if legs[i].amount > 0 and status == Wallet.Status.BLOCKED:
            credited_blocked.append(legs[i].wallet)

    for i in user_legs:
        if i != last:
            applied(i, *_apply(legs[i], now))
    entries = [
        Entry(
            transaction=txn,
            wallet=leg.wallet,
            amount=Money(leg.amount, leg.wallet.currency),
            balance_after=balance_after[i],
            created_at=now,
        )
        for i, leg in enumerate(legs)
    ]
    if last is None:
        posting.entries = Entry.objects.bulk_create(entries)
    else:
        new_balance, status = _apply_and_record(
            legs[last], now, txn, entries, last, insert_transaction=pending is None
        )
        applied(last, new_balance, status)
        entries[last].balance_after = new_balance
        posting.entries = entries
    for wallet in credited_blocked:
        _on_credit_to_blocked(wallet, posting)
    return posting


_RECORD_SQL = """
WITH w AS ({update}),
{insert_transaction}
e AS (
    INSERT INTO transactions_entry
           (transaction_id, wallet_id, currency, amount, balance_after, created_at)
    SELECT %s, v.wallet_id, v.currency, v.amount,
           CASE WHEN v.last THEN w.balance ELSE v.balance_after END, %s
      FROM w, unnest(%s::uuid[], %s::varchar[], %s::numeric[], %s::numeric[],
                     %s::boolean[]) WITH ORDINALITY
           AS v (wallet_id, currency, amount, balance_after, last, n)
     ORDER BY v.n
    RETURNING id
)
SELECT w.balance, w.status, ARRAY(SELECT id FROM e ORDER BY id) FROM w
"""


def _apply_and_record(
    leg: Leg,
    now,
    txn: Transaction,
    entries: list[Entry],
    last: int,
    *,
    insert_transaction: bool,
) -> tuple[Decimal, str]:
    """PostgreSQL: `leg`'s conditional UPDATE, the transaction row (unless it
    exists: a pending one) and every entry, in one statement. When the UPDATE
    matches no row nothing is inserted; then find out why, like `_apply`."""
    update, update_params = _apply_sql(leg, now)
    params: list[Any] = list(update_params)
    txn_sql = ""
    if insert_transaction:
        fields = list(Transaction._meta.concrete_fields)
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        values = ", ".join(["%s"] * len(fields))
        # Column names from the model, values as parameters.
        txn_sql = (
            f"t AS (INSERT INTO transactions_transaction ({columns}) "  # noqa: S608
            f"SELECT {values} FROM w),"
        )
        params += [
            f.get_db_prep_save(getattr(txn, f.attname), connection) for f in fields
        ]
    params += [
        _db_uuid(txn.pk),
        now,
        [str(entry.wallet_id) for entry in entries],
        [str(entry.amount.currency) for entry in entries],
        [entry.amount.amount for entry in entries],
        [entry.balance_after for entry in entries],
        [i == last for i in range(len(entries))],
    ]
    sql = _RECORD_SQL.format(update=update, insert_transaction=txn_sql)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
        if row is None:
            cursor.execute(_WHY_SQL_LOCKING, [_db_uuid(leg.wallet.id)])
            _raise_why_refused(leg, cursor.fetchone())
            # The locked state allows the move after all: it will succeed now.
            cursor.execute(sql, params)
            row = cursor.fetchone()
    balance, status, ids = row
    for entry, pk in zip(entries, ids, strict=True):
        entry.pk = pk
        entry._state.adding = False
        entry._state.db = connection.alias
    if insert_transaction:
        txn._state.adding = False
        txn._state.db = connection.alias
    return Decimal(str(balance)).quantize(quantum(leg.wallet.currency)), status


def _on_credit_to_blocked(wallet: Wallet, posting: Posting) -> None:
    """A credit to a blocked wallet collects its fee debt (the fees app's rule)."""
    from fees.services import fee_debt_collect  # fees builds on the ledger

    balance = fee_debt_collect(wallet=wallet)
    if balance is not None:
        posting.balances[wallet.id] = balance


# --- Cash in / cash out (the classic wallet operation) ------------------------------------


def wallet_deposit(
    *, wallet: Wallet, amount: Decimal, initiator: User | None = None
) -> Posting:
    amount = amount_validate(amount, wallet.currency)
    external = system_wallet(wallet.currency, Wallet.SystemCode.EXTERNAL)
    return ledger_post(
        kind=Transaction.Kind.DEPOSIT,
        legs=[Leg(wallet, amount), Leg(external, -amount)],
        initiator=initiator,
    )


def wallet_withdraw(
    *, wallet: Wallet, amount: Decimal, initiator: User | None = None
) -> Posting:
    amount = amount_validate(amount, wallet.currency)
    external = system_wallet(wallet.currency, Wallet.SystemCode.EXTERNAL)
    return ledger_post(
        kind=Transaction.Kind.WITHDRAWAL,
        legs=[Leg(wallet, -amount), Leg(external, amount)],
        initiator=initiator,
    )


# --- Idempotency ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IdempotencyRequest:
    """Who sent which key with which request (method, path and body hashed)."""

    user_id: UUID
    key: str
    fingerprint: str

    @staticmethod
    def fingerprint_of(method: str, path: str, body: Any) -> str:
        canonical = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


@dataclass(frozen=True)
class IdempotentResponse:
    """A money-moving request's answer: its status and the exact JSON bytes sent,
    which a replay sends again byte for byte."""

    status: int
    content: bytes
    replayed: bool = False

    @property
    def body(self) -> Any:
        return json.loads(self.content)


class _AlreadyDone(Exception):
    """Another request with the same key committed first: roll ours back."""


def _stored(request: IdempotencyRequest) -> IdempotentResponse | None:
    record = (
        IdempotencyKey.objects.filter(user_id=request.user_id, key=request.key)
        .only("fingerprint", "response_status", "response_body")
        .first()
    )
    if record is None:
        return None
    if record.fingerprint != request.fingerprint:
        raise IdempotencyConflict()
    return IdempotentResponse(
        record.response_status, record.response_body.encode(), replayed=True
    )


def idempotency_execute(
    *,
    request: IdempotencyRequest | None,
    action: Callable[[], T],
    render: Callable[[T], Any],
    status: int = 201,
) -> IdempotentResponse:
    """Run a money-moving `action` once per Idempotency-Key.

    The key and the rendered response are stored in the same DB transaction as
    the movement. A replay returns the stored response; the same key with another
    request is a 422. Two identical requests in flight at once: the second one's
    INSERT waits on the first's unique-index entry; when the first commits, the
    second rolls its own work back and returns the first's response, also when
    its own attempt failed because the first one had already moved the money. A
    request that fails leaves no key behind, so it may be retried.
    """
    if request is None:
        with transaction.atomic(durable=True):
            return IdempotentResponse(status, json_bytes(render(action())))
    if (done := _stored(request)) is not None:
        return done
    try:
        with transaction.atomic(durable=True):
            content = json_bytes(render(action()))
            if not _claim(request, status, content):
                raise _AlreadyDone
            return IdempotentResponse(status, content)
    except Exception:
        # A twin request with this key may have committed while ours ran: then
        # its answer is ours, whatever our attempt ran into (its withdrawal can
        # leave ours "insufficient funds", its key makes our claim fail).
        done = _stored(request)
        if done is None:
            raise
        return done


_CLAIM_SQL = """
INSERT INTO transactions_idempotencykey
       (user_id, key, fingerprint, response_status, response_body, created_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (user_id, key) DO NOTHING
RETURNING id
"""


def _claim(request: IdempotencyRequest, status: int, content: bytes) -> bool:
    """Store the key with its response; False when another request holds it."""
    user_id = _db_uuid(request.user_id)
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL,
            [
                user_id,
                request.key,
                request.fingerprint,
                status,
                content.decode(),
                timezone.now(),
            ],
        )
        return cursor.fetchone() is not None


# --- Coalesced postings (group commit): cash in/out and same-currency transfers ----------
#
# Under load, DEPOSIT/WITHDRAW and transfer requests that arrive while another batch is
# being posted queue up in the process, and the next one to lead posts them all in one
# DB transaction (transactions.batching): every user wallet involved is locked once
# (one SELECT ... ORDER BY id FOR UPDATE, so batches never wait on each other in a
# cycle), each request is checked in arrival order against the balances the previous
# ones left, by the same rules as `ledger_post`, and everything accepted is one
# statement (balances, one transaction and its entries per request, the idempotency
# keys) and one COMMIT. Each request still gets its own transaction, entries,
# balance_after and answer. Anything unusual -- a blocked wallet (fee debt collection,
# wallet_blocked), a conversion between currencies, a keyed request that fails or whose
# key is taken -- is handed back and goes the one-by-one way (`idempotency_execute`).

_ONE_BY_ONE = object()  # a batch's answer: take the one-by-one path


@dataclass
class _Book:
    """The batch's locked user wallets and their balances as the batch goes."""

    by_id: dict[UUID, Wallet]
    by_number: dict[str, Wallet]
    balances: dict[UUID, Decimal]


@dataclass(frozen=True)
class _Plan:
    kind: str
    legs: list[tuple[Wallet, Decimal]]  # in entry order; system wallets too
    description: str
    metadata: dict
    render: Callable[[Posting], Any]


@dataclass(frozen=True)
class _Operation:
    """DEPOSIT (cash in) or WITHDRAW (cash out) on the owner's wallet."""

    wallet_id: UUID
    owner: User
    amount: Decimal  # positive
    deposit: bool
    request: IdempotencyRequest | None
    render: Callable[[Wallet, Posting], Any]

    def wallet_refs(self) -> tuple[list[UUID], list[str]]:
        return [self.wallet_id], []

    def plan(self, book: _Book) -> _Plan | object:
        wallet = book.by_id.get(self.wallet_id)
        if wallet is None or wallet.owner_id != self.owner.pk:
            raise WalletNotFound()
        if wallet.status != Wallet.Status.ACTIVE:
            return _ONE_BY_ONE  # fee debt collection or wallet_blocked
        amount = amount_validate(self.amount, wallet.currency)
        signed = amount if self.deposit else -amount
        external = system_wallet(wallet.currency, Wallet.SystemCode.EXTERNAL)
        return _Plan(
            Transaction.Kind.DEPOSIT if self.deposit else Transaction.Kind.WITHDRAWAL,
            [(wallet, signed), (external, -signed)],
            "",
            {},
            lambda posting: self.render(wallet, posting),
        )


@dataclass(frozen=True)
class _Transfer:
    """`transfer_create` between two wallets of one currency."""

    source_id: UUID | None  # the source by id, or
    source_number: str | None  # by its number
    destination_number: str
    owner: User
    amount: Decimal
    description: str
    request: IdempotencyRequest | None
    render: Callable[[Posting], Any]

    def wallet_refs(self) -> tuple[list[UUID], list[str]]:
        numbers = [self.destination_number]
        if self.source_number is not None:
            numbers.append(self.source_number)
        return [self.source_id] if self.source_id else [], numbers

    def plan(self, book: _Book) -> _Plan | object:
        if self.source_id is not None:
            source = book.by_id.get(self.source_id)
        else:
            source = book.by_number.get(self.source_number or "")
        if source is None or source.owner_id != self.owner.pk:
            raise WalletNotFound()
        amount = amount_validate(self.amount, source.currency)
        destination = book.by_number.get(self.destination_number)
        if destination is None:
            raise WalletNotFound()
        if destination.id == source.id:
            raise SameWallet()
        if destination.currency != source.currency:
            return _ONE_BY_ONE  # a conversion, at the current rate
        if destination.status != Wallet.Status.ACTIVE:
            return _ONE_BY_ONE  # a blocked destination's fee debt is collected
        conversion = conversion_quote(
            source_currency=source.currency,
            target_currency=destination.currency,
            amount=amount,
        )
        kind, legs, metadata = transfer_legs(source, destination, conversion)
        return _Plan(kind, legs, self.description, metadata, self.render)


_POSTINGS_LOCK_SQL = """
SELECT {columns} FROM wallets_wallet
 WHERE kind = 'user' AND (id = ANY(%s::uuid[]) OR number = ANY(%s::varchar[]))
 ORDER BY id
   FOR UPDATE
"""

_POSTINGS_SQL = """
WITH w AS (
    UPDATE wallets_wallet AS w
       SET balance = w.balance + d.delta, updated_at = %(now)s
      FROM unnest(%(wallet_ids)s::uuid[], %(deltas)s::numeric[]) AS d (id, delta)
     WHERE w.id = d.id AND w.kind = 'user'
 RETURNING w.id
),
t AS (
    INSERT INTO transactions_transaction
           (id, kind, status, initiator_id, description, created_at, posted_at,
            metadata)
    SELECT v.id, v.kind, 'posted', v.initiator_id, v.description, %(now)s, %(now)s,
           v.metadata
      FROM unnest(%(txn_ids)s::uuid[], %(kinds)s::varchar[], %(initiators)s::uuid[],
                  %(descriptions)s::varchar[], %(metadata)s::jsonb[])
           AS v (id, kind, initiator_id, description, metadata)
),
e AS (
    INSERT INTO transactions_entry
           (transaction_id, wallet_id, currency, amount, balance_after, created_at)
    SELECT v.transaction_id, v.wallet_id, v.currency, v.amount, v.balance_after,
           %(now)s
      FROM unnest(%(entry_txns)s::uuid[], %(entry_wallets)s::uuid[],
                  %(entry_currencies)s::varchar[], %(entry_amounts)s::numeric[],
                  %(entry_balances)s::numeric[]) WITH ORDINALITY
           AS v (transaction_id, wallet_id, currency, amount, balance_after, n)
     ORDER BY v.n
),
k AS (
    INSERT INTO transactions_idempotencykey
           (user_id, key, fingerprint, response_status, response_body, created_at)
    SELECT v.user_id, v.key, v.fingerprint, 201, v.body, %(now)s
      FROM unnest(%(key_users)s::uuid[], %(keys)s::varchar[],
                  %(fingerprints)s::varchar[], %(bodies)s::text[])
           AS v (user_id, key, fingerprint, body)
        ON CONFLICT (user_id, key) DO NOTHING
 RETURNING 1
)
SELECT 1 / CASE WHEN (SELECT count(*) FROM w) = %(wallet_count)s
                   AND (SELECT count(*) FROM k) = %(key_count)s THEN 1 ELSE 0 END
"""
# The last line is the statement's guard: it is sent together with the COMMIT, so
# whatever it finds must abort the transaction by itself. Every wallet updated and
# every idempotency key claimed, or a division by zero (the one division here)
# rolls the whole batch back.

_POSTINGS_COLUMNS = (
    "txn_ids",
    "kinds",
    "initiators",
    "descriptions",
    "metadata",
    "entry_txns",
    "entry_wallets",
    "entry_currencies",
    "entry_amounts",
    "entry_balances",
    "key_users",
    "keys",
    "fingerprints",
    "bodies",
)


def wallet_operation(
    *,
    wallet_id: UUID,
    owner: User,
    operation_type: str,
    amount: Decimal,
    request: IdempotencyRequest | None,
    render: Callable[[Wallet, Posting], Any],
) -> IdempotentResponse:
    """DEPOSIT or WITHDRAW `amount` on `owner`'s wallet `wallet_id`, once per
    Idempotency-Key; `owner` is also the initiator. Someone else's or an unknown
    wallet is WalletNotFound.

    The same rules and answers as `wallet_deposit`/`wallet_withdraw` under
    `idempotency_execute`; on PostgreSQL, outside any transaction, concurrent
    requests in this process are posted together (see above), and the wallet is
    read only by the batch's locking SELECT. `render(wallet, posting)` makes the
    response body (the posting's transaction and the wallet's new balance).
    """
    deposit = operation_type == "DEPOSIT"
    outcome = _coalesced(_Operation(wallet_id, owner, amount, deposit, request, render))
    if outcome is not _ONE_BY_ONE:
        return outcome
    from wallets.selectors import wallet_get_for_user  # wallets builds on the ledger

    wallet = wallet_get_for_user(user=owner, wallet_id=wallet_id)
    move = wallet_deposit if deposit else wallet_withdraw
    return idempotency_execute(
        request=request,
        action=lambda: move(wallet=wallet, amount=amount, initiator=owner),
        render=lambda posting: render(wallet, posting),
    )


def transfer_execute(
    *,
    owner: User,
    source_reference: str,
    destination_number: str,
    amount: Decimal,
    description: str,
    request: IdempotencyRequest | None,
    render: Callable[[Posting], Any],
) -> IdempotentResponse:
    """`transfer_create` from `owner`'s wallet (its id or 16-digit number), once
    per Idempotency-Key; same-currency transfers are posted together with other
    requests in flight (see above)."""
    from wallets.selectors import (  # wallets builds on the ledger
        wallet_get_own,
        wallet_reference,
    )

    source_id, source_number = wallet_reference(source_reference)
    outcome = _coalesced(
        _Transfer(
            source_id,
            source_number,
            destination_number,
            owner,
            amount,
            description,
            request,
            render,
        )
    )
    if outcome is not _ONE_BY_ONE:
        return outcome
    source = wallet_get_own(user=owner, reference=source_reference)
    return idempotency_execute(
        request=request,
        action=lambda: transfer_create(
            source=source,
            destination_number=destination_number,
            amount=amount,
            initiator=owner,
            description=description,
        ),
        render=render,
    )


def _coalesced(item: _Operation | _Transfer) -> Any:
    """Post `item` with whatever else is in flight: its response, its domain
    error (raised), or _ONE_BY_ONE (also when coalescing does not apply)."""
    if not (
        settings.LEDGER_COALESCE
        and connection.vendor == "postgresql"
        # Inside a caller's transaction the posting must be part of it.
        and not connection.in_atomic_block
    ):
        return _ONE_BY_ONE
    if item.request is not None and (done := _stored(item.request)) is not None:
        return done
    if connection.connection is not None and connection.pool is not None:
        # Hand a pooled connection back while waiting: only the one caller that
        # leads the batch needs one.
        connection.close()
    return _batches.submit(item)


def _postings_post(batch: Sequence[Pending[Any]]) -> None:
    """The batch handler: resolve every pending request with its response, its
    domain error, or _ONE_BY_ONE."""
    todo = list(batch)
    seen: set[tuple[UUID, str]] = set()
    for pending in todo:
        request = pending.item.request
        if request is not None:
            if (request.user_id, request.key) in seen:
                # Its twin is in this batch: one by one it waits for the twin's
                # key and answers with the twin's response.
                pending.resolve(_ONE_BY_ONE)
            seen.add((request.user_id, request.key))
    todo = [p for p in todo if p.result is None]
    while todo:
        # Any other error (the database gone, a failed COMMIT whose outcome is
        # unknown) reaches every caller in the batch, as it would a lone request:
        # never retried here, since the batch may have committed.
        try:
            taken = _postings_post_once(todo)
        except _KeysTaken as exc:
            taken = exc.pending
        for pending in taken:
            pending.resolve(_ONE_BY_ONE)
        todo = [p for p in todo if p.result is None and p.error is None]


@dataclass
class _Rows:
    """What a batch posts: the statement's columns, the balance deltas of its user
    wallets and its idempotency keys."""

    columns: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    deltas: dict[UUID, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    keyed: dict[tuple[UUID, str], Pending[Any]] = field(default_factory=dict)

    def add(
        self, pending: Pending[Any], plan: _Plan, balances: dict[UUID, Decimal], now
    ) -> bytes:
        """Add an accepted request's transaction, entries and key; its answer's
        JSON bytes."""
        txn = Transaction(
            id=uuid.uuid4(),
            kind=plan.kind,
            status=Transaction.Status.POSTED,
            initiator=pending.item.owner,
            description=plan.description,
            metadata=plan.metadata,
            created_at=now,
            posted_at=now,
        )
        txn._state.adding = False
        txn._state.db = connection.alias
        content = json_bytes(
            plan.render(Posting(transaction=txn, entries=[], balances=balances))
        )
        rows = self.columns
        rows["txn_ids"].append(txn.id)
        rows["kinds"].append(plan.kind)
        rows["initiators"].append(pending.item.owner.pk)
        rows["descriptions"].append(plan.description)
        rows["metadata"].append(json.dumps(plan.metadata, cls=DjangoJSONEncoder))
        for wallet, amount in plan.legs:
            rows["entry_txns"].append(txn.id)
            rows["entry_wallets"].append(wallet.id)
            rows["entry_currencies"].append(wallet.currency)
            rows["entry_amounts"].append(amount)
            rows["entry_balances"].append(balances.get(wallet.id))
            if wallet.kind == Wallet.Kind.USER:
                self.deltas[wallet.id] += amount
        request = pending.item.request
        if request is not None:
            rows["key_users"].append(request.user_id)
            rows["keys"].append(request.key)
            rows["fingerprints"].append(request.fingerprint)
            rows["bodies"].append(content.decode())
            self.keyed[request.user_id, request.key] = pending
        return content

    def post_and_commit(self, now) -> None:
        """The statement and the COMMIT in one round trip (the locks are held for
        one round trip less); _GuardFailed if its guard rolled it back."""
        params: dict[str, Any] = {
            name: self.columns[name] for name in _POSTINGS_COLUMNS
        }
        params.update(
            now=now,
            wallet_ids=list(self.deltas),
            deltas=list(self.deltas.values()),
            wallet_count=len(self.deltas),
            key_count=len(self.keyed),
        )
        try:
            execute_and_commit(_POSTINGS_SQL, params)
        except DataError as exc:
            if isinstance(exc.__cause__, psycopg.errors.DivisionByZero):
                raise _GuardFailed(self.keyed) from exc
            raise


def _locked_book(pending: list[Pending[Any]]) -> _Book:
    """Lock every user wallet the requests involve (one SELECT ... FOR UPDATE in
    id order) and read them."""
    ids: set[UUID] = set()
    numbers: set[str] = set()
    for item in pending:
        item_ids, item_numbers = item.item.wallet_refs()
        ids.update(item_ids)
        numbers.update(item_numbers)
    rows = prepared_fetchall(_postings_lock_sql(), [sorted(ids), sorted(numbers)])
    wallets = [Wallet.from_db(connection.alias, None, row) for row in rows]
    return _Book(
        by_id={w.id: w for w in wallets},
        by_number={w.number: w for w in wallets},
        balances={w.id: w.balance.amount for w in wallets},
    )


def _postings_post_once(todo: list[Pending[Any]]) -> set[Pending[Any]]:
    """Post what can be posted in one DB transaction. Resolves or fails each
    pending request once committed; returns the ones to send one by one
    (nothing is resolved then if their keys were taken: the batch is retried
    without them)."""
    now = timezone.now()
    max_balance = settings.MAX_WALLET_BALANCE
    one_by_one: set[Pending[Any]] = set()
    outcomes: list[tuple[Pending[Any], Any, BaseException | None]] = []
    try:
        with transaction.atomic(durable=True):
            book = _locked_book(todo)
            rows = _Rows()
            for pending in todo:
                try:
                    plan = pending.item.plan(book)
                    if plan is not _ONE_BY_ONE:
                        balances = _check_legs(plan, book, max_balance)
                except DomainError as error:
                    if pending.item.request is None:
                        outcomes.append((pending, None, error))
                    else:  # a twin may have moved the money: one by one finds out
                        one_by_one.add(pending)
                    continue
                if plan is _ONE_BY_ONE:
                    one_by_one.add(pending)
                    continue
                book.balances.update(balances)
                content = rows.add(pending, plan, balances, now)
                outcomes.append((pending, IdempotentResponse(201, content), None))
            if rows.deltas:
                rows.post_and_commit(now)
    except _GuardFailed as failed:
        taken = _keys_taken(failed.keyed)
        if not taken:
            raise RuntimeError(
                "coalesced postings: a wallet was not updated"
            ) from failed
        # Another request committed one of these keys first: send those one by
        # one (they answer with the stored response) and post the rest again.
        raise _KeysTaken(taken) from None
    for pending, result, error in outcomes:
        if error is None:
            pending.resolve(result)
        else:
            pending.fail(error)
    return one_by_one


def _check_legs(plan: _Plan, book: _Book, max_balance: Decimal) -> dict[UUID, Decimal]:
    """`ledger_post`'s rules on the plan's user legs, in its order (wallet id,
    credits first): each user wallet's balance after the plan, or the first
    leg's domain error."""
    balances: dict[UUID, Decimal] = {}
    user_legs = [leg for leg in plan.legs if leg[0].kind == Wallet.Kind.USER]
    for wallet, amount in sorted(user_legs, key=lambda leg: (leg[0].id, -leg[1])):
        balance = balances.get(wallet.id, book.balances[wallet.id]) + amount
        if amount < 0 and wallet.status != Wallet.Status.ACTIVE:
            raise WalletBlocked()
        if balance < 0:
            raise InsufficientFunds()
        if balance > max_balance:
            raise BalanceLimitExceeded()
        balances[wallet.id] = balance
    return balances


def _keys_taken(keyed: dict[tuple[UUID, str], Pending[Any]]) -> set[Pending[Any]]:
    """The pending requests whose idempotency key is stored by now."""
    query = Q()
    for user_id, key in keyed:
        query |= Q(user_id=user_id, key=key)
    stored = IdempotencyKey.objects.filter(query).values_list("user_id", "key")
    return {keyed[pair] for pair in stored}


@functools.cache
def _postings_lock_sql() -> str:
    columns = ", ".join(f.column for f in Wallet._meta.concrete_fields)
    return _POSTINGS_LOCK_SQL.format(columns=columns)


class _GuardFailed(Exception):
    """The batch statement's guard rolled the batch back (see _POSTINGS_SQL)."""

    def __init__(self, keyed: dict[tuple[UUID, str], Pending[Any]]) -> None:
        super().__init__("coalesced postings: guard failed")
        self.keyed = keyed


class _KeysTaken(Exception):
    def __init__(self, pending: set) -> None:
        super().__init__(f"{len(pending)} idempotency keys already taken")
        self.pending = pending


_batches: Coalescer[Any] = Coalescer(_postings_post, max_batch=128)


# --- Adjustments (operators' two-person corrections, posted from the admin) ---------------
#
# An operator requests an adjustment: a PENDING `adjustment` transaction with no
# entries, whose metadata says what it will do. A different operator approves it,
# and only then does it post (the same row becomes POSTED with its entries and the
# balance change, in one DB transaction) -- or rejects it. The other side of every
# adjustment is the currency's `external` system wallet.


class TransactionNotPending(Conflict):
    code = "transaction_not_pending"
    message = _("This transaction was already decided.")


class AdjustmentSameOperator(Conflict):
    code = "adjustment_same_operator"
    message = _("An adjustment must be confirmed by a different operator.")


def _pending_post(
    pending: Transaction, kind: str, description: str, metadata: dict | None, now
) -> Transaction:
    """Claim a PENDING transaction for posting (ledger_post's `pending=`).

    The conditional UPDATE is the claim: of two concurrent posters, the second
    waits on the row lock, then finds it no longer pending and rolls back.
    """
    if pending.kind != kind:
        raise ValueError(f"pending {pending.kind} transaction posted as {kind}")
    claimed = Transaction.objects.filter(
        pk=pending.pk, status=Transaction.Status.PENDING
    ).update(
        status=Transaction.Status.POSTED,
        posted_at=now,
        description=description or pending.description,
        metadata=pending.metadata if metadata is None else metadata,
    )
    if not claimed:
        raise TransactionNotPending()
    pending.refresh_from_db()
    return pending


def adjustment_request(
    *, wallet: Wallet, amount: Decimal, reason: str, requested_by: User
) -> Transaction:
    """Ask for a signed `amount` (credit > 0, debit < 0) on a user wallet.

    Nothing moves until another operator approves. A debit larger than the
    current balance is refused now (and checked again when it posts).
    """
    reason = reason.strip()
    if not reason:
        raise InvalidAmount(_("A reason is required."))
    if wallet.kind != Wallet.Kind.USER:
        raise WalletNotFound()
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount == 0:
        raise InvalidAmount()
    amount = amount_validate(abs(amount), wallet.currency).copy_sign(amount)
    wallet.refresh_from_db(fields=["balance", "currency"])
    if amount < 0 and wallet.balance.amount + amount < 0:
        raise InsufficientFunds()
    return Transaction.objects.create(
        kind=Transaction.Kind.ADJUSTMENT,
        status=Transaction.Status.PENDING,
        initiator=requested_by,
        description=reason[:255],
        metadata={
            "wallet_id": str(wallet.pk),
            "wallet_number": wallet.number,
            "amount": str(amount),
            "currency": wallet.currency,
            "reason": reason,
            "requested_by": str(requested_by.pk),
            "requested_by_email": requested_by.email,
        },
    )


@transaction.atomic(durable=True)
def adjustment_approve(*, transaction: Transaction, approved_by: User) -> Posting:
    """Post a pending adjustment: wallet += amount, external -= amount.

    The approver must not be the requester. A debit may come out of a blocked
    wallet (an operator's correction is not the user sending money) but never
    below zero.
    """
    if transaction.kind != Transaction.Kind.ADJUSTMENT:
        raise TransactionNotPending()
    metadata = transaction.metadata
    if metadata.get("requested_by") == str(approved_by.pk):
        raise AdjustmentSameOperator()
    wallet = Wallet.objects.get(pk=metadata["wallet_id"], kind=Wallet.Kind.USER)
    amount = Decimal(metadata["amount"])
    external = system_wallet(wallet.currency, Wallet.SystemCode.EXTERNAL)
    return ledger_post(
        kind=Transaction.Kind.ADJUSTMENT,
        legs=[Leg(wallet, amount, allow_blocked=True), Leg(external, -amount)],
        initiator=transaction.initiator,
        description=transaction.description,
        metadata={
            **metadata,
            "approved_by": str(approved_by.pk),
            "approved_by_email": approved_by.email,
        },
        pending=transaction,
    )


def adjustment_reject(
    *, transaction: Transaction, rejected_by: User, note: str = ""
) -> Transaction:
    """Decline a pending adjustment (the requester may withdraw their own)."""
    if transaction.kind != Transaction.Kind.ADJUSTMENT:
        raise TransactionNotPending()
    metadata = {
        **transaction.metadata,
        "rejected_by": str(rejected_by.pk),
        "rejected_by_email": rejected_by.email,
        "rejection_note": note.strip(),
    }
    rejected = Transaction.objects.filter(
        pk=transaction.pk, status=Transaction.Status.PENDING
    ).update(status=Transaction.Status.REJECTED, metadata=metadata)
    if not rejected:
        raise TransactionNotPending()
    transaction.refresh_from_db()
    return transaction


# --- Top-ups (payment provider) -------------------------------------------------------------
#
# A top-up waits `pending` until the provider decides. `paid` posts ONE `topup`
# transaction: provider -> wallet for the amount and, when there is a commission,
# wallet -> fees for it, so the wallet receives the net amount atomically (and a
# blocked wallet's fee debt is collected from that net amount by ledger_post's hook).
# Decisions lock the top-up row (select_for_update): of two racing decisions exactly
# one wins, the other sees the outcome.

TOPUP_DECISIONS = (TopUp.Status.PAID, TopUp.Status.REJECTED)


def topup_create(
    *, wallet: Wallet, amount: Decimal, initiator: User | None = None
) -> TopUp:
    """A pending top-up of `wallet`; no money moves until the provider pays it.
    A blocked wallet may be topped up: that is how it gets replenished."""
    amount = amount_validate(amount, wallet.currency)
    return TopUp.objects.create(
        wallet=wallet,
        amount=Money(amount, wallet.currency),
        created_by=initiator,
        created_at=timezone.now(),
    )


def topup_commission(
    *, amount: Decimal, currency: str, commission: Decimal | None = None
) -> Decimal:
    """The provider's commission on `amount`: the one it stated, or else
    TOPUP_COMMISSION_PERCENT of the amount, rounded half even to the minor unit.

    A stated commission must lie in [0, amount] and have no more digits than the
    currency allows (never rounded).
    """
    if commission is None:
        percent = settings.TOPUP_COMMISSION_PERCENT
        return (amount * percent / 100).quantize(
            quantum(currency), rounding=ROUND_HALF_EVEN
        )
    if not isinstance(commission, Decimal) or not commission.is_finite():
        raise InvalidCommission()
    if commission < 0 or commission > amount:
        raise InvalidCommission()
    if commission.as_tuple().exponent < -minor_digits(currency):  # type: ignore[operator]
        raise InvalidCommission(
            _("%(currency)s amounts have at most %(digits)s decimal places."),
            currency=currency,
            digits=minor_digits(currency),
        )
    return commission.quantize(quantum(currency))


def topup_is_stale(topup: TopUp, now=None) -> bool:
    """Pending for longer than TOPUP_TTL: it may no longer be paid."""
    return topup.created_at < (now or timezone.now()) - settings.TOPUP_TTL


def topup_decide(
    *,
    topup_id: UUID | str,
    status: str,
    decided_by: User | None,
    commission: Decimal | None = None,
    provider_reference: str = "",
) -> TopUp:
    """Record the provider's (or an operator's) decision on a top-up.

    - `paid`: credits the wallet from the `provider` system wallet and moves the
      commission (see `topup_commission`) to the `fees` system wallet, in one
      `topup` transaction recorded on the top-up.
    - `rejected`: nothing moves.
    - The same decision again returns the top-up unchanged (nothing moves, the
      commission and reference of the first decision stand); the other decision
      raises TopupAlreadyDecided (409); any decision on an expired top-up, or on a
      pending one past TOPUP_TTL (which is then expired), raises TopupExpired (409).

    Durable: call it outside any transaction (a view, an admin action, a task).
    """
    if status not in TOPUP_DECISIONS:
        raise ValueError(f"not a top-up decision: {status!r}")
    now = timezone.now()
    with transaction.atomic(durable=True):
        topup = _topup_lock(topup_id)
        if topup.status == status:
            return topup
        if topup.status == TopUp.Status.EXPIRED:
            raise TopupExpired()
        if topup.status != TopUp.Status.PENDING:
            raise TopupAlreadyDecided(status=topup.get_status_display())
        if not topup_is_stale(topup, now):
            if status == TopUp.Status.PAID:
                _topup_pay(topup, commission, provider_reference, decided_by)
            topup.status = status
            topup.provider_reference = provider_reference or topup.provider_reference
            topup.decided_by = decided_by
            topup.decided_at = now
            topup.save(
                update_fields=[
                    "status",
                    "commission",
                    "transaction",
                    "provider_reference",
                    "decided_by",
                    "decided_at",
                ]
            )
            return topup
        # Past its TTL but not yet swept: expire it now (committed), then refuse.
        topup.status = TopUp.Status.EXPIRED
        topup.decided_at = now
        topup.save(update_fields=["status", "decided_at"])
    raise TopupExpired()


def _topup_lock(topup_id: UUID | str) -> TopUp:
    try:
        # of=("self",): lock the top-up row only; the wallet moves by its own UPDATE.
        return (
            TopUp.objects.select_for_update(of=("self",))
            .select_related("wallet")
            .get(pk=topup_id)
        )
    except (TopUp.DoesNotExist, ValidationError, ValueError):  # or a malformed id
        raise TopupNotFound() from None


def _topup_pay(
    topup: TopUp,
    commission: Decimal | None,
    provider_reference: str,
    decided_by: User | None,
) -> None:
    wallet = topup.wallet
    currency = wallet.currency
    amount = topup.amount.amount
    fee = topup_commission(amount=amount, currency=currency, commission=commission)
    provider = system_wallet(currency, Wallet.SystemCode.PROVIDER)
    legs = [Leg(wallet, amount), Leg(provider, -amount)]
    if fee:
        # Taken from the money arriving in this same transaction (ledger_post
        # applies credits before debits), so a blocked wallet pays it too.
        fees = system_wallet(currency, Wallet.SystemCode.FEES)
        legs += [Leg(wallet, -fee, allow_blocked=True), Leg(fees, fee)]
    posting = ledger_post(
        kind=Transaction.Kind.TOPUP,
        legs=legs,
        initiator=decided_by,
        description="Top-up",
        metadata={
            "topup_id": str(topup.id),
            "provider_reference": provider_reference,
            "amount": money_str(amount, currency),
            "commission": money_str(fee, currency),
            "credited_amount": money_str(amount - fee, currency),
        },
    )
    topup.commission = fee
    topup.transaction = posting.transaction


def topup_expire_stale(*, now=None, batch_size: int = 1000) -> int:
    """Expire every pending top-up older than TOPUP_TTL; returns how many.

    Batches of rows claimed with SKIP LOCKED, each in its own transaction: a
    top-up that a decision holds right now is left to that decision (which
    expires it itself if it is stale).
    """
    now = now or timezone.now()
    cutoff = now - settings.TOPUP_TTL
    expired = 0
    while True:
        with transaction.atomic():
            ids = list(
                TopUp.objects.select_for_update(skip_locked=True)
                .filter(status=TopUp.Status.PENDING, created_at__lt=cutoff)
                .order_by("created_at")
                .values_list("id", flat=True)[:batch_size]
            )
            if not ids:
                return expired
            expired += TopUp.objects.filter(
                id__in=ids, status=TopUp.Status.PENDING
            ).update(status=TopUp.Status.EXPIRED, decided_at=now)


# --- Transfers and exchange (issue 4) --------------------------------------------------------


def transfer_create(
    *,
    source: Wallet,
    destination_number: str,
    amount: Decimal,
    initiator: User | None = None,
    description: str = "",
) -> Posting:
    """Send `amount` (in the source's currency) to any user wallet by number.

    Across currencies the amount is converted at the current rate (never a stale
    or guessed one: RateUnavailable) less FX_SPREAD_BPS, rounded toward zero
    (`conversion_quote`); see `transfer_legs` for the legs. Between two wallets
    of one owner that is an `exchange`, otherwise a `transfer`. A blocked source
    cannot send (WalletBlocked); a blocked destination receives, which is how it
    is replenished. Both user wallets change in this one DB transaction, in id
    order (ledger_post).
    """
    amount = amount_validate(amount, source.currency)
    destination = wallet_get_by_number(number=destination_number)
    if destination.id == source.id:
        raise SameWallet()
    conversion = conversion_quote(
        source_currency=source.currency,
        target_currency=destination.currency,
        amount=amount,
    )
    kind, legs, metadata = transfer_legs(source, destination, conversion)
    return ledger_post(
        kind=kind,
        legs=[Leg(wallet, leg_amount) for wallet, leg_amount in legs],
        initiator=initiator,
        description=description,
        metadata=metadata,
    )


def transfer_legs(
    source: Wallet, destination: Wallet, conversion: Conversion
) -> tuple[str, list[tuple[Wallet, Decimal]], dict[str, Any]]:
    """The kind, legs (in entry order) and metadata of a transfer or exchange:
    the one builder both the lone path and the group commit use.

    Within one currency: source -> destination. Across currencies each currency
    balances on its own through its `fx` system wallet, and the spread is a leg
    of its own to the target currency's `fees` system wallet:
    source -amount, fx(source) +amount, fx(target) -gross,
    fees(target) +spread, destination +amount_out.
    """
    amount, credited = conversion.amount, conversion.amount_out
    if credited <= 0:
        raise InvalidAmount(
            _("The amount is too small to convert to %(currency)s."),
            currency=destination.currency,
        )
    converted = source.currency != destination.currency
    target = destination.currency
    legs: list[tuple[Wallet, Decimal]]
    if converted:
        legs = [
            (source, -amount),
            (system_wallet(source.currency, Wallet.SystemCode.FX), amount),
            (system_wallet(target, Wallet.SystemCode.FX), -conversion.gross),
        ]
        if conversion.spread:
            legs.append(
                (system_wallet(target, Wallet.SystemCode.FEES), conversion.spread)
            )
        legs.append((destination, credited))
    else:
        legs = [(source, -amount), (destination, amount)]
    kind = (
        Transaction.Kind.EXCHANGE
        if converted and source.owner_id == destination.owner_id
        else Transaction.Kind.TRANSFER
    )
    metadata = {
        "from_wallet": source.number,
        "to_wallet": destination.number,
        "amount": money_str(amount, source.currency),
        "currency": source.currency,
        "credited_amount": money_str(credited, target),
        "credited_currency": target,
        "rate": str(conversion.rate),
        "spread_bps": conversion.spread_bps,
        "spread": money_str(conversion.spread, target),
    }
    if converted:
        metadata["rate_as_of"] = conversion.as_of.isoformat()
        metadata["rounding"] = CONVERSION_ROUNDING
    return kind, legs, metadata


# --- Many debits in one statement (set-based jobs: the monthly fee run) -------------------
#
# A job that takes money out of many user wallets into a system wallet posts them
# with `ledger_debit_many`: one balanced two-leg transaction per wallet, all of them
# written by ONE statement. Each wallet moves by the same conditional UPDATE as in
# ledger_post (never below zero, never past MAX_WALLET_BALANCE, a blocked wallet
# only with allow_blocked), and the transaction row and both entries of a debit are
# inserted from that UPDATE's RETURNING rows: a wallet the UPDATE did not move gets
# nothing recorded, and every balance change has its entries in the same statement.


@dataclass(frozen=True)
class Debit:
    """`amount` (> 0) out of the user wallet `wallet_id` into `counterpart`, a
    system wallet in that wallet's currency: one transaction of its own."""

    wallet_id: UUID
    amount: Decimal
    counterpart: Wallet
    description: str = ""
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Debited:
    transaction_id: UUID
    balance: Decimal  # the user wallet's balance right after the debit


_DEBITS_LOCK_SQL = """
SELECT id FROM wallets_wallet
 WHERE id = ANY(string_to_array(%s, ',')::uuid[]) AND kind = 'user'
 ORDER BY id
   FOR UPDATE
"""

_DEBITS_SQL = """
WITH v AS (
    SELECT *
      FROM jsonb_to_recordset(%(debits)s::jsonb)
           AS v (n int, wallet_id uuid, currency varchar, amount numeric,
                 counterpart_id uuid, description varchar, metadata jsonb)
),
w AS (
    UPDATE wallets_wallet AS w
       SET balance = w.balance - v.amount, updated_at = %(now)s
      FROM v
     WHERE w.id = v.wallet_id AND w.kind = 'user' AND w.currency = v.currency
       AND w.balance - v.amount >= 0 AND w.balance - v.amount <= %(max_balance)s
       {status_clause}
 RETURNING v.n, v.wallet_id, v.currency, v.amount, v.counterpart_id, v.description,
           v.metadata, w.balance, gen_random_uuid() AS transaction_id
),
t AS (
    INSERT INTO transactions_transaction
           (id, kind, status, initiator_id, description, created_at, posted_at,
            metadata)
    SELECT w.transaction_id, %(kind)s, %(status)s, NULL, w.description, %(now)s,
           %(now)s, w.metadata
      FROM w
),
e AS (
    INSERT INTO transactions_entry
           (transaction_id, wallet_id, currency, amount, balance_after, created_at)
    SELECT w.transaction_id, leg.wallet_id, w.currency, leg.amount, leg.balance_after,
           %(now)s
      FROM w, LATERAL (VALUES (1, w.wallet_id, -w.amount, w.balance),
                              (2, w.counterpart_id, w.amount, NULL))
           AS leg (i, wallet_id, amount, balance_after)
     ORDER BY w.n, leg.i
)
SELECT n, transaction_id, balance FROM w
"""


def ledger_debit_many(
    *, kind: str, debits: Sequence[Debit], allow_blocked: bool = False
) -> list[Debited | None]:
    """Post every debit as its own balanced, posted transaction of `kind`
    (user wallet -amount, counterpart +amount, the user leg with its
    balance_after), all in one statement. PostgreSQL only.

    The result is aligned with `debits`: None where the wallet did not move
    (missing, not in the counterpart's currency, short of funds, over its limit,
    blocked without `allow_blocked`). Nothing is recorded for such a debit; the
    caller decides what to do with it (ledger_post says why it cannot move).
    Each wallet at most once per call. The wallets are locked in id order
    first, so this never waits in a cycle with ledger_post. Runs inside the
    caller's DB transaction (or its own when there is none).
    """
    if connection.vendor != "postgresql":
        raise NotImplementedError("ledger_debit_many needs PostgreSQL")
    if not debits:
        return []
    wallet_ids = [debit.wallet_id for debit in debits]
    if len(set(wallet_ids)) != len(wallet_ids):
        raise ValueError("ledger_debit_many: a wallet appears more than once")
    for debit in debits:
        if not (debit.amount.is_finite() and debit.amount > 0):
            raise InvalidAmount()
        if debit.counterpart.kind != Wallet.Kind.SYSTEM:
            raise ValueError("ledger_debit_many: the counterpart is a system wallet")
    now = timezone.now()
    status_clause = "" if allow_blocked else "AND w.status = 'active'"
    # The batch as one JSON document (and the ids as one string): array
    # parameters are quoted element by element on the client, which cost more
    # than the statement itself.
    rows = [
        {
            "n": n,
            "wallet_id": str(debit.wallet_id),
            "currency": debit.counterpart.currency,
            "amount": str(debit.amount),
            "counterpart_id": str(debit.counterpart.id),
            "description": debit.description,
            "metadata": debit.metadata,
        }
        for n, debit in enumerate(debits, start=1)
    ]
    params = {
        "debits": json.dumps(rows, cls=DjangoJSONEncoder),
        "now": now,
        "max_balance": settings.MAX_WALLET_BALANCE,
        "kind": kind,
        "status": Transaction.Status.POSTED,
    }
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        ids = ",".join(str(wallet_id) for wallet_id in sorted(wallet_ids))
        cursor.execute(_DEBITS_LOCK_SQL, [ids])
        cursor.execute(_DEBITS_SQL.format(status_clause=status_clause), params)
        moved = cursor.fetchall()
    results: list[Debited | None] = [None] * len(debits)
    for n, transaction_id, balance in moved:
        currency = debits[n - 1].counterpart.currency
        results[n - 1] = Debited(
            transaction_id, Decimal(str(balance)).quantize(quantum(currency))
        )
    return results
