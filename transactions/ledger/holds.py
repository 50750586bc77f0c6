"""Holds: money reserved on a user wallet now, posted or released later (the
first phase of a two-phase movement; payouts are built on it).

A hold adds its amount to the wallet's `held`, which every debit's rule
subtracts from the balance (rules.leg_refusal), through the one writer, in the
same guarded UPDATE as balances: it is a real reservation, not a flag. It then
resolves exactly once, under its own row lock (taken before the wallet's, the
order every hold path keeps):

- captured: one transaction posts part or all of it (`amount <= held`) and
  releases the whole hold, in the same statement;
- voided: released, with a reason;
- expired: released by the sweep at `expires_at`, never before; a capture
  after `expires_at` expires the hold instead (HoldExpired).

A hold that belongs to a payout is resolved through the payout (payouts.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from transactions.ledger.errors import (
    HoldExpired,
    HoldNotActive,
    HoldNotFound,
    HoldOfPayout,
    InvalidAmount,
    ReasonRequired,
)
from transactions.ledger.posting import ledger_post
from transactions.ledger.rules import amount_validate
from transactions.ledger.writer import Book, Leg, Posting, Writes
from transactions.models import Hold, Payout
from wallets.errors import WalletNotFound
from wallets.models import Wallet


def own_savepoint() -> bool:
    """As ledger_post: no savepoint directly inside a durable block."""
    blocks = connection.atomic_blocks
    return not (blocks and blocks[-1].durable)  # type: ignore[attr-defined]  # Atomic sets .durable; django-stubs omits it


def ledger_hold_change(legs: Sequence[Leg], now: datetime) -> Book:
    """Change only the money held on user wallets (legs with a `hold` and no
    amount): lock, check by the rule, write, like every posting. Always inside
    a caller's block here, so no savepoint of its own (a refusal fails the
    caller's block, which is what every caller in this package wants)."""
    if not legs or any(leg.amount or not leg.hold for leg in legs):
        raise ValueError("ledger_hold_change: legs change the money held only")
    with transaction.atomic(savepoint=False):
        book = Book.lock(ids=[leg.wallet.id for leg in legs])
        book.apply(legs)
        writes = Writes(now)
        writes.add_balances(legs)
        writes.execute()
    return book


def hold_create(
    *,
    wallet: Wallet,
    amount: Decimal,
    expires_at: datetime,
    description: str = "",
    created_by: User | None = None,
) -> Hold:
    """Reserve `amount` on the user wallet until `expires_at`.

    Refused like a debit: WalletBlocked (409) on a blocked wallet,
    InsufficientFunds (400) when the available balance is smaller.
    """
    with transaction.atomic(savepoint=own_savepoint()):
        return hold_new(
            wallet=wallet,
            amount=amount,
            expires_at=expires_at,
            description=description,
            created_by=created_by,
        )


def hold_new(
    *,
    wallet: Wallet,
    amount: Decimal,
    expires_at: datetime,
    description: str = "",
    created_by: User | None = None,
) -> Hold:
    """`hold_create` inside the caller's atomic block (no savepoint: a payout
    creates its hold this way, in the one block that writes both)."""
    if wallet.kind != Wallet.Kind.USER:
        raise WalletNotFound()
    amount = amount_validate(amount, wallet.currency)
    now = timezone.now()
    if expires_at <= now:
        raise ValueError("hold_create: expires_at must be in the future")
    ledger_hold_change([Leg(wallet, Decimal(0), hold=amount)], now)
    return Hold.objects.create(
        wallet=wallet,
        amount=amount,
        currency=wallet.currency,
        description=description,
        created_by=created_by,
        created_at=now,
        expires_at=expires_at,
    )


def hold_lock(hold_id: UUID | str) -> Hold:
    """The hold, its row locked (of=self: the wallet is locked by the writer)."""
    try:
        return (
            Hold.objects.select_for_update(of=("self",))
            .select_related("wallet")
            .get(pk=hold_id)
        )
    except (Hold.DoesNotExist, ValidationError, ValueError):  # or a malformed id
        raise HoldNotFound() from None


def hold_release(
    hold: Hold,
    *,
    status: str,
    now: datetime,
    reason: str = "",
    resolved_by: User | None = None,
) -> Hold:
    """Release a locked, active hold as voided or expired (nothing posted)."""
    if status not in (Hold.Status.VOIDED, Hold.Status.EXPIRED):
        raise ValueError(f"not a release: {status!r}")
    _check_active(hold)
    leg = Leg(hold.wallet, Decimal(0), hold=-hold.amount, allow_blocked=True)
    ledger_hold_change([leg], now)
    _resolve(hold, status=status, now=now, reason=reason, resolved_by=resolved_by)
    return hold


def hold_capture_locked(
    hold: Hold,
    *,
    counterpart: Wallet,
    kind: str,
    now: datetime,
    amount: Decimal | None = None,
    description: str = "",
    metadata: dict | None = None,
    resolved_by: User | None = None,
) -> Posting:
    """Post `amount` (default: all of it) of a locked, active hold from its
    wallet to `counterpart` as one transaction of `kind`, releasing the whole
    hold in the same statement. The wallet may be blocked by now: the money
    was reserved before. The caller has checked the hold's expiry."""
    _check_active(hold)
    currency = hold.currency
    amount = hold.amount if amount is None else amount_validate(amount, currency)
    if amount > hold.amount:
        raise InvalidAmount(
            _("At most the amount held can be captured: %(amount)s."),
            amount=hold.amount,
        )
    if counterpart.currency != currency:
        raise ValueError("hold_capture: the counterpart is in another currency")
    posting = ledger_post(
        kind=kind,
        legs=[
            Leg(hold.wallet, -amount, allow_blocked=True, hold=-hold.amount),
            Leg(counterpart, amount),
        ],
        initiator=resolved_by,
        description=description,
        metadata={"hold_id": str(hold.id), **(metadata or {})},
    )
    hold.captured_amount = amount
    hold.transaction = posting.transaction
    _resolve(hold, status=Hold.Status.CAPTURED, now=now, resolved_by=resolved_by)
    return posting


def _check_active(hold: Hold) -> None:
    if hold.status != Hold.Status.ACTIVE:
        raise HoldNotActive(status=hold.get_status_display())


def _resolve(
    hold: Hold,
    *,
    status: str,
    now: datetime,
    reason: str = "",
    resolved_by: User | None = None,
) -> None:
    hold.status = status
    hold.reason = reason
    hold.resolved_at = now
    hold.resolved_by = resolved_by
    hold.save(
        update_fields=[
            "status",
            "reason",
            "resolved_at",
            "resolved_by",
            "captured_amount",
            "transaction",
        ]
    )


def _standalone(hold: Hold) -> None:
    if Payout.objects.filter(hold=hold).exists():
        raise HoldOfPayout()


def hold_capture(
    *,
    hold_id: UUID | str,
    counterpart: Wallet,
    kind: str,
    amount: Decimal | None = None,
    description: str = "",
    metadata: dict | None = None,
    resolved_by: User | None = None,
) -> Posting:
    """Capture a hold (see hold_capture_locked). HoldNotActive (409) when it
    was resolved before; HoldExpired (409) at or after its `expires_at` (it is
    then expired, committed). Durable: a service boundary."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        hold = hold_lock(hold_id)
        _standalone(hold)
        if hold.status == Hold.Status.ACTIVE and hold.expires_at > now:
            return hold_capture_locked(
                hold,
                counterpart=counterpart,
                kind=kind,
                now=now,
                amount=amount,
                description=description,
                metadata=metadata,
                resolved_by=resolved_by,
            )
        if hold.status == Hold.Status.ACTIVE:
            hold_release(hold, status=Hold.Status.EXPIRED, now=now)
    if hold.status == Hold.Status.EXPIRED:
        raise HoldExpired()
    raise HoldNotActive(status=hold.get_status_display())


def hold_void(
    *, hold_id: UUID | str, reason: str, resolved_by: User | None = None
) -> Hold:
    """Release an active hold with a reason (an operator's decision).
    HoldNotActive (409) once it is resolved. Durable: a service boundary."""
    reason = reason.strip()
    if not reason:
        raise ReasonRequired()
    with transaction.atomic(durable=True):
        hold = hold_lock(hold_id)
        _standalone(hold)
        return hold_release(
            hold,
            status=Hold.Status.VOIDED,
            now=timezone.now(),
            reason=reason,
            resolved_by=resolved_by,
        )


def hold_expire_due(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Release every active hold whose `expires_at` has come (oldest first,
    never one before its time); returns how many. Holds of payouts expire with
    their payout (payouts.payout_expire_stale). Batches claimed with SKIP
    LOCKED, each in its own DB transaction with one write for the batch: a
    hold someone is deciding right now is left to that decision."""
    now = now or timezone.now()
    expired = 0
    while True:
        with transaction.atomic():
            holds = list(
                Hold.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("wallet")
                .filter(
                    status=Hold.Status.ACTIVE,
                    expires_at__lte=now,
                    payout__isnull=True,
                )
                .order_by("expires_at")[:batch_size]
            )
            if not holds:
                return expired
            legs = [
                Leg(hold.wallet, Decimal(0), hold=-hold.amount, allow_blocked=True)
                for hold in holds
            ]
            ledger_hold_change(legs, now)
            expired += Hold.objects.filter(
                pk__in=[hold.pk for hold in holds], status=Hold.Status.ACTIVE
            ).update(status=Hold.Status.EXPIRED, resolved_at=now)
