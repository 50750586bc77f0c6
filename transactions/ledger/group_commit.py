"""Group commit: cash in/out and same-currency transfers posted together.

Under load, DEPOSIT/WITHDRAW and transfer requests that arrive while another batch
is being posted queue up in the process, and the next one to lead posts them all
in one DB transaction (transactions.batching): the same writer as a lone posting
(writer.py: every user wallet involved locked once, each request checked in
arrival order by the one rule against the balances the previous ones left, one
statement for everything accepted) sent together with its COMMIT. Each request
still gets its own transaction, entries, balance_after and answer. Anything
unusual -- a blocked wallet (fee debt collection, wallet_blocked), a conversion
between currencies, a keyed request that fails or whose key is taken -- is handed
back and goes the one-by-one way (`idempotency_execute` around the same builders).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from transactions.batching import Coalescer, Pending
from transactions.ledger.cash import cash_legs, wallet_deposit, wallet_withdraw
from transactions.ledger.errors import SameWallet
from transactions.ledger.idempotency import (
    IdempotencyRequest,
    IdempotentResponse,
    _stored,
    idempotency_execute,
)
from transactions.ledger.rules import amount_validate
from transactions.ledger.transfers import transfer_create, transfer_legs
from transactions.ledger.writer import Book, GuardFailed, Leg, Posting, Writes
from transactions.models import IdempotencyKey, Transaction
from wallet_project import metrics
from wallet_project.errors import DomainError
from wallet_project.rendering import json_bytes
from wallets.errors import WalletNotFound
from wallets.models import Wallet
from wallets.selectors import (
    conversion_quote,
    wallet_get_for_user,
    wallet_get_own,
    wallet_reference,
)

_ONE_BY_ONE = object()  # a batch's answer: take the one-by-one path


@dataclass(frozen=True)
class _Plan:
    kind: str
    legs: list[Leg]  # in entry order; system wallets too
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

    @property
    def kind_name(self) -> str:
        kind = Transaction.Kind.DEPOSIT if self.deposit else Transaction.Kind.WITHDRAWAL
        return kind.value

    def wallet_refs(self) -> tuple[list[UUID], list[str]]:
        return [self.wallet_id], []

    def plan(self, book: Book) -> _Plan | object:
        wallet = book.by_id.get(self.wallet_id)
        if wallet is None or wallet.owner_id != self.owner.pk:
            raise WalletNotFound()
        if wallet.status != Wallet.Status.ACTIVE:
            return _ONE_BY_ONE  # fee debt collection or wallet_blocked
        kind, legs = cash_legs(wallet, self.amount, deposit=self.deposit)
        return _Plan(kind, legs, "", {}, lambda posting: self.render(wallet, posting))


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

    kind_name = Transaction.Kind.TRANSFER.value

    def wallet_refs(self) -> tuple[list[UUID], list[str]]:
        numbers = [self.destination_number]
        if self.source_number is not None:
            numbers.append(self.source_number)
        return [self.source_id] if self.source_id else [], numbers

    def plan(self, book: Book) -> _Plan | object:
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
    `idempotency_execute`; outside any transaction, concurrent requests in this
    process are posted together (see above), and the wallet is read only by the
    batch's locking SELECT. `render(wallet, posting)` makes the response body
    (the posting's transaction and the wallet's new balance).
    """
    deposit = operation_type == "DEPOSIT"
    outcome = _coalesced(_Operation(wallet_id, owner, amount, deposit, request, render))
    if outcome is not _ONE_BY_ONE:
        return outcome
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
    # Inside a caller's transaction the posting must be part of it.
    if not settings.LEDGER_COALESCE or connection.in_atomic_block:
        return _ONE_BY_ONE
    if item.request is not None and (done := _stored(item.request)) is not None:
        return done
    if connection.connection is not None and connection.pool is not None:  # type: ignore[attr-defined]  # PostgreSQL's DatabaseWrapper.pool (Django 5.1); not in django-stubs
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


def _postings_post_once(todo: list[Pending[Any]]) -> set[Pending[Any]]:
    """Post what can be posted in one DB transaction. Resolves or fails each
    pending request once committed; returns the ones to send one by one
    (nothing is resolved then if their keys were taken: the batch is retried
    without them)."""
    one_by_one: set[Pending[Any]] = set()
    outcomes: list[tuple[Pending[Any], Any, BaseException | None]] = []
    kinds: list[str] = []
    lock_wait = 0.0
    keyed: dict[tuple[UUID, str], Pending[Any]] = {}
    try:
        with transaction.atomic(durable=True):
            ids: set[UUID] = set()
            numbers: set[str] = set()
            for pending in todo:
                item_ids, item_numbers = pending.item.wallet_refs()
                ids.update(item_ids)
                numbers.update(item_numbers)
            locking = time.perf_counter()
            book = Book.lock(ids=ids, numbers=numbers)
            lock_wait = time.perf_counter() - locking
            # The time of the entries, taken under the wallets' locks: a
            # wallet's entries are then in time order as in id order.
            now = timezone.now()
            writes = Writes(now)
            for pending in todo:
                try:
                    plan = pending.item.plan(book)
                    if plan is _ONE_BY_ONE:
                        one_by_one.add(pending)
                        continue
                    assert isinstance(plan, _Plan)
                    balance_after = book.apply(plan.legs)
                except DomainError as error:
                    if pending.item.request is None:
                        outcomes.append((pending, None, error))
                    else:  # a twin may have moved the money: one by one finds out
                        one_by_one.add(pending)
                    continue
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
                writes.add(txn, plan.legs, balance_after)
                balances = {
                    leg.wallet.id: book.balances[leg.wallet.id]
                    for leg in plan.legs
                    if leg.wallet.kind == Wallet.Kind.USER
                }
                content = json_bytes(plan.render(Posting(txn, balances)))
                request = pending.item.request
                if request is not None:
                    writes.add_key(
                        request.user_id, request.key, request.fingerprint, content
                    )
                    keyed[request.user_id, request.key] = pending
                outcomes.append((pending, IdempotentResponse(201, content), None))
                kinds.append(plan.kind)
            if writes.deltas:
                writes.execute(commit=True)
    except GuardFailed as failed:
        taken = _keys_taken(keyed)
        if not taken:
            raise RuntimeError(
                "coalesced postings: a wallet was not updated"
            ) from failed
        # Another request committed one of these keys first: send those one by
        # one (they answer with the stored response) and post the rest again.
        raise _KeysTaken(taken) from None
    for pending, result, failure in outcomes:
        if failure is None:
            pending.resolve(result)
        else:
            pending.fail(failure)
    _batch_count(kinds, outcomes, lock_wait)
    return one_by_one


def _batch_count(
    kinds: list[str],
    outcomes: list[tuple[Pending[Any], Any, BaseException | None]],
    lock_wait: float,
) -> None:
    """The committed batch in the metrics: its size (what it posted), how long
    its lock took, each posting by kind and each refusal by its code."""
    if not metrics.enabled():
        return
    if kinds:
        metrics.batch_observe(len(kinds), lock_wait)
    for kind, count in Counter(kinds).items():
        metrics.postings_count(str(kind), "posted", count)
    for pending, _result, error in outcomes:
        if isinstance(error, DomainError):
            metrics.postings_count(pending.item.kind_name, str(error.code))


def _keys_taken(keyed: dict[tuple[UUID, str], Pending[Any]]) -> set[Pending[Any]]:
    """The pending requests whose idempotency key is stored by now."""
    if not keyed:
        return set()
    query = Q()
    for user_id, key in keyed:
        query |= Q(user_id=user_id, key=key)
    stored = IdempotencyKey.objects.filter(query).values_list("user_id", "key")
    return {keyed[pair] for pair in stored}


class _KeysTaken(Exception):
    def __init__(self, pending: set) -> None:
        super().__init__(f"{len(pending)} idempotency keys already taken")
        self.pending = pending


_batches: Coalescer[Any] = Coalescer(_postings_post, max_batch=128)
