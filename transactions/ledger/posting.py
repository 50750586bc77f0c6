"""Posting: a lone balanced transaction (`ledger_post`), many debits at once
(`ledger_debit_many`, the fee run), and the hook for credits to blocked wallets.
Both write through writer.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import User
from transactions.ledger.errors import InvalidAmount, TransactionNotPending
from transactions.ledger.writer import Book, Leg, Posting, Writes, legs_check_balanced
from transactions.models import Transaction
from wallet_project import metrics
from wallet_project.errors import DomainError
from wallets.models import Wallet

# Called after a credit to a blocked wallet, in the same DB transaction, with the
# wallet (its row locked): its new balance if it moved, else None. The fees app
# registers its debt collection here (fees.apps), since fees builds on the ledger.
CreditHook = Callable[[Wallet], Decimal | None]
_credit_to_blocked_hooks: list[CreditHook] = []


def credit_to_blocked_hook_register(hook: CreditHook) -> None:
    if hook not in _credit_to_blocked_hooks:
        _credit_to_blocked_hooks.append(hook)


def ledger_post(
    *,
    kind: str,
    legs: Sequence[Leg],
    initiator: User | None = None,
    description: str = "",
    metadata: dict | None = None,
    pending: Transaction | None = None,
    reverses: Transaction | None = None,
) -> Posting:
    """Post one balanced transaction: every leg or none.

    Raises a domain error (and rolls back) when a wallet is missing, blocked for
    a debit, short of funds or would pass its balance limit (rules.leg_refusal).

    With `pending`, that PENDING transaction (of the same kind) is the one that
    gets posted, claimed by a conditional UPDATE so it is posted at most once;
    `TransactionNotPending` when someone else decided it first.

    Called directly inside a durable block (a service boundary such as
    `idempotency_execute`), it takes no savepoint of its own: an error here then
    aborts that whole block, which is what every such caller does anyway, and
    the two round trips (SAVEPOINT, RELEASE) would be spent holding the wallet's
    row lock. Anywhere else a failed posting rolls back to its own savepoint.
    """
    legs_check_balanced(legs)
    try:
        posting = _post(kind, legs, initiator, description, metadata, pending, reverses)
    except DomainError as refusal:
        metrics.postings_count(str(kind), str(refusal.code))
        raise
    transaction.on_commit(partial(metrics.postings_count, str(kind)))
    return posting


def _post(
    kind: str,
    legs: Sequence[Leg],
    initiator: User | None,
    description: str,
    metadata: dict | None,
    pending: Transaction | None,
    reverses: Transaction | None,
) -> Posting:
    blocks = connection.atomic_blocks
    savepoint = not (blocks and blocks[-1].durable)  # type: ignore[attr-defined]  # Atomic sets .durable; django-stubs omits it
    with transaction.atomic(savepoint=savepoint):
        user_ids = [
            leg.wallet.id for leg in legs if leg.wallet.kind == Wallet.Kind.USER
        ]
        if pending is not None:
            pending = _pending_claim(
                pending, kind, description, metadata, timezone.now()
            )
        locking = time.perf_counter()
        book = Book.lock(ids=user_ids)
        metrics.lock_wait_observe(time.perf_counter() - locking)
        # The time of the entries, taken under the wallets' locks: a wallet's
        # entries are then in time order as in id order (balances in the past
        # and statements read them by time).
        now = timezone.now()
        if pending is None:
            txn = Transaction(
                id=uuid.uuid4(),
                kind=kind,
                status=Transaction.Status.POSTED,
                initiator=initiator,
                description=description,
                metadata=metadata or {},
                created_at=now,
                posted_at=now,
                reverses=reverses,
            )
            txn._state.adding = False
            txn._state.db = connection.alias
        else:
            txn = pending
        balance_after = book.apply(legs)
        writes = Writes(now)
        writes.add(txn, legs, balance_after, insert_transaction=pending is None)
        writes.execute()
        posting = Posting(
            transaction=txn, balances={i: book.balances[i] for i in user_ids}
        )
        for leg in legs:
            wallet_id = leg.wallet.id
            if (
                leg.amount > 0
                and wallet_id in book.by_id
                and book.status(wallet_id) == Wallet.Status.BLOCKED
            ):
                for hook in _credit_to_blocked_hooks:
                    balance = hook(book.by_id[wallet_id])
                    if balance is not None:
                        posting.balances[wallet_id] = balance
        return posting


def _pending_claim(
    pending: Transaction,
    kind: str,
    description: str,
    metadata: dict[str, Any] | None,
    now: datetime,
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


# --- Many debits in one statement (set-based jobs: the monthly fee run) -------------------


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


def ledger_debit_many(
    *, kind: str, debits: Sequence[Debit], allow_blocked: bool = False
) -> list[Debited | None]:
    """Post every debit as its own balanced, posted transaction of `kind`
    (user wallet -amount, counterpart +amount, the user leg with its
    balance_after), all through one lock and one write (writer.py).

    The result is aligned with `debits`: None where the wallet did not move
    (missing, not in the counterpart's currency, refused by the rule: short of
    funds, over its limit, blocked without `allow_blocked`). Nothing is recorded
    for such a debit; the caller decides what to do with it. Each wallet at most
    once per call. Runs inside the caller's DB transaction (or its own).
    """
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
    results: list[Debited | None] = [None] * len(debits)
    with transaction.atomic(savepoint=False):
        book = Book.lock(ids=wallet_ids)
        now = timezone.now()  # under the locks: see ledger_post
        writes = Writes(now)
        for n, debit in enumerate(debits):
            wallet = book.ref(debit.wallet_id)
            if wallet is None or wallet.currency != debit.counterpart.currency:
                continue
            legs = [
                Leg(wallet, -debit.amount, allow_blocked=allow_blocked),
                Leg(debit.counterpart, debit.amount),
            ]
            try:
                balance_after = book.apply(legs)
            except DomainError:
                continue
            txn_id = uuid.uuid4()
            writes.add_posted(
                txn_id,
                kind=kind,
                initiator_id=None,
                description=debit.description,
                metadata=debit.metadata,
                legs=legs,
                balance_after=balance_after,
            )
            results[n] = Debited(txn_id, balance_after[0])  # type: ignore[arg-type]  # leg 0 is the user wallet's: set
        if writes.deltas:
            writes.execute()
            posted = sum(1 for result in results if result is not None)
            transaction.on_commit(
                partial(metrics.postings_count, str(kind), count=posted)
            )
    return results
