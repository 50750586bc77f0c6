"""Payouts through the payment provider, two-phase on a hold (holds.py).

`payout_create` holds the amount at once (refused like a debit: blocked wallet,
available balance too small). The provider then decides: `paid` captures the
hold into ONE `payout` transaction (wallet -> the `provider` system wallet),
`failed` releases it; the owner may cancel while it is pending; past
PAYOUT_TTL it expires (released). Every decision locks the payout row first,
then the hold's, then the wallet's (the writer): of two racing decisions one
wins and the other sees its outcome. A wallet blocked for its fee keeps its
pending payouts (their money was reserved before) and cannot start new ones.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from djmoney.money import Money

from accounts.models import User
from transactions.ledger.errors import (
    PayoutAlreadyDecided,
    PayoutExpired,
    PayoutNotFound,
)
from transactions.ledger.events import NewEvent, event_record_many, payout_event_data
from transactions.ledger.holds import (
    hold_capture_locked,
    hold_new,
    hold_release,
    own_savepoint,
)
from transactions.ledger.rules import amount_validate
from transactions.models import Hold, Payout, Transaction
from wallets.models import Wallet
from wallets.money import money_str
from wallets.selectors import system_wallet

PAYOUT_DECISIONS = (Payout.Status.PAID, Payout.Status.FAILED)


def payout_create(
    *,
    wallet: Wallet,
    amount: Decimal,
    destination: str,
    description: str = "",
    initiator: User | None = None,
) -> Payout:
    """A pending payout of `amount` from the user wallet to `destination` (a
    card token, an IBAN: the provider's business), its amount held at once."""
    amount = amount_validate(amount, wallet.currency)
    now = timezone.now()
    with transaction.atomic(savepoint=own_savepoint()):
        hold = hold_new(
            wallet=wallet,
            amount=amount,
            expires_at=now + settings.PAYOUT_TTL,
            description="Payout",
            created_by=initiator,
        )
        payout = Payout.objects.create(
            wallet=wallet,
            hold=hold,
            amount=Money(amount, wallet.currency),
            destination=destination,
            description=description,
            created_by=initiator,
            created_at=hold.created_at,
            expires_at=hold.expires_at,
        )
        _event(payout, now)
        return payout


def payout_is_stale(payout: Payout, now: datetime | None = None) -> bool:
    """Pending at or past its expiry: it may no longer be decided."""
    return payout.expires_at <= (now or timezone.now())


def _locked(**options: Any) -> QuerySet[Payout]:
    """Payouts with their holds, both rows locked by the one query (the payout
    first is the order every path keeps: a payout's hold is only ever locked
    through its payout)."""
    return Payout.objects.select_for_update(
        of=("self", "hold"), **options
    ).select_related("wallet", "hold")


def _payout_lock(payout_id: UUID | str, *, owner: User | None = None) -> Payout:
    payouts = _locked()
    if owner is not None:
        payouts = payouts.filter(wallet__owner=owner)
    try:
        return payouts.get(pk=payout_id)
    except (Payout.DoesNotExist, ValidationError, ValueError):  # or a malformed id
        raise PayoutNotFound() from None


def _hold_of(payout: Payout) -> Hold:
    """The payout's hold, locked with it (`_locked`), on the payout's wallet."""
    hold = payout.hold
    hold.wallet = payout.wallet
    return hold


def _finish(
    payout: Payout, *, status: str, now: datetime, decided_by: User | None
) -> None:
    payout.status = status
    payout.decided_at = now
    payout.decided_by = decided_by
    payout.save(
        update_fields=[
            "status",
            "decided_at",
            "decided_by",
            "transaction",
            "provider_reference",
            "failure_reason",
        ]
    )
    _event(payout, now)


def _event(payout: Payout, now: datetime) -> None:
    """`payout.<its status>`, with the change (the wallet is locked by it)."""
    event_record_many(
        [
            NewEvent(
                payout.wallet_id, f"payout.{payout.status}", payout_event_data(payout)
            )
        ],
        now=now,
    )


def _expire(payout: Payout, now: datetime) -> None:
    hold_release(_hold_of(payout), status=Hold.Status.EXPIRED, now=now)
    _finish(payout, status=Payout.Status.EXPIRED, now=now, decided_by=None)


def payout_decide(
    *,
    payout_id: UUID | str,
    status: str,
    decided_by: User | None,
    provider_reference: str = "",
    reason: str = "",
) -> Payout:
    """Record the provider's (or an operator's) decision on a payout.

    - `paid`: the held amount is posted as one `payout` transaction, wallet ->
      the currency's `provider` system wallet, and the hold is released.
    - `failed`: the hold is released, nothing posted (`reason` is kept).
    - The same decision again returns the payout unchanged; the other decision,
      or any decision on a canceled one, raises PayoutAlreadyDecided (409); on
      an expired one, or a pending one past its expiry (then expired,
      committed), PayoutExpired (409).

    Durable: call it outside any transaction (a view, an admin action, a task).
    """
    if status not in PAYOUT_DECISIONS:
        raise ValueError(f"not a payout decision: {status!r}")

    def apply(payout: Payout, hold: Hold, now: datetime) -> None:
        payout.provider_reference = provider_reference
        if status == Payout.Status.PAID:
            payout.transaction = _pay(payout, hold, now, decided_by)
            return
        payout.failure_reason = reason
        hold_release(
            hold,
            status=Hold.Status.VOIDED,
            now=now,
            reason=reason or "Payout failed",
            resolved_by=decided_by,
        )

    return _decide(payout_id, status=status, decided_by=decided_by, apply=apply)


def _decide(
    payout_id: UUID | str,
    *,
    status: str,
    decided_by: User | None,
    apply: Callable[[Payout, Hold, datetime], None],
    owner: User | None = None,
) -> Payout:
    """Lock the payout and, if it is pending and not past its expiry, `apply`
    the decision to it and its (locked) hold. The same decision again returns
    the payout as it is; any other state raises (409); a pending payout past
    its expiry is expired (committed), then PayoutExpired."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        payout = _payout_lock(payout_id, owner=owner)
        if payout.status == status:
            return payout
        if payout.status == Payout.Status.EXPIRED:
            raise PayoutExpired()
        if payout.status != Payout.Status.PENDING:
            raise PayoutAlreadyDecided(status=payout.get_status_display())
        if not payout_is_stale(payout, now):
            apply(payout, _hold_of(payout), now)
            _finish(payout, status=status, now=now, decided_by=decided_by)
            return payout
        _expire(payout, now)
    raise PayoutExpired()


def _pay(
    payout: Payout, hold: Hold, now: datetime, decided_by: User | None
) -> Transaction:
    currency = payout.wallet.currency
    amount = payout.amount.amount
    posting = hold_capture_locked(
        hold,
        counterpart=system_wallet(currency, Wallet.SystemCode.PROVIDER),
        kind=Transaction.Kind.PAYOUT,
        now=now,
        description=payout.description or "Payout",
        metadata={
            "payout_id": str(payout.id),
            "destination": payout.destination,
            "provider_reference": payout.provider_reference,
            "amount": money_str(amount, currency),
        },
        resolved_by=decided_by,
    )
    return posting.transaction


def payout_cancel(*, payout_id: UUID | str, owner: User) -> Payout:
    """The owner cancels a pending payout: its hold is released. Canceling a
    canceled payout returns it unchanged; another user's payout is not found
    (404); a decided one is PayoutAlreadyDecided, an expired one PayoutExpired
    (409). Durable."""

    def apply(payout: Payout, hold: Hold, now: datetime) -> None:
        hold_release(
            hold,
            status=Hold.Status.VOIDED,
            now=now,
            reason="Canceled by the owner",
            resolved_by=owner,
        )

    return _decide(
        payout_id,
        status=Payout.Status.CANCELED,
        decided_by=owner,
        apply=apply,
        owner=owner,
    )


def payout_expire_stale(*, now: datetime | None = None, batch_size: int = 200) -> int:
    """Expire every pending payout at or past its expiry, oldest first; returns
    how many. Batches claimed with SKIP LOCKED, each in its own DB transaction:
    a payout being decided right now is left to that decision."""
    now = now or timezone.now()
    expired = 0
    while True:
        with transaction.atomic():
            payouts = list(
                _locked(skip_locked=True)
                .filter(status=Payout.Status.PENDING, expires_at__lte=now)
                .order_by("expires_at")[:batch_size]
            )
            if not payouts:
                return expired
            for payout in payouts:
                _expire(payout, now)
            expired += len(payouts)
